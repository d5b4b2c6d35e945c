"""Fixtures of the train tests: a tiny text encoder saved to disk, and manifests written by hand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from manifests import store


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> str:
    """A tiny random-weight T5 encoder folder, loaded through from_pretrained like a real id."""
    from train.encoders import save_tiny_text_encoder

    return save_tiny_text_encoder(tmp_path_factory.mktemp("t5") / "tiny-t5", kind="t5")


@dataclass
class Clip:
    path: str  # source video (span) or, with encoded=True, the file to copy under OUT
    start_s: float
    end_s: float
    width_px: int
    height_px: int
    caption: str
    keep: bool = True
    caption_status: str = "ok"
    clip_path: str | None = None  # relative to OUT: an encoded clip


def write_manifest(out: Path, clips: list[Clip]) -> Path:
    """videos/clips/captions manifests as curate and caption write them."""
    videos, rows, caps = {}, [], []
    for i, c in enumerate(clips):
        vid = f"v{abs(hash(c.path)) % 10**8:08d}"
        videos[vid] = {"video_id": vid, "path": c.path, "status": "ok", "width_px": c.width_px,
                       "height_px": c.height_px}
        cid = f"clip{i:04d}"
        rows.append({"clip_id": cid, "video_id": vid, "clip_path": c.clip_path, "start_s": c.start_s,
                     "end_s": c.end_s, "duration_s": c.end_s - c.start_s, "width_px": c.width_px,
                     "height_px": c.height_px, "keep": c.keep, "reject_reason": None if c.keep else "dark"})
        caps.append({"caption_id": f"cap{i:04d}", "clip_id": cid, "caption": c.caption, "status": c.caption_status,
                     "created_at": store.now_utc()})
    store.write_part(out, "videos", list(videos.values()), part_name="part-0")
    store.write_part(out, "clips", rows, part_name="part-0")
    store.write_part(out, "captions", caps, part_name="part-0")
    return out


@pytest.fixture(scope="session")
def synth_out(tmp_path_factory) -> Path:
    """OUT with three synthetic clips (two spans of one video, one encoded clip file), plus a rejected
    clip and a failed caption that training must ignore."""
    from synth import make_cut_video

    root = tmp_path_factory.mktemp("synth_out")
    v = make_cut_video(root / "src.mp4", [1.0, 1.0], fps=16, size=(96, 64))
    (root / "out" / "media").mkdir(parents=True)
    enc = make_cut_video(root / "out" / "media" / "c.mp4", [1.0], fps=16, size=(64, 96),
                         sources=["smptebars=size={w}x{h}:rate={fps}"])
    clips = [Clip(v.path, 0.0, 1.0, 96, 64, "a colourful test pattern with moving shapes"),
             Clip(v.path, 1.0, 2.0, 96, 64, "a mandelbrot fractal zooming in"),
             Clip(enc.path, 0.0, 1.0, 64, 96, "vertical colour bars", clip_path="media/c.mp4"),
             Clip(v.path, 0.0, 2.0, 96, 64, "rejected clip", keep=False),
             Clip(v.path, 0.5, 1.5, 96, 64, "failed caption", caption_status="error")]
    return write_manifest(root / "out", clips)
