"""Frames reach the model from the right place and time: clip files and source spans agree."""

from __future__ import annotations

import pytest
from rushes.testing.grey_clips import cut_clip_file, level_at

from rushes.caption.frames import FrameSpec, decode_clip, display_dims, frame_times
from rushes.media.frames import DecodeError


def _levels(clip) -> list[int]:
    return [int(round(float(f.mean()) / 10.0) * 10) for f in clip.rgb]


def test_frame_times_uniform_or_fps():
    assert frame_times(2.0, 4.0, 4) == pytest.approx([2.25, 2.75, 3.25, 3.75])
    assert frame_times(0.0, 3.0, 8, fps=1.0) == pytest.approx([0.5, 1.5, 2.5])
    assert len(frame_times(0.0, 10.0, 4, fps=2.0)) == 4, "fps sampling is capped to num_frames"
    with pytest.raises(ValueError, match="empty clip span"):
        frame_times(3.0, 3.0, 4)


def test_frame_spec_keeps_aspect_and_never_upscales():
    assert FrameSpec(max_side=384).size_for(1280, 720) == (384, 216)
    assert FrameSpec(max_pixels=56 * 56).size_for(1280, 720) == (74, 42)
    assert FrameSpec(max_side=4096).size_for(320, 240) == (320, 240)


def test_clip_file_and_source_span_give_the_same_frames_in_order(tmp_path, grey_video):
    times = frame_times(3.0, 7.0, 8)
    from_source = decode_clip(str(grey_video), times, offset_s=0.0, size=(48, 32))
    clip_file = tmp_path / "clip.mp4"
    cut_clip_file(grey_video, clip_file, 3.0, 7.0)
    from_clip = decode_clip(str(clip_file), times, offset_s=3.0, size=(48, 32))
    expected = [level_at(t) for t in times]
    assert _levels(from_source) == expected and _levels(from_clip) == expected
    assert from_clip.rgb.shape == (8, 32, 48, 3)
    assert from_clip.times_s == pytest.approx(times), "times are reported in source PTS"
    assert from_source.sampled_fps == pytest.approx(2.0)


def test_frames_of_a_rotated_phone_video_come_out_portrait(footage_dir):
    path = str(footage_dir / "psd_issue-134-rotate.mp4")
    width, height = display_dims(path, None, None)  # probed when the manifest has no size
    assert (width, height) == (544, 1280)
    size = FrameSpec(max_side=128).size_for(width, height)
    clip = decode_clip(path, frame_times(1.0, 3.0, 2), size=size)
    assert clip.rgb.shape == (2, 128, 54, 3)


def test_vfr_source_frames_follow_timestamps_across_a_cut(footage_dir):
    # psd_goldeneye-vfr-drop3.mp4 has a hard cut at 3.754 s; frames on either side differ, same side match.
    path = str(footage_dir / "psd_goldeneye-vfr-drop3.mp4")
    clip = decode_clip(path, [3.60, 3.70, 3.85], size=(128, 54))
    before, also_before, after = (f.astype(float) for f in clip.rgb)
    assert abs(before - also_before).mean() < abs(also_before - after).mean() / 2


def test_broken_file_raises_decode_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(DecodeError):
        decode_clip(str(bad), [0.5], size=(32, 32))
