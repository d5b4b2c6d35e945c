"""A small curated and captioned run with hand-known clips, for the export tests (local and in a bucket).

Three source videos: ``src/a/beach.mp4`` (three 2 s shots: two kept spans without clip files, one rejected),
``src/b/beach.mp4`` (the same stem, one kept clip with an encoded clip file under ``media/``) and
``src/été ü.mp4`` (a name that is not ASCII, one kept span). Every kept clip has an ok caption; one caption has
a newline, one is not ASCII. Each shot is a different lavfi source, so a clip's first frame says which span it is.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from rushes.manifests import store
from rushes.testing.synth import make_cut_video

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SIZE = (160, 120)
FPS = 10
# Shot sources: a clip cut from the right span starts with its shot's picture.
SHOTS = ["color=c=red:size={w}x{h}:rate={fps}", "color=c=blue:size={w}x{h}:rate={fps}",
         "color=c=green:size={w}x{h}:rate={fps}"]
CAPTIONS = {"ca1": "A red field.", "ca2": "A blue field.\nIt stays blue.", "cb1": "Test bars scroll.",
            "cu1": "Un champ vert, été."}
# The names an export gives the kept clips (stem _ start - end; the two beach videos get their video ids).
NAMES = {"ca1": "beach-va000000_0s00-2s00", "ca2": "beach-va000000_2s00-4s00", "cb1": "beach-vb000000_0s00-2s00",
         "cu1": "été_ü_0s00-2s00"}


def _video(video_id: str, path, duration: float) -> dict:
    return {"video_id": video_id, "path": str(path), "status": "ok", "duration_s": duration, "width_px": SIZE[0],
            "height_px": SIZE[1], "fps": float(FPS)}


def _clip(clip_id: str, video_id: str, start: float, end: float, keep: bool, motion: float, **kw) -> dict:
    return {"clip_id": clip_id, "video_id": video_id, "start_s": start, "end_s": end, "duration_s": end - start,
            "keep": keep, "width_px": SIZE[0], "height_px": SIZE[1], "fps": float(FPS),
            "num_frames": round((end - start) * FPS), "motion_mean": motion, **kw}


def make_curated_run(root: Path) -> Path:
    """Write the run under ``root/run`` (its sources under ``root/src``) and return it."""
    run, src = root / "run", root / "src"
    for d in (src / "a", src / "b", run / "media" / "vb000000"):
        d.mkdir(parents=True, exist_ok=True)
    a = make_cut_video(src / "a" / "beach.mp4", [2, 2, 2], fps=FPS, size=SIZE, sources=SHOTS)
    b = make_cut_video(src / "b" / "beach.mp4", [2], fps=FPS, size=SIZE, sources=SHOTS[1:])
    u = make_cut_video(src / "été ü.mp4", [2], fps=FPS, size=SIZE, sources=SHOTS[2:])
    make_cut_video(run / "media" / "vb000000" / "cb1.mp4", [2], fps=FPS, size=SIZE,
                   sources=["testsrc=size={w}x{h}:rate={fps}"])
    store.write_part(run, "videos", [_video("va000000", a.path, 6.0), _video("vb000000", b.path, 2.0),
                                     _video("vu000000", u.path, 2.0)], part_name="part-0")
    store.write_part(run, "clips", [
        _clip("ca1", "va000000", 0.0, 2.0, True, 0.05),
        _clip("ca2", "va000000", 2.0, 4.0, True, 0.20),
        _clip("ca3", "va000000", 4.0, 6.0, False, 0.0, reject_reason="motion<0.001"),
        _clip("cb1", "vb000000", 0.0, 2.0, True, 0.10, clip_path="media/vb000000/cb1.mp4"),
        _clip("cu1", "vu000000", 0.0, 2.0, True, 0.30),
    ], part_name="part-0")
    store.write_part(run, "captions", [
        {"caption_id": f"k-{cid}", "clip_id": cid, "caption": text, "caption_short": text.split(".")[0],
         "captioner": "tiny-vlm@r1", "prompt_version": "dense-v1", "status": "ok", "created_at": T0}
        for cid, text in CAPTIONS.items()], part_name="part-0")
    return run
