"""``run_curate`` end to end on one shared local Ray: manifests, clip files, bad inputs, summary, resume."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pytest

from rushes.curate.config import RayConfig, debug
from rushes.curate.pipeline import run_curate, tool_versions
from rushes.manifests import read, read_summary
from rushes.media.ffmpeg import run_ffmpeg, run_ffprobe_json
from rushes.testing.synth import make_cut_video

SHOTS = [(2.0, 1.0, 2.4), (3.0, 2.2)]  # seconds per shot


def _bad_inputs(d: Path) -> dict[str, str]:
    """name -> expected error_stage."""
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    good = make_cut_video(d / "_full.mp4", [2.0, 2.0], fps=25, size=(160, 120))
    data = Path(good.path).read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])  # moov atom at the end: lost
    os.remove(good.path)
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", "-y", str(d / "audio.mp4")],
               timeout_s=60, whitelist=None)
    return {"empty.mp4": "input", "notes.mp4": "probe", "truncated.mp4": "probe", "audio.mp4": "probe",
            "missing.mp4": "input"}


@pytest.fixture(scope="module")
def curated(tmp_path_factory, ray_local):
    d = tmp_path_factory.mktemp("footage")
    vids = [make_cut_video(d / f"v{i}.mp4", shots, fps=25, size=(320, 240)) for i, shots in enumerate(SHOTS)]
    bad = _bad_inputs(d / "bad" if (d / "bad").mkdir() is None else d)
    out = tmp_path_factory.mktemp("run")
    inputs = [str(d / "v*.mp4"), str(d / "bad"), str(d / "bad" / "missing.mp4"), str(d / "bad" / "notes.mp4")]
    summary = run_curate(inputs, out, debug(), RayConfig())
    return out, vids, bad, summary


def test_clips_match_known_cuts_and_files_are_complete(curated):
    out, vids, _, _ = curated
    videos = {Path(v["path"]).name: v for v in read(out, "videos").to_pylist()}
    clips = read(out, "clips").to_pylist()
    cfg = debug()
    for v in vids:
        row = videos[Path(v.path).name]
        assert row["status"] == "ok" and row["num_frames_decoded"] == v.num_frames
        mine = sorted((c for c in clips if c["video_id"] == row["video_id"]), key=lambda c: c["start_frame"])
        assert len(mine) == len(v.cut_frames) + 1 == row["num_clips"]
        trim = round(cfg.trim_s * v.fps)
        for clip, cut in zip(mine[1:], v.cut_frames):
            assert clip["start_frame"] == cut + trim
        for clip in mine:
            assert clip["num_frames"] == clip["end_frame"] - clip["start_frame"]
            if not clip["keep"]:
                assert clip["reject_reason"] and "too_short" in clip["reject_reason"] or clip["clip_path"]
            if clip["clip_path"]:
                info = run_ffprobe_json(str(out / clip["clip_path"]), timeout_s=30)["streams"][0]
                assert int(info["nb_frames"]) == clip["num_frames"]
                assert (info["width"], info["height"]) == (clip["width_px"], clip["height_px"])
    short = [c for c in clips if c["duration_s"] < cfg.min_clip_s]
    assert not short  # debug min is 0.5 s: every synthetic scene is long enough


def test_bad_inputs_become_error_rows_naming_file_and_fix(curated):
    out, _, bad, summary = curated
    videos = {Path(v["path"]).name: v for v in read(out, "videos").to_pylist()}
    for name, stage in bad.items():
        row = videos[name]
        assert (row["status"], row["error_stage"]) == ("error", stage), row
        assert name in row["error_message"]
        assert any(w in row["error_message"] for w in ("remove it", "re-copy", "check the path"))
    assert summary["videos"]["error"] == len(bad)
    assert summary["videos"]["errors_by_stage"] == {"input": 2, "probe": 3}
    assert not [c for c in read(out, "clips").to_pylist() if c["video_id"] in {v["video_id"] for v in videos.values()
                                                                               if v["status"] == "error"}]


def test_every_row_kind_records_the_same_tool_versions(curated):
    out = curated[0]
    expected = json.dumps(tool_versions(), sort_keys=True)
    assert {"rushes", "ffmpeg", "scenedetect", "av"} <= set(json.loads(expected))
    videos, clips = read(out, "videos").to_pylist(), read(out, "clips").to_pylist()
    assert {v["status"] for v in videos} == {"ok", "error"} and clips
    assert [r["tool_versions"] for r in videos + clips] == [expected] * (len(videos) + len(clips))


def test_summary_has_counts_and_throughput(curated):
    out, _, _, summary = curated
    assert read_summary(out)["curate"] == json.loads(json.dumps(summary, default=str))
    assert summary["clips"]["total"] == summary["clips"]["kept"] + summary["clips"]["rejected"]
    assert summary["footage_s"] > summary["kept_s"] > 0
    assert set(summary["throughput"]["stage_s"]) >= {"probe", "decode", "encode"}
    assert summary["throughput"]["videos_per_s"] > 0
    assert json.loads((out / "config" / "curate.json").read_text())["config"]["min_clip_s"] == debug().min_clip_s


def test_duckdb_polars_and_pandas_open_the_manifests(curated):
    out = curated[0]
    n = duckdb.sql(f"select count(*) from '{out}/clips/*.parquet' c join '{out}/videos/*.parquet' v "
                   f"using (video_id) where v.status = 'ok'").fetchall()[0][0]
    assert n == read(out, "clips").num_rows
    assert pl.read_parquet(f"{out}/videos/*.parquet").height == read(out, "videos").num_rows
    assert len(pd.read_parquet(out / "clips")) == n


def test_rerun_skips_completed_videos_and_a_new_config_reprocesses(curated):
    out, vids, _, _ = curated
    before = read(out, "clips").sort_by("clip_id").to_pylist()
    again = run_curate([v.path for v in vids], out, debug(), RayConfig())
    assert again["videos"]["skipped_this_run"] == len(vids) and again["videos"]["processed_this_run"] == 0
    assert read(out, "clips").sort_by("clip_id").to_pylist() == before
    changed = dataclasses.replace(debug(), trim_s=0.2)
    third = run_curate([vids[0].path], out, changed, RayConfig())
    assert third["videos"]["processed_this_run"] == 1


def test_clips_parts_are_filtered_before_they_become_visible(curated):
    # The adapter applies the run's thresholds before writing each part, so a run killed before its final
    # filter pass never exposes unfiltered clips, and that pass has nothing left to rewrite.
    out, _, _, _ = curated
    clips = read(out, "clips").to_pylist()
    assert clips and all(c["filter_preset"] == debug().filter_preset and c["filter_params"] for c in clips)
    assert read_summary(out)["filter"]["parts_rewritten"] == 0


def test_a_copy_of_a_video_is_recorded_once_as_a_duplicate(tmp_path, ray_local):
    import shutil

    v = make_cut_video(tmp_path / "a.mp4", (2.5, 2.5), fps=25, size=(160, 120))
    shutil.copy(v.path, tmp_path / "copy_of_a.mp4")
    out = tmp_path / "run"
    summary = run_curate([str(tmp_path / "a.mp4"), str(tmp_path / "copy_of_a.mp4")], out, debug(), RayConfig())
    videos = {Path(r["path"]).name: r for r in read(out, "videos").to_pylist()}
    assert videos["a.mp4"]["status"] == "ok"
    dup = videos["copy_of_a.mp4"]
    assert (dup["status"], dup["error_stage"], dup["error_message"]) == ("duplicate", None, None)
    # Worded the right way round: the copy is the later input, the first seen is the original.
    assert f"{tmp_path / 'copy_of_a.mp4'} is a byte-identical copy of {v.path}, the first seen" in dup["warning"]
    assert dup["tool_versions"] == videos["a.mp4"]["tool_versions"] == json.dumps(tool_versions(), sort_keys=True)
    clips = read(out, "clips").to_pylist()
    assert {c["video_id"] for c in clips} == {videos["a.mp4"]["video_id"]}
    assert summary["videos"] == {**summary["videos"], "ok": 1, "error": 0, "duplicate": 1, "processed_this_run": 2}


def test_a_copy_found_in_a_later_run_gets_its_own_row_and_skipped_files_are_counted(tmp_path, ray_local):
    import shutil

    first, later = tmp_path / "day1", tmp_path / "day2"
    first.mkdir()
    later.mkdir()
    v = make_cut_video(first / "a.mp4", (1.5, 1.5), fps=25, size=(160, 120))
    (first / "notes.md").write_text("shot list")
    out = tmp_path / "run"
    one = run_curate([str(first)], out, debug(), RayConfig())
    assert one["inputs_skipped"] == {"not_video": 1} and one["videos"]["ok"] == 1
    shutil.copy(v.path, later / "a_renamed.mp4")
    two = run_curate([str(later)], out, debug(), RayConfig())
    videos = {Path(r["path"]).name: r for r in read(out, "videos").to_pylist()}
    assert set(videos) == {"a.mp4", "a_renamed.mp4"} and videos["a.mp4"]["status"] == "ok"
    dup = videos["a_renamed.mp4"]
    assert (dup["status"], dup["error_stage"]) == ("duplicate", None)
    assert f"byte-identical copy of {v.path}, the first seen" in dup["warning"] and dup["tool_versions"]
    assert two["videos"]["duplicate"] == 1 and two["videos"]["error"] == 0 and two["inputs_skipped"] == {}
    assert {c["video_id"] for c in read(out, "clips").to_pylist()} == {videos["a.mp4"]["video_id"]}
