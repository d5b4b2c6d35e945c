"""Live progress of a curate run: videos done of total, footage hours per hour, ETA and failures so far.

Usage (the pipeline's driver loop; ``close()`` does what the ``with`` block's end does)::

    with RunProgress(total=len(todo)) as progress:
        for outcome in finished_outcomes:
            progress.update(outcome)

The display (a tqdm bar on a terminal, ``curate progress: ...`` log lines otherwise) is
:class:`cluster.progress.CountProgress`'s; curate counts outcome dicts and shows footage hours per hour.
"""

from __future__ import annotations

import logging

from cluster.progress import CountProgress

log = logging.getLogger("curate.pipeline")


class RunProgress(CountProgress):
    """Counts outcome dicts (``status``, ``duration_s``) as they finish and shows them (see module doc)."""

    def __init__(self, total: int, every_s: float = 10.0, stream=None) -> None:
        self.footage_s = 0.0
        super().__init__(total, "video", "curate", log, every_s, stream)

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
