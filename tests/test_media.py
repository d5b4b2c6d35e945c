"""PyAV decoding and ffmpeg helpers shared by the stages."""

from __future__ import annotations

import pytest

from rushes.media import frames as F
from rushes.media.ffmpeg import FFmpegError, ffmpeg_version, run_ffmpeg
from rushes.testing.synth import make_cut_video


def test_synthetic_video_has_cuts_and_frames_where_claimed(tmp_path):
    v = make_cut_video(tmp_path / "a.mp4", [1.0, 0.6, 1.2], fps=25, size=(160, 96))
    assert v.cut_frames == [25, 40]
    got = list(F.iter_frames(v.path, size=(80, 48)))
    assert len(got) == v.num_frames == 70
    assert [f.index for f in got] == list(range(70))
    assert got[0].rgb.shape == (48, 80, 3) and got[0].rgb.dtype.name == "uint8"
    assert got[25].pts_s == pytest.approx(1.0, abs=1e-3)


def test_sample_frames_returns_frames_shown_at_each_time_in_given_order(tmp_path):
    v = make_cut_video(tmp_path / "a.mp4", [2.0, 2.0], fps=10, size=(64, 48))
    got = F.sample_frames(v.path, [3.05, 0.0, 1.96, 9.0])
    assert [round(f.pts_s, 2) for f in got] == [3.0, 0.0, 1.9, 3.9]


def test_rotation_tag_gives_portrait_frames(footage_dir):
    info = F.stream_info(str(footage_dir / "psd_issue-134-rotate.mp4"))
    assert (info.width_px, info.height_px, info.rotation_deg) == (544, 1280, 90)
    frame = next(F.iter_frames(str(footage_dir / "psd_issue-134-rotate.mp4"), size=(68, 160)))
    assert frame.rgb.shape == (160, 68, 3)


def test_anamorphic_display_size(footage_dir):
    info = F.stream_info(str(footage_dir / "psd_issue-195-aspect-ratio.mp4"))
    assert (info.coded_width_px, info.width_px, info.height_px) == (704, 1024, 576)


def test_broken_inputs_raise_decode_error_naming_the_file(tmp_path):
    txt = tmp_path / "notes.mp4"
    txt.write_text("not a video")
    with pytest.raises(F.DecodeError, match="notes.mp4"):
        list(F.iter_frames(str(txt)))


def test_ffmpeg_runs_with_whitelist_and_reports_errors(tmp_path):
    assert ffmpeg_version() != "unknown"
    with pytest.raises(FFmpegError, match="exited"):
        run_ffmpeg(["-i", str(tmp_path / "missing.mp4"), "-f", "null", "-"], timeout_s=30)


def test_fit_size_keeps_aspect_and_even_sizes():
    assert F.fit_size(1920, 1080, short_side=360) == (640, 360)
    assert F.fit_size(545, 1281, short_side=1000) == (544, 1280)
    assert F.fit_size(100, 50, max_side=64) == (64, 32)


def test_sample_frames_at_low_frame_rate_returns_the_frame_on_screen(tmp_path):
    # 1 fps: the frame shown at t=2.9 has PTS 2.0, more than half a second before t.
    v = make_cut_video(tmp_path / "slow.mp4", [2.0, 3.0], fps=1, size=(64, 48))
    got = F.sample_frames(v.path, [2.9, 4.5])
    assert [round(f.pts_s, 2) for f in got] == [2.0, 4.0]


def test_write_video_keeps_a_fractional_frame_rate(tmp_path):
    import numpy as np

    frames = np.zeros((6, 24, 40, 3), dtype=np.uint8)
    F.write_video(str(tmp_path / "s.mp4"), frames, fps=24000 / 1001)
    info = F.stream_info(str(tmp_path / "s.mp4"))
    assert (info.width_px, info.height_px) == (40, 24)
    assert abs(info.fps - 23.976) < 1e-3
    with pytest.raises(ValueError, match="even"):
        F.write_video(str(tmp_path / "odd.mp4"), np.zeros((2, 23, 40, 3), dtype=np.uint8), fps=24)
