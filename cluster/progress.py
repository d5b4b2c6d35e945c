"""Live progress of a run over many items (curate's videos, caption's clips): done of total, failures, a rate
and the ETA, shared by the stages so they show it the same way.

Usage (a driver loop; ``close()`` does what the ``with`` block's end does)::

    with CountProgress(total=40, unit="clip", desc="caption", log=logging.getLogger("caption.pipeline")) as p:
        for batch in batches:
            p.update(done=batch.num_rows, failed=errors_in(batch))

On a terminal a tqdm bar (tqdm computes the rate and ETA; log lines print above it); otherwise one log line
``'<desc> progress: 12/40 clips, 2 failed, 0.53 clips/s, ETA 0m52s'`` every ``every_s`` seconds, one when the
last item is done, and one at ``close()`` when the run stopped between two lines (an error, Ctrl-C), so CI logs
and ``nohup`` files stay readable. A stage with a better rate than items per second (curate: footage hours per
hour) overrides :meth:`rate_text` and :meth:`postfix`.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import ExitStack


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
        if stream.isatty():
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
