"""Live progress of `rushes train`: a tqdm bar on a terminal, 'train progress:' lines otherwise, and the driver
following the log that Ray Train's worker 0 writes."""

from __future__ import annotations

import io
import json
import re

from rushes.progress import LogFollower, StepProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


LINE = re.compile(r"train progress: step (\d+)/(\d+), (\S+) samples/s, (\S+) tokens/s, ETA (\S+)")


def _lines(text: str) -> list[tuple[str, ...]]:
    return [LINE.fullmatch(line).groups() for line in text.splitlines() if line.startswith("train progress:")]


def test_without_a_terminal_one_line_every_few_seconds_and_one_at_the_end():
    out = io.StringIO()
    with StepProgress(total=6, start=2, every_s=3600, stream=out) as progress:
        progress.write("resumed from step-0000002")
        for step in range(3, 7):
            progress.update(step, clips=4, tokens=100)
    text = out.getvalue()
    assert text.splitlines()[0] == "resumed from step-0000002"
    assert [g[:2] for g in _lines(text)] == [("6", "6")]  # the hour between lines never passed: the last only
    assert "\x1b" not in text and "\r" not in text  # no bar, no escape codes in a log file
    out = io.StringIO()
    progress = StepProgress(total=4, every_s=0, stream=out)
    for step in range(1, 5):
        progress.update(step, clips=3, tokens=96)
    progress.close()  # the last step was already shown: not printed twice
    lines = _lines(out.getvalue())
    assert [int(g[0]) for g in lines] == [1, 2, 3, 4]
    assert lines[0][2:] == ("?", "?", "?")  # rates count from the first step: none yet
    assert float(lines[-1][2]) > 0 and float(lines[-1][3].replace(",", "")) > 0 and lines[-1][4] == "0m00s"


def test_on_a_terminal_a_bar_with_log_lines_above_it():
    out = Terminal()
    with StepProgress(total=5, stream=out) as progress:
        for step in range(1, 6):
            progress.update(step, clips=2, tokens=64)
            progress.write(f"step={step} loss=0.5")
    text = out.getvalue()
    assert "train" in text and "5/5" in text and "samples/s" in text and "\r" in text
    assert "step=3 loss=0.5" in text and not _lines(text)


def _log(path, *records):
    with open(path, "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)


def test_the_driver_shows_the_lines_worker_0_appends_and_skips_those_of_the_run_it_resumes(tmp_path):
    path = tmp_path / "log.jsonl"
    train_line = {"loss": 0.5, "clips": 6, "real_tokens": 512}
    _log(path, *({"step": s, **train_line} for s in (10, 20, 30)))  # an earlier call, checkpointed at step 20
    out = io.StringIO()
    progress = StepProgress(total=50, start=20, every_s=0, stream=out)
    follower = LogFollower(path, progress)
    follower.poll()
    assert out.getvalue() == ""  # lines already there are the earlier call's
    path.write_text("".join(json.dumps({"step": s, **train_line}) + "\n" for s in (10, 20)))  # resume truncates
    follower.poll()
    _log(path, {"step": 30, **train_line})
    with open(path, "a") as fh:
        fh.write('{"step": 40, "loss"')  # a line being written: left for the next poll
    follower.poll()
    with open(path, "a") as fh:
        fh.write(': 0.4, "clips": 6, "real_tokens": 512}\n{"step": 40, "val_loss": 0.3}\n')
    follower.poll()
    shown = out.getvalue().splitlines()
    assert [line.split()[0] for line in shown if not line.startswith("train progress")] == \
        ["step=30", "step=40", "step=40"]
    assert "val_loss=0.3" in shown[-1]
    assert [int(g[0]) for g in _lines(out.getvalue())] == [30, 40]
    assert progress.clips == 60 and progress.tokens == 5120  # 10 steps of 6 clips between the two lines
