"""Live progress of curate: a tqdm bar on a terminal, one log line every few seconds otherwise."""

from __future__ import annotations

import io
import logging

from rushes.progress import RunProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_a_bar_with_counts_failures_and_footage_rate():
    term = _Terminal()
    with RunProgress(total=3, stream=term) as progress:
        progress.update({"status": "ok", "duration_s": 3600.0})
        progress.update({"status": "error", "duration_s": None})
    shown = term.getvalue()
    assert "2/3" in shown and "failed=1" in shown and "footage_h_per_h=" in shown
    assert progress.footage_s == 3600.0 and progress.failed == 1


def test_without_a_terminal_one_line_every_few_seconds_and_at_the_end(caplog):
    caplog.set_level(logging.INFO, logger="rushes.curate.pipeline")
    pipe = io.StringIO()  # not a TTY
    progress = RunProgress(total=3, every_s=3600, stream=pipe)
    progress.update({"status": "ok", "duration_s": 10.0})
    progress.update({"status": "ok", "duration_s": 10.0})
    assert not [r for r in caplog.records if "curate progress" in r.message]  # not yet: every_s not reached
    progress.update({"status": "error"})
    progress.close()
    lines = [r.message for r in caplog.records if "curate progress" in r.message]
    assert len(lines) == 1 and "3/3 videos, 1 failed" in lines[0] and "ETA 0m00s" in lines[0]
    assert pipe.getvalue() == ""  # no escape codes in a log file
