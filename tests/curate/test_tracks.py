"""The main video track is chosen by what it is, not by its order: a one-frame cover track stored before the real
video, or an attached picture, is never analysed, encoded or decoded as the video."""

from __future__ import annotations

import pytest

from rushes.manifests import store
from rushes.media.ffmpeg import run_ffmpeg
from rushes.media.frames import Track, main_track, main_video_index, sample_frames


def test_the_rule_prefers_a_real_track_then_duration_then_frames():
    cover = Track(0, attached_pic=True, frames=0, duration_s=10.0)
    one_frame = Track(1, attached_pic=False, frames=1, duration_s=0.04)
    real = Track(2, attached_pic=False, frames=0, duration_s=4.0)
    assert main_track([cover, one_frame, real]) == 2
    assert main_track([Track(4, False, 1, 0.0), Track(3, False, 100, 0.0)]) == 3, "no durations: frames decide"
    assert main_track([cover]) == 0, "a file holding only a picture track still has one"


def _ffmpeg(*args):
    run_ffmpeg(list(args), timeout_s=120, whitelist=None)


@pytest.fixture(scope="module")
def covered(tmp_path_factory):
    """A red one-frame cover track first, then the real 4 s test pattern: in a Matroska file (a plain track)
    and in an MP4 (an attached picture)."""
    root = tmp_path_factory.mktemp("covered")
    (root / "in").mkdir()
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x48:d=1", "-frames:v", "1", "-y", str(root / "cover.png"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x120:r=10:d=4", "-pix_fmt", "yuv420p", "-c:v", "libx264",
            "-y", str(root / "real.mp4"))
    _ffmpeg("-i", str(root / "cover.png"), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-frames:v", "1", "-y",
            str(root / "cover.mkv"))
    _ffmpeg("-i", str(root / "cover.mkv"), "-i", str(root / "real.mp4"), "-map", "0:v", "-map", "1:v", "-c", "copy",
            "-y", str(root / "in" / "cover_track.mkv"))
    _ffmpeg("-i", str(root / "real.mp4"), "-i", str(root / "cover.png"), "-map", "1", "-map", "0", "-c:v:0", "png",
            "-c:v:1", "copy", "-disposition:v:0", "attached_pic", "-y", str(root / "in" / "attached_pic.mp4"))
    return root


def test_decoding_reads_the_real_track(covered):
    for name in ("cover_track.mkv", "attached_pic.mp4"):
        path = str(covered / "in" / name)
        frame = sample_frames(path, [2.0])[0]
        assert frame.rgb.shape[:2] == (120, 160), f"{name}: decoded the 64x48 cover"
        assert main_video_index(path) in (0, 1)


def test_curate_analyses_and_encodes_the_real_track(covered, ray_local):
    from rushes.cli import main

    out = covered / "out"
    assert main(["curate", str(covered / "in"), "--out", str(out), "--filter-preset", "none"]) == 0
    videos = store.read(out, "videos").to_pylist()
    assert len(videos) == 2 and {v["status"] for v in videos} == {"ok"}
    for v in videos:
        assert (v["width_px"], v["height_px"]) == (160, 120), v["path"]
        assert v["num_frames_decoded"] >= 39 and v["duration_s"] > 3.5, v["path"]
    for clip in store.read(out, "clips").to_pylist():
        assert clip["clip_path"] and clip["duration_s"] > 3.0
        frame = sample_frames(str(out / clip["clip_path"]), [1.0])[0]
        assert frame.rgb.mean(axis=(0, 1))[0] < 200, "the encoded clip is the test pattern, not the red cover"
