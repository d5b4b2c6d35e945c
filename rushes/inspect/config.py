"""Configuration of ``rushes inspect``'s HTML report and its thumbnails: frozen dataclasses whose declared fields
are the command's flags (:mod:`rushes.settings`). Kept apart from :mod:`rushes.inspect.thumbs` and
:mod:`rushes.inspect.page` so building the command line imports no decoder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rushes.settings import check, setting


@dataclass(frozen=True)
class ThumbConfig:
    """How thumbnails are made. ``workers`` 0 picks min(4, CPU count) processes."""

    frames_per_clip: int = setting(4, "frames per clip in the contact-sheet strip", flag="--frames", ge=1, le=8,
                                   hint="3-4 is a readable strip")
    height_px: int = setting(72, "thumbnail height in pixels", flag="--thumb-height", ge=16, le=720,
                             hint="72-120 suits a contact sheet")
    jpeg_quality: int = setting(80, "JPEG quality of the strips", ge=10, le=100, cli=False)
    workers: int = setting(0, "processes decoding thumbnails; 0 = min(4, CPU count)", ge=0, le=1024)
    max_gap_s: float = setting(10.0, "spans of one source closer than this share one decode pass", ge=0, cli=False)
    max_batch_clips: int = setting(64, "cap per pass so work spreads over the worker processes", ge=1, cli=False)
    min_clips_for_pool: int = setting(200, "below this, starting worker processes costs more than it saves", ge=0,
                                      cli=False)

    def __post_init__(self):
        check(self)

    def resolved_workers(self) -> int:
        """Worker processes to use."""
        return self.workers or max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class ReportConfig:
    """What the HTML report shows. ``make_thumbs`` False writes the page without decoding any video."""

    thumbs: ThumbConfig = field(default_factory=ThumbConfig)
    make_thumbs: bool = setting(True, "write the HTML report without decoding any video, no contact-sheet images",
                                flag="--no-thumbs")
    page_size: int = setting(50, "contact-sheet rows per page in the report", ge=5, le=1000)
    histogram_bins: int = setting(24, "bins of each score histogram", ge=4, le=200, cli=False)
    max_failures_listed: int = setting(500, "failed videos and clips listed in the report", ge=0, cli=False)

    def __post_init__(self):
        check(self)
