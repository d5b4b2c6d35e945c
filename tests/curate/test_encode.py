"""Clip encoding: one ffmpeg per video, H.264 yuv420p, even sizes, rotation in the pixels, exact frames."""

from __future__ import annotations

import dataclasses

import pytest

from rushes.curate.adapter import RunInfo, process_video
from rushes.curate.config import EncodeConfig, debug
from rushes.curate.encode import EncodeJob, build_args, encode_clips, output_size
from rushes.manifests import read
from rushes.media.ffmpeg import run_ffmpeg, run_ffprobe_json
from rushes.testing.synth import make_cut_video


def _streams(path):
    return run_ffprobe_json(str(path), timeout_s=30)["streams"][0]


def test_output_size_is_even_capped_and_never_upscaled():
    assert output_size(1920, 1080, 720) == (1280, 720)
    assert output_size(544, 1280, 720) == (544, 1280)
    assert output_size(321, 241, 0) == (320, 240)  # even, rounded without upscaling
    assert output_size(1024, 576, 144) == (256, 144)


def test_one_ffmpeg_call_cuts_every_clip(tmp_path):
    jobs = [EncodeJob("a", 0.0, 1.0), EncodeJob("b", 1.5, 3.0), EncodeJob("c", 3.2, 4.0)]
    args = build_args("in.mp4", jobs, tmp_path, (320, 240), EncodeConfig())
    assert args.count("-i") == 1 and args[args.index("-f") + 1] == "segment"
    assert args[args.index("-segment_times") + 1] == "1.499500,3.199500"
    assert args[args.index("-force_key_frames") + 1] == "1.499500,3.199500"
    graph = (tmp_path / "seg-filter.txt").read_text()
    assert graph.startswith("select='gte(t,-0.000500)*lt(t,0.999500)+") and "setsar=1,format=yuv420p" in graph
    assert "libx264" in args and args[args.index("-crf") + 1] == "22"


def test_hundreds_of_clips_of_one_video_encode_in_a_few_passes_with_exact_frames(tmp_path):
    v = make_cut_video(tmp_path / "long.mp4", [30.0], fps=25, size=(64, 48))
    jobs = [EncodeJob(f"c{i:03d}", i * 0.12, i * 0.12 + 0.08) for i in range(200)]  # 2 frames each
    done, size = encode_clips(v.path, jobs, tmp_path / "media", 64, 48, EncodeConfig(preset="ultrafast"))
    assert sorted(done) == [j.clip_id for j in jobs] and size == (64, 48)
    for clip_id in ("c000", "c063", "c064", "c199"):  # pass boundaries included
        assert int(_streams(done[clip_id])["nb_frames"]) == 2
    assert sorted(p.name for p in (tmp_path / "media").iterdir()) == sorted(f"{j.clip_id}.mp4" for j in jobs)


def test_ten_bit_odd_sized_source_gives_8bit_even_clips_with_exact_frames(tmp_path):
    src = make_cut_video(tmp_path / "src.mp4", [1.2, 1.6], fps=25, size=(320, 240))
    path = str(tmp_path / "hi.mp4")  # 4:4:4 10-bit allows an odd frame size
    run_ffmpeg(["-i", src.path, "-vf", "scale=321:241", "-pix_fmt", "yuv444p10le", "-c:v", "libx264",
                "-preset", "ultrafast", "-crf", "18", "-y", path], timeout_s=60)
    assert _streams(path)["pix_fmt"] == "yuv444p10le" and _streams(path)["width"] == 321
    out = tmp_path / "run"
    cfg = dataclasses.replace(debug(), scores_preset=None)
    o = process_video(path, out, cfg, RunInfo("t", "{}"))
    assert o.status == "ok", o.error_message
    assert read(out, "videos").to_pylist()[0]["bit_depth"] == 10
    clips = sorted(read(out, "clips").to_pylist(), key=lambda c: c["start_frame"])
    assert [c["start_frame"] for c in clips] == [0, 30 + 1]  # cut at 30, trim 0.04 s = 1 frame
    for clip in clips:
        s = _streams(out / clip["clip_path"])
        assert (s["pix_fmt"], s["width"], s["height"]) == ("yuv420p", 320, 240)
        assert int(s["nb_frames"]) == clip["num_frames"]


def test_vfr_rotated_180_video_encodes_every_frame_upright(footage_dir, tmp_path):
    out = tmp_path / "run"
    cfg = dataclasses.replace(debug(), scores_preset=None)
    o = process_video(str(footage_dir / "mpy_fire2.mp4"), out, cfg, RunInfo("t", "{}"))
    assert o.status == "ok", o.error_message
    video = read(out, "videos").to_pylist()[0]
    assert video["vfr"] and video["rotation_deg"] == 180
    (clip,) = read(out, "clips").to_pylist()
    s = _streams(out / clip["clip_path"])
    assert int(s["nb_frames"]) == clip["num_frames"] == video["num_frames_decoded"] == 25
    assert not s.get("side_data_list") and (s["width"], s["height"]) == (426, 240)
    assert float(s["duration"]) == pytest.approx(clip["duration_s"], abs=0.15)
