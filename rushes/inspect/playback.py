"""What the report's ``<video>`` of a clip plays: the clip's encoded file, or its span of the source video as a media
fragment (``file:///src/a.mp4#t=12.4,15.9``), the browser then plays exactly that span.

Usage::

    url, error = clip_url(run_dir, clip_row, video_row, html_dir)

Where a clip's pixels are is :func:`rushes.manifests.clips.locate`'s answer, the one the thumbnails use: a
``clip_path`` outside the run directory or a span that is not a time is refused and never linked. A clip file is
linked relative to the page's folder (the run and its report can move together); a source video by its absolute
``file://`` URI (a name that is not UTF-8 by its exact bytes). A run in a bucket has no file a local page can
play: its clips get the reason instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from rushes import storage
from rushes.manifests import clips


def _fragment(start_s: float, end_s: float) -> str:
    return f"#t={start_s:.3f},{end_s:.3f}"


def clip_url(run_dir, row: dict, video: dict | None, html_dir: Path) -> tuple[str | None, str | None]:
    """``(url, None)`` of a playable clip, else ``(None, why)``."""
    if storage.is_remote(run_dir):
        return None, "the run is in a bucket: no local file to play"
    clip = clips.locate(run_dir, row, video)
    if clip.encoded and not clip.refused and not Path(clip.path).is_file():
        clip = clips.locate(run_dir, row, video, use_clip_file=False)  # the clip file is gone: play the span
    if clip.refused:
        return None, clip.refused
    if clip.path is None or storage.is_remote(clip.path) or not Path(clip.path).is_file():
        return None, f"{clip.path} is not a local file"
    if clip.encoded:
        rel = os.path.relpath(clip.path, html_dir)
        return quote(Path(rel).as_posix()) + _fragment(clip.start_s, clip.end_s), None
    return Path(os.path.abspath(clip.path)).as_uri() + _fragment(clip.start_s, clip.end_s), None
