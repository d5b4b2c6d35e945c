"""A small run directory with hand-known counts, reasons, durations, scores and captions.

The expected numbers in test_summary.py are worked out by hand from the rows below; change both together.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from rushes.manifests import store
from rushes.testing.synth import make_cut_video

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _video(video_id, path, status="ok", duration=None, stage=None, message=None, w=160, h=120):
    return {"video_id": video_id, "path": str(path), "status": status, "duration_s": duration,
            "error_stage": stage, "error_message": message, "width_px": w if status == "ok" else None,
            "height_px": h if status == "ok" else None}


def _clip(clip_id, video_id, start, end, keep, reason=None, clip_path=None, **scores):
    return {"clip_id": clip_id, "video_id": video_id, "start_s": start, "end_s": end, "duration_s": end - start,
            "keep": keep, "reject_reason": reason, "clip_path": clip_path, "width_px": 160, "height_px": 120,
            **scores}


def make_run(root: Path) -> Path:
    """Write the fixture run under ``root/run`` (two real synthetic videos, three failed ones)."""
    run = root / "run"
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    a = make_cut_video(src / "a.mp4", [2, 2, 2], fps=10, size=(160, 120))
    b = make_cut_video(src / "b.mp4", [2, 2], fps=10, size=(160, 120), sources=["smptebars=size={w}x{h}:rate={fps}",
                                                                                  "rgbtestsrc=size={w}x{h}:rate={fps}"])
    (run / "media").mkdir(parents=True, exist_ok=True)
    make_cut_video(run / "media" / "c4.mp4", [2], fps=10, size=(160, 120),
                   sources=["testsrc=size={w}x{h}:rate={fps}"])
    store.write_part(run, "videos", [
        _video("v1", a.path, duration=6.0),
        _video("v2", b.path, duration=4.0),
        _video("v3", "/data/in/broken.mp4", "error", 8.0, "decode",
               "decoding /data/in/broken.mp4 failed: Invalid data found at 123; the file may be truncated or corrupt"),
        _video("v4", "/data/in/notes.txt", "error", None, "probe",
               "cannot open /data/in/notes.txt: Invalid data found when processing input; check that it is a video"),
        _video("v5", "/data/other/cut.mp4", "error", None, "decode",
               "decoding /data/other/cut.mp4 failed: Invalid data found at 456; the file may be truncated or corrupt"),
    ], part_name="part-0")
    store.write_part(run, "clips", [
        _clip("c1", "v1", 0.0, 2.0, True, motion_mean=0.10, sharpness=100.0, camera_motion="static"),
        _clip("c2", "v1", 2.0, 4.0, False, "motion<0.02;dark", motion_mean=0.01, sharpness=50.0,
              camera_motion="static"),
        _clip("c3", "v1", 4.0, 6.0, False, "dark", motion_mean=0.05, sharpness=20.0, camera_motion="pan_left"),
        _clip("c4", "v2", 0.0, 2.0, True, clip_path="media/c4.mp4", motion_mean=0.20, sharpness=400.0,
              camera_motion="static"),
    ], part_name="part-0")
    store.write_part(run, "clips", [  # a second part: readers must union parts
        _clip("c5", "v2", 2.0, 3.0, False, "too_short", motion_mean=0.30, sharpness=10.0),
        _clip("c6", "v2", 3.0, 4.0, False, "dark;text", motion_mean=None, sharpness=30.0),
    ], part_name="part-1")
    store.write_part(run, "captions", [
        {"caption_id": "k1", "clip_id": "c1", "caption": "A red ball rolls across a wooden floor.",
         "captioner": "tiny-vlm@r1", "prompt_version": "dense-v1", "status": "ok", "output_tokens": 10,
         "created_at": T0},
        {"caption_id": "k2", "clip_id": "c4", "caption": "Bars of colour.", "captioner": "tiny-vlm@r1",
         "prompt_version": "dense-v1", "status": "ok", "output_tokens": 4, "created_at": T0},
        {"caption_id": "k3", "clip_id": "c1", "caption": "A ball.", "captioner": "tiny-vlm@r1",
         "prompt_version": "short-v1", "status": "ok", "output_tokens": 3, "created_at": T0 + timedelta(hours=1)},
        {"caption_id": "k4", "clip_id": "c4", "caption": None, "captioner": "tiny-vlm@r1",
         "prompt_version": "short-v1", "status": "error", "error_stage": "generate",
         "error_message": "generation for clip c4 failed: CUDA out of memory (tried 512 MiB); lower the batch size",
         "created_at": T0 + timedelta(hours=1)},
    ], part_name="part-0")
    store.update_summary(run, "curate", {
        "wall_s": 20.0, "videos": {"total": 5, "ok": 2, "error": 3, "errors_by_stage": {"decode": 2, "probe": 1}},
        "clips": {"total": 6, "kept": 2, "rejected": 4, "by_reason": {"dark": 3}},
        "footage_s": 18.0, "kept_s": 4.0,
        "throughput": {"videos_per_s": 0.25, "footage_s_per_s": 0.9,
                       "stage_s": {"probe": 1.5, "decode": 12.0, "encode": 4.0}}})
    store.update_summary(run, "caption", {"wall_s": 8.0, "clips": 2, "clips_per_s": 0.25, "tokens_per_s": 2.1})
    return run
