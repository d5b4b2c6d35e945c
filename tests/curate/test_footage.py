"""Real footage from ../shared/footage against its public cut lists, and every file processing."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import pytest

from rushes.curate.adapter import RunInfo, process_video
from rushes.curate.config import DetectorConfig, EncodeConfig, RayConfig, default
from rushes.curate.decode import analyse_video
from rushes.curate.pipeline import run_curate
from rushes.curate.probe import probe_video
from rushes.curate.split import SceneSplitter
from rushes.manifests import read
from rushes.media.ffmpeg import run_ffprobe_json


def _cuts(path, detector="adaptive"):
    probe = probe_video(str(path))
    splitter = SceneSplitter(DetectorConfig(name=detector), probe.fps)
    result = analyse_video(str(path), [splitter], long_side_px=256)
    return result, splitter.cut_frames(result.pts_s)


GOLDEN_CONFIGS = {
    "AdaptiveDetector.default": DetectorConfig(), "AdaptiveDetector.t5": DetectorConfig(adaptive_threshold=5),
    "ContentDetector.default": DetectorConfig(name="content"),
    "ContentDetector.t30": DetectorConfig(name="content", content_threshold=30),
}


@pytest.mark.parametrize("name", ["testvideo.mp4", "goldeneye-vfr-drop3.mp4", "counter.mp4", "fades.mp4"])
def test_pyscenedetect_published_goldens_reproduce_exactly(footage_dir, name):
    """Our analysis frames are the ones PySceneDetect's thresholds were tuned on: all its goldens hold
    (psd_testvideo.mp4 AdaptiveDetector [30, 180, 394, 691] among them, exactly, not just within a frame)."""
    path = footage_dir / f"psd_{name}"
    fps = probe_video(str(path)).fps
    splitters = {key: SceneSplitter(cfg, fps) for key, cfg in GOLDEN_CONFIGS.items()}
    result = analyse_video(str(path), list(splitters.values()), long_side_px=256)  # one decode, four detectors
    goldens = footage_dir / "groundtruth" / "pyscenedetect_goldens"
    for key, splitter in splitters.items():
        # Goldens are PySceneDetect frame numbers: PTS x nominal fps.
        got = [round(result.pts_s[c] * fps) for c in splitter.cut_frames(result.pts_s)]
        assert got == json.loads((goldens / f"{name}.{key}.json").read_text())["cuts"], key


def test_goldeneye_vfr_cuts_at_golden_times(footage_dir):
    result, cuts = _cuts(footage_dir / "psd_goldeneye-vfr-drop3.mp4")
    times = [result.pts_s[c] for c in cuts]
    frame_s = 1 / 16.0  # one (average) frame duration
    assert len(times) == 2
    assert times[0] == pytest.approx(3.754, abs=frame_s) and times[1] == pytest.approx(8.759, abs=frame_s)
    assert cuts == [60, 140]  # decoded-frame indices, not PTS x nominal fps


def test_probe_reads_rotation_sar_vfr_and_pixel_format(footage_dir):
    rot = probe_video(str(footage_dir / "psd_issue-134-rotate.mp4"))
    assert (rot.coded_width_px, rot.width_px, rot.height_px, rot.rotation_deg) == (1280, 544, 1280, 90)
    ana = probe_video(str(footage_dir / "psd_issue-195-aspect-ratio.mp4"))
    assert (ana.sar, ana.width_px, ana.height_px) == (Fraction(16, 11), 1024, 576)
    vfr = probe_video(str(footage_dir / "psd_goldeneye-vfr-drop3.mp4"))
    assert vfr.vfr and vfr.avg_fps == pytest.approx(16.05, abs=0.1)
    assert probe_video(str(footage_dir / "iio_cockatoo.mp4")).pix_fmt == "yuv444p"
    mkv = probe_video(str(footage_dir / "psd_issue-236-split-copy.mkv"))
    assert mkv.codec == "h264" and mkv.width_px == 1920  # font attachments are not the video stream


def _encode_cfg(**enc):
    return dataclasses.replace(default(), scores_preset=None,
                               encode=EncodeConfig(preset="ultrafast", crf=30, **enc))


def test_rotated_phone_video_gives_portrait_clips_with_rotation_in_pixels(footage_dir, tmp_path):
    out = tmp_path / "run"
    o = process_video(str(footage_dir / "psd_issue-134-rotate.mp4"), out, _encode_cfg(max_short_side_px=272),
                      RunInfo("t", "{}"))
    assert o.status == "ok", o.error_message
    everything = sorted(read(out, "clips").to_pylist(), key=lambda c: c["start_s"])
    assert [(c["keep"], c["reject_reason"], bool(c["clip_path"])) for c in everything][-1] == (
        False, "too_short", False)  # the last 1.1 s scene is listed, not encoded
    clips = [c for c in everything if c["keep"]]
    assert [round(c["end_s"] - c["start_s"], 1) for c in clips] == [3.7, 4.8]
    for clip in clips:
        info = run_ffprobe_json(str(out / clip["clip_path"]), timeout_s=30)
        v = info["streams"][0]
        assert (v["width"], v["height"]) == (clip["width_px"], clip["height_px"]) == (272, 640)
        assert not v.get("side_data_list")  # rotation is in the pixels, not a tag
        assert int(v["nb_frames"]) == clip["num_frames"]
        assert v["pix_fmt"] == "yuv420p" and v["codec_name"] == "h264"


def test_anamorphic_video_gets_square_pixels(footage_dir, tmp_path):
    out = tmp_path / "run"
    o = process_video(str(footage_dir / "psd_issue-195-aspect-ratio.mp4"), out, _encode_cfg(max_short_side_px=144),
                      RunInfo("t", "{}"))
    assert o.status == "ok", o.error_message
    clips = read(out, "clips").to_pylist()
    assert [c["start_frame"] for c in clips][1:] == [73, 173, 304, 424, 487]  # cuts 70..484 + 0.1 s trim
    v = run_ffprobe_json(str(out / clips[0]["clip_path"]), timeout_s=30)["streams"][0]
    assert (v["width"], v["height"], v.get("sample_aspect_ratio", "1:1")) == (256, 144, "1:1")


def test_every_shared_footage_file_processes(footage_dir, tmp_path, ray_local):
    cfg = dataclasses.replace(default(), scores_preset=None, encode=EncodeConfig(enabled=False))
    summary = run_curate([str(footage_dir)], tmp_path / "run", cfg, RayConfig())
    videos = read(tmp_path / "run", "videos").to_pylist()
    bad = [(v["path"], v["error_message"]) for v in videos if v["status"] != "ok"]
    assert not bad
    assert summary["videos"]["ok"] == len(videos) == len(list(footage_dir.glob("*.*"))) - 1  # minus README
    clips = read(tmp_path / "run", "clips").to_pylist()
    for v in videos:  # clips cover the decoded frames of each video in order, trims aside
        mine = sorted((c for c in clips if c["video_id"] == v["video_id"]), key=lambda c: c["start_frame"])
        assert mine and mine[-1]["end_frame"] <= v["num_frames_decoded"]
        assert all(a["end_frame"] <= b["start_frame"] for a, b in zip(mine, mine[1:]))
        assert json.loads(mine[0]["detector_params"])["detector"] == "AdaptiveDetector"
