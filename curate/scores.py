"""Per-clip motion, quality and text scores from the analysis frame stream (interface; being implemented).

The decode pass (curate) feeds every analysis frame to one :class:`FrameSignals` per video, then asks
for the scores of each clip span. Only per-frame scalars are kept, so memory does not grow with
frame size, and nothing decodes the source a second time.
"""

from __future__ import annotations

from media.frames import Frame


class FrameSignals:
    """Accumulates per-frame signals of one video; summarises them per clip."""

    def __init__(self, config=None) -> None:
        self.config = config

    def add(self, frame: Frame) -> None:
        """Consume the next analysis frame (decode order, display orientation, RGB uint8)."""

    def clip_scores(self, start_frame: int, end_frame: int, width_px: int, height_px: int) -> dict:
        """Scores of frames [start_frame, end_frame): a dict whose keys are clips-schema score columns."""
        return {"aspect_ratio": width_px / height_px if height_px else None}
