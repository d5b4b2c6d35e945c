"""Live progress of caption (rushes.progress.CountProgress, as rushes.caption.pipeline makes it): a tqdm bar on a
terminal, one log line every few seconds otherwise."""

from __future__ import annotations

import io
import logging

from functools import partial

from rushes.progress import CountProgress

CaptionProgress = partial(CountProgress, unit="clip", desc="caption", log=logging.getLogger("rushes.caption.pipeline"))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(caplog) -> list[str]:
    return [r.message for r in caplog.records if r.message.startswith("caption progress: ")]


def test_terminal_gets_a_bar_with_counts_rate_and_failures():
    term = _Terminal()
    with CaptionProgress(total=8, stream=term) as progress:
        progress.update(2)
        progress.update(2, failed=1)
    shown = term.getvalue()
    assert "4/8" in shown and "failed=1" in shown and "clip/s" in shown
    assert progress.done == 4 and progress.failed == 1


def test_without_a_terminal_one_line_every_few_seconds_and_at_the_end(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="rushes.caption.pipeline")
    clock = [1000.0]
    monkeypatch.setattr("rushes.progress.time.monotonic", lambda: clock[0])
    pipe = io.StringIO()  # not a TTY
    progress = CaptionProgress(total=10, every_s=5.0, stream=pipe)
    clock[0] += 2.0
    progress.update(2)
    assert _lines(caplog) == []  # not yet: every_s not reached
    clock[0] += 4.0
    progress.update(2, failed=1)  # 6 s in: a line with the rate and the ETA of the 6 clips left
    assert _lines(caplog) == ["caption progress: 4/10 clips, 1 failed, 0.67 clips/s, ETA 0m09s"]
    clock[0] += 1.0
    progress.update(3)
    progress.close()  # stopped before the end: the last counts are logged once more
    assert _lines(caplog)[-1] == "caption progress: 7/10 clips, 1 failed, 1.00 clips/s, ETA 0m03s"
    assert len(_lines(caplog)) == 2
    assert pipe.getvalue() == ""  # no escape codes in a log file


def test_the_last_clip_is_always_logged_and_not_twice(caplog):
    caplog.set_level(logging.INFO, logger="rushes.caption.pipeline")
    with CaptionProgress(total=3, every_s=3600, stream=io.StringIO()) as progress:
        progress.update(1)
        progress.update(2, failed=2)
    lines = _lines(caplog)
    assert len(lines) == 1 and lines[0].startswith("caption progress: 3/3 clips, 2 failed, ") and "ETA 0m00s" in lines[0]
