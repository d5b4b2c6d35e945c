"""Manifests written by hand for the train tests and bench: videos, clips and captions as curate/caption write them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rushes.manifests import store
from rushes.manifests.ids import make_id


@dataclass
class Clip:
    """One clip row: a span of a source video, or an encoded clip file when ``clip_path`` is set."""

    path: str  # source video (span), or the encoded file itself
    start_s: float
    end_s: float
    width_px: int
    height_px: int
    caption: str
    keep: bool = True
    caption_status: str = "ok"
    clip_path: str | None = None  # relative to OUT: an encoded clip
    clip_id: str | None = None  # default: clip0000, clip0001, ... by position (curate's ids are content hashes)
    kind: str = "video"  # "image": a still (``path`` is the image; give start_s = end_s = 0)


def write_manifest(out: Path, clips: list[Clip]) -> Path:
    """videos/clips/captions manifests as curate and caption write them."""
    videos, rows, caps = {}, [], []
    for i, c in enumerate(clips):
        vid = make_id("video", c.path)
        videos[vid] = {"video_id": vid, "path": c.path, "status": "ok", "width_px": c.width_px,
                       "height_px": c.height_px, "kind": c.kind}
        cid = c.clip_id or f"clip{i:04d}"
        rows.append({"clip_id": cid, "video_id": vid, "kind": c.kind, "clip_path": c.clip_path, "start_s": c.start_s,
                     "end_s": c.end_s, "duration_s": c.end_s - c.start_s, "width_px": c.width_px,
                     "height_px": c.height_px, "keep": c.keep, "reject_reason": None if c.keep else "dark"})
        caps.append({"caption_id": f"cap{i:04d}", "clip_id": cid, "caption": c.caption, "status": c.caption_status,
                     "created_at": store.now_utc()})
    store.write_part(out, "videos", list(videos.values()), part_name="part-0")
    store.write_part(out, "clips", rows, part_name="part-0")
    store.write_part(out, "captions", caps, part_name="part-0")
    return out
