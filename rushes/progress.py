"""Live progress, one owner for every command: a tqdm bar on a terminal, log lines otherwise.

- :class:`CountProgress`: a run over many items (caption's clips, encode's): done of total, failures, rate, ETA.
- :class:`RunProgress`: curate's videos, with footage hours per hour.
- :class:`StepProgress` and :class:`LogFollower`: training steps, samples/s, tokens/s and ETA.

Usage (a driver loop; ``close()`` does what the ``with`` block's end does)::

    with CountProgress(total=40, unit="clip", desc="caption", log=logging.getLogger("rushes.caption.pipeline")) as p:
        for batch in batches:
            p.update(done=batch.num_rows, failed=errors_in(batch))

    with StepProgress(total=cfg.train.steps, start=0) as progress:
        train(out, run, cfg, echo=progress.write, on_step=progress.update)

On a terminal a tqdm bar (tqdm computes the rate and ETA; log lines print above it); otherwise one log line
``'<desc> progress: 12/40 clips, 2 failed, 0.53 clips/s, ETA 0m52s'`` every ``every_s`` seconds, one when the
last item is done, and one at ``close()`` when the run stopped between two lines (an error, Ctrl-C), so CI logs
and ``nohup`` files stay readable. A stage with a better rate than items per second (curate: footage hours per
hour) overrides :meth:`CountProgress.rate_text` and :meth:`CountProgress.postfix`. Training rates and ETA count
from the first step seen, so the start (Ray, data, model, a resumed run's earlier steps) does not dilute them.

One bar per command: Ray Data's own bars are off (rushes.cluster). ``rushes -q`` calls :func:`configure` with
``show=False``: no bar and no progress lines (the log lines are INFO, hidden then too), only the closing summary.
"""


from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack

_shown = {"show": True}


def configure(show: bool = True) -> None:
    """Show progress (a bar on a terminal, lines otherwise), or nothing (``rushes -q``)."""
    _shown["show"] = show


def shown() -> bool:
    """Whether progress is shown at all (:func:`configure`)."""
    return _shown["show"]


class CountProgress:
    """Counts finished items and failures and shows them (see the module doc)."""

    def __init__(self, total: int, unit: str, desc: str, log: logging.Logger, every_s: float = 10.0,
                 stream=None) -> None:
        self.total, self.unit, self.desc, self.log, self.every_s = total, unit, desc, log, every_s
        self.done = self.failed = self.logged_done = 0
        self.t0 = self.last_log = time.monotonic()
        stream = stream if stream is not None else sys.stderr
        self._stack = ExitStack()
        self.bar = None
        if stream.isatty() and shown():
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.bar = self._stack.enter_context(tqdm(total=total, unit=unit, desc=desc, file=stream,
                                                      dynamic_ncols=True))
            self._stack.enter_context(logging_redirect_tqdm())

    def __enter__(self) -> CountProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the bar; without one, log the final counts when the last line did not show them."""
        if self.bar is None and self.done != self.logged_done:
            self._log()
        self._stack.close()

    def elapsed_s(self) -> float:
        return max(time.monotonic() - self.t0, 1e-9)

    def rate_text(self) -> str:
        """The rate the line shows: items per second of wall time since the run started."""
        return f"{self.done / self.elapsed_s():.2f} {self.unit}s/s"

    def postfix(self) -> dict:
        """What the bar shows beside tqdm's own counts and rate."""
        return {"failed": self.failed}

    def update(self, done: int = 1, failed: int = 0) -> None:
        """Count ``done`` more finished items, ``failed`` of them with an error."""
        self.done += done
        self.failed += failed
        if self.bar is not None:
            self.bar.set_postfix(self.postfix(), refresh=False)
            self.bar.update(done)
        elif self.done >= self.total or time.monotonic() - self.last_log >= self.every_s:
            self._log()

    def _log(self) -> None:
        self.last_log, self.logged_done = time.monotonic(), self.done
        self.log.info("%s progress: %s", self.desc, self.line())

    def line(self) -> str:
        """``'12/40 clips, 2 failed, 0.53 clips/s, ETA 0m52s'`` (what the non-terminal log shows)."""
        left = (self.total - self.done) * self.elapsed_s() / self.done if self.done else None
        eta = "?" if left is None else f"{int(left // 60)}m{int(max(left, 0) % 60):02d}s"
        return f"{self.done}/{self.total} {self.unit}s, {self.failed} failed, {self.rate_text()}, ETA {eta}"


_curate_log = logging.getLogger("rushes.curate.pipeline")


class RunProgress(CountProgress):
    """Counts outcome dicts (``status``, ``duration_s``) as they finish and shows them (see module doc)."""

    def __init__(self, total: int, every_s: float = 10.0, stream=None) -> None:
        self.footage_s = 0.0
        super().__init__(total, "video", "curate", _curate_log, every_s, stream)

    def footage_h_per_h(self) -> float:
        """Seconds of footage finished per second of wall time (= hours per hour)."""
        return self.footage_s / self.elapsed_s()

    def rate_text(self) -> str:
        return f"{self.footage_h_per_h():.2f} h footage/h"

    def postfix(self) -> dict:
        return {"failed": self.failed, "footage_h_per_h": f"{self.footage_h_per_h():.2f}"}

    def update(self, outcome: dict) -> None:  # type: ignore[override]
        """Count one finished video."""
        self.footage_s += outcome.get("duration_s") or 0.0
        super().update(1, failed=int(outcome.get("status") == "error"))


class StepProgress:
    """Counts finished steps with their clips and real tokens, and shows them (see the module doc)."""

    def __init__(self, total: int, start: int = 0, every_s: float = 10.0, stream=None) -> None:
        self.total, self.every_s = total, every_s
        self.stream = stream if stream is not None else sys.stdout
        self.start = self.step = start
        self.clips = self.tokens = 0
        self.t0: float | None = None  # when the first step seen finished: rates count from there
        self.base = start  # the step rates count from
        self.last_line = time.monotonic()
        self.printed = start  # the step of the last non-terminal line
        self.bar = None  # made at the first step on a terminal, so its clock starts with training

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the bar, or print the last line when the step moved since the last one."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.step != self.printed:
            self._print_line()

    def write(self, line: str) -> None:
        """Print a log line (above the bar on a terminal; nothing under ``rushes -q``)."""
        if not shown():
            return
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def update(self, step: int, clips: int, tokens: int) -> None:
        """Steps done are now ``step``, the steps since the last call trained ``clips`` clips of ``tokens``
        real tokens."""
        if self.t0 is None or step < self.step:  # the first step (or a resume that went back): rates start here
            self.t0, self.base, self.clips, self.tokens = time.monotonic(), step, 0, 0
            if self.bar is None and self.stream.isatty() and shown():
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, initial=self.step, unit="step", desc="train", file=self.stream,
                                dynamic_ncols=True)
        else:
            self.clips += clips
            self.tokens += tokens
        moved, self.step = step - self.step, step
        if self.bar is not None:
            self.bar.set_postfix_str(self.rates(), refresh=False)
            self.bar.update(max(moved, 0))
        elif step >= self.total or time.monotonic() - self.last_line >= self.every_s:
            self._print_line()

    def _print_line(self) -> None:
        self.last_line, self.printed = time.monotonic(), self.step
        if shown():
            print(f"train progress: {self.line()}", file=self.stream, flush=True)

    def rates(self) -> str:
        """``'41.3 samples/s, 1,520 tokens/s'`` over the steps after the first seen (``'?'`` before)."""
        if self.t0 is None or self.step == self.base:
            return "? samples/s, ? tokens/s"
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        return f"{self.clips / elapsed:.1f} samples/s, {self.tokens / elapsed:,.0f} tokens/s"

    def line(self) -> str:
        """``'step 120/200, 41.3 samples/s, 1,520 tokens/s, ETA 1m05s'`` (what the non-terminal lines show)."""
        done = self.step - self.base
        left = 0.0 if self.step >= self.total else \
            (self.total - self.step) * (time.monotonic() - self.t0) / done if done > 0 else None
        eta = "?" if left is None else f"{int(left // 60)}m{int(left % 60):02d}s"
        return f"step {self.step}/{self.total}, {self.rates()}, ETA {eta}"


def record_line(record: dict) -> str:
    """A ``log.jsonl`` record as the one line ``rushes train`` prints for it (``step=10 loss=0.5123 ...``)."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())


class LogFollower:
    """Shows the steps of a run whose log another process writes (Ray Train worker 0 writes ``log.jsonl``;
    the driver follows it, or, for a run in a bucket, receives its records through :meth:`show`): each new
    record is printed through ``progress.write`` and a training line moves ``progress`` to its step, counting
    its clips and tokens for every step since the previous line (steps between two log lines are not logged;
    they train the same global batch in tokens)."""

    def __init__(self, path, progress: StepProgress) -> None:
        from pathlib import Path

        self.path, self.progress = (Path(path) if path is not None else None), progress
        self.offset = self.path.stat().st_size if self.path and self.path.exists() else 0  # earlier calls' lines
        self.last_step = progress.start

    def poll(self) -> None:
        """Show the complete lines appended to the file since the last call. A resume truncates the log to its
        checkpoint's step: it is then read from its start, skipping the lines up to ``progress.start``."""
        import json

        try:
            size = self.path.stat().st_size if self.path is not None else 0
        except FileNotFoundError:
            return
        if size < self.offset:
            self.offset = 0
        if size == self.offset:
            return
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(size - self.offset)
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for text in complete.decode().splitlines():
            self.show(json.loads(text))

    def show(self, record: dict) -> None:
        """Show one log record (those up to ``progress.start`` were shown by an earlier call)."""
        if record.get("step", 0) <= self.progress.start:
            return
        self.progress.write(record_line(record))
        if "loss" in record:
            steps = record["step"] - self.last_step
            self.last_step = record["step"]
            self.progress.update(record["step"], record["clips"] * steps, record["real_tokens"] * steps)
