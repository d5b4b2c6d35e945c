"""Scene cuts from the decode pass and the clip rules (trim, too short, long-scene windows)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rushes.curate.config import DetectorConfig, debug, default
from rushes.curate.decode import analyse_video
from rushes.curate.split import SceneSplitter, detector_params, plan_clips
from rushes.testing.synth import SOURCES, make_cut_video


def _pts(n: int, fps: float = 25.0) -> list[float]:
    return [i / fps for i in range(n)]


@pytest.mark.parametrize("detector", ["adaptive", "content"])
def test_synthetic_cuts_found_at_exact_frames(tmp_path, detector):
    # Deterministic sources only: cellauto/life start from a random pattern and can flicker like cuts.
    sources = [SOURCES[0], SOURCES[1], SOURCES[2], SOURCES[4]]
    v = make_cut_video(tmp_path / "a.mp4", [1.5, 2.0, 1.2, 2.4], fps=25, size=(320, 240), sources=sources)
    splitter = SceneSplitter(DetectorConfig(name=detector), 25.0)
    result = analyse_video(v.path, [splitter], long_side_px=256)
    assert result.num_frames == v.num_frames
    assert splitter.cut_frames(result.pts_s) == v.cut_frames


def test_every_scene_becomes_a_clip_with_trim_and_too_short_kept_as_rejected():
    cfg = dataclasses.replace(default(), min_clip_s=2.0, trim_s=0.2)
    pts = _pts(250)  # 10 s at 25 fps, cuts at 3.0 s and 4.0 s (a scene too short after the trim)
    spans = plan_clips([75, 100], pts, 10.0, cfg)
    assert [s.scene_index for s in spans] == [0, 1, 2]
    first, short, last = spans
    # The video start/end are not cuts: no trim there; 0.2 s = 5 frames trimmed at each cut.
    assert (first.start_frame, first.end_frame, first.end_s) == (0, 70, 2.8)
    assert (short.start_frame, short.end_frame, short.keep, short.reject_reason) == (80, 95, False, "too_short")
    assert (last.start_frame, last.end_frame, last.end_s) == (105, 250, 10.0)
    assert first.keep and last.keep and first.reject_reason is None


def test_long_scene_is_split_into_equal_windows_not_truncated():
    cfg = dataclasses.replace(default(), max_clip_s=60.0, trim_s=0.0)
    pts = _pts(25 * 150)  # one 150 s scene -> 3 windows of 50 s
    spans = plan_clips([], pts, 150.0, cfg)
    assert [(s.window_index, s.start_frame, s.end_frame) for s in spans] == [
        (0, 0, 1250), (1, 1250, 2500), (2, 2500, 3750)]
    assert all(s.duration_s <= 60.0 and s.keep for s in spans)
    assert sum(s.num_frames for s in spans) == 3750


def test_a_gap_in_time_longer_than_a_clip_ends_the_clip_there():
    cfg = dataclasses.replace(default(), max_clip_s=60.0, trim_s=0.0)
    pts = _pts(25 * 3) + [36000.0 + t for t in _pts(25 * 3)]  # 3 s, then nothing for 10 hours, then 3 s
    spans = plan_clips([], pts, 36003.0, cfg)
    assert [(s.start_frame, s.end_frame) for s in spans] == [(0, 75), (75, 150)]
    assert all(s.duration_s <= 3.1 for s in spans), [s.duration_s for s in spans]


def test_spans_use_pts_on_variable_frame_rate():
    pts = [0.0, 0.04, 0.2, 0.24, 1.0, 1.04, 2.6, 2.64, 4.0]
    cfg = dataclasses.replace(default(), min_clip_s=0.5, trim_s=0.0)
    spans = plan_clips([4], pts, 4.04, cfg)
    assert [(s.start_s, s.end_s, s.num_frames) for s in spans] == [(0.0, 1.0, 4), (1.0, 4.04, 5)]


def test_detector_params_record_detector_and_clip_rules():
    params = json.loads(detector_params(debug()))
    assert params["detector"] == "AdaptiveDetector"
    assert {"min_clip_s", "max_clip_s", "trim_s", "adaptive_threshold", "min_scene_len_frames"} <= set(params)
    assert params["min_clip_s"] == debug().min_clip_s


def test_config_errors_say_how_to_fix():
    with pytest.raises(ValueError, match="use one of adaptive, content"):
        DetectorConfig(name="histogram")
    with pytest.raises(ValueError, match="max_clip_s"):
        dataclasses.replace(default(), max_clip_s=1.0)
