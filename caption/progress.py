"""Live progress of a caption run: clips done of total, clips per second, ETA and failures so far.

Usage (the pipeline's driver loop; ``close()`` does what the ``with`` block's end does)::

    with CaptionProgress(total=plan.tasks.num_rows) as progress:
        for batch in caption_batches:
            progress.update(done=batch.num_rows, failed=errors_in(batch))

On a terminal a tqdm bar (tqdm computes the rate and ETA; log lines print above it); otherwise one log line
every ``every_s`` seconds and one at the end, so CI logs and ``nohup`` files stay readable. The shape follows
``curate/progress.py``, which counts videos and footage hours instead (stages do not import each other).
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack

log = logging.getLogger("caption.pipeline")


class CaptionProgress:
    """Counts captioned clips and failures as batches arrive and shows them (see module doc)."""

    def __init__(self, total: int, every_s: float = 10.0, stream=None) -> None:
        self.total, self.every_s = total, every_s
        self.done = self.failed = self.logged_done = 0
        self.t0 = self.last_log = time.monotonic()
        stream = stream if stream is not None else sys.stderr
        self._stack = ExitStack()
        self.bar = None
        if stream.isatty():
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.bar = self._stack.enter_context(tqdm(total=total, unit="clip", desc="caption", file=stream,
                                                      dynamic_ncols=True))
            self._stack.enter_context(logging_redirect_tqdm())

    def __enter__(self) -> CaptionProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the bar; without one, log the final counts when the last line did not show them."""
        if self.bar is None and self.done != self.logged_done:
            self._log()  # stopped early (an error, Ctrl-C) or between two lines: say where it ended
        self._stack.close()

    def clips_per_s(self) -> float:
        """Clips finished (ok or failed) per second of wall time since the run started."""
        return self.done / max(time.monotonic() - self.t0, 1e-9)

    def update(self, done: int, failed: int = 0) -> None:
        """Count ``done`` more finished clips, ``failed`` of them with an error row."""
        self.done += done
        self.failed += failed
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(done)
        elif self.done >= self.total or time.monotonic() - self.last_log >= self.every_s:
            self._log()

    def _log(self) -> None:
        self.last_log, self.logged_done = time.monotonic(), self.done
        log.info("caption progress: %s", self.line())

    def line(self) -> str:
        """``'12/40 clips, 2 failed, 0.53 clips/s, ETA 0m52s'`` (what the non-terminal log shows)."""
        rate = self.clips_per_s()
        left = (self.total - self.done) / rate if self.done and rate > 0 else None
        eta = "?" if left is None else f"{int(left // 60)}m{int(left % 60):02d}s"
        return f"{self.done}/{self.total} clips, {self.failed} failed, {rate:.2f} clips/s, ETA {eta}"
