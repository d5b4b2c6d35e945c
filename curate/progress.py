"""Live progress of a curate run: videos done of total, footage hours per hour, ETA and failures so far.

Usage (the pipeline's driver loop; ``close()`` does what the ``with`` block's end does)::

    with RunProgress(total=len(todo)) as progress:
        for outcome in finished_outcomes:
            progress.update(outcome)

On a terminal a tqdm bar (tqdm computes the rate and ETA; per-video log lines print above it); otherwise one
log line every ``every_s`` seconds and one at the end, so CI logs and ``nohup`` files stay readable.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack

log = logging.getLogger("curate.pipeline")


class RunProgress:
    """Counts outcome dicts (``status``, ``duration_s``) as they finish and shows them (see module doc)."""

    def __init__(self, total: int, every_s: float = 10.0, stream=None) -> None:
        self.total, self.every_s = total, every_s
        self.done = self.failed = 0
        self.footage_s = 0.0
        self.t0 = self.last_log = time.monotonic()
        stream = stream if stream is not None else sys.stderr
        self._stack = ExitStack()
        self.bar = None
        if stream.isatty():
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.bar = self._stack.enter_context(tqdm(total=total, unit="video", desc="curate", file=stream,
                                                      dynamic_ncols=True))
            self._stack.enter_context(logging_redirect_tqdm())

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the bar (a no-op without one)."""
        self._stack.close()

    def footage_h_per_h(self) -> float:
        """Seconds of footage finished per second of wall time (= hours per hour)."""
        return self.footage_s / max(time.monotonic() - self.t0, 1e-9)

    def update(self, outcome: dict) -> None:
        """Count one finished video."""
        self.done += 1
        self.failed += outcome.get("status") == "error"
        self.footage_s += outcome.get("duration_s") or 0.0
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, footage_h_per_h=f"{self.footage_h_per_h():.2f}", refresh=False)
            self.bar.update(1)
        elif self.done == self.total or time.monotonic() - self.last_log >= self.every_s:
            self.last_log = time.monotonic()
            log.info("curate progress: %s", self.line())

    def line(self) -> str:
        """``'12/40 videos, 2 failed, 1.30 h footage/h, ETA 5m10s'`` (what the non-terminal log shows)."""
        elapsed = time.monotonic() - self.t0
        left = (self.total - self.done) * elapsed / self.done if self.done else None
        eta = "?" if left is None else f"{int(left // 60)}m{int(left % 60):02d}s"
        return (f"{self.done}/{self.total} videos, {self.failed} failed, {self.footage_h_per_h():.2f} h footage/h, "
                f"ETA {eta}")
