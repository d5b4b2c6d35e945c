"""One video -> rows, without Ray: damaged files, superseded failures, config changes."""

from __future__ import annotations

import dataclasses

from rushes.curate.adapter import RunInfo, process_video, record_crash, record_duplicate
from rushes.curate.config import debug
from rushes.manifests import read
from rushes.media.ffmpeg import run_ffmpeg
from rushes.testing.synth import make_cut_video

CFG = dataclasses.replace(debug(), scores_preset=None)


def test_truncated_file_with_index_up_front_keeps_decoded_part_and_warns(tmp_path):
    src = make_cut_video(tmp_path / "src.mp4", [2.0, 2.0, 2.0], fps=25, size=(160, 120))
    whole = tmp_path / "whole.mp4"
    run_ffmpeg(["-i", src.path, "-c", "copy", "-movflags", "+faststart", "-y", str(whole)], timeout_s=60)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    o = process_video(str(cut), tmp_path / "run", CFG, RunInfo("t", "{}"))
    row = read(tmp_path / "run", "videos").to_pylist()[0]
    assert o.status == "ok" and row["num_frames_decoded"] < row["num_frames_probe"] == 150
    assert "cut.mp4" in row["warning"] and "truncated" in row["warning"]
    clips = read(tmp_path / "run", "clips").to_pylist()
    assert max(c["end_frame"] for c in clips) == row["num_frames_decoded"]
    assert all((tmp_path / "run" / c["clip_path"]).exists() for c in clips if c["clip_path"])


def test_input_that_appears_later_supersedes_its_failure_row(tmp_path):
    path = tmp_path / "late.mp4"
    out = tmp_path / "run"
    first = process_video(str(path), out, CFG, RunInfo("t", "{}"))
    assert first.status == "error" and first.error_stage == "input"
    make_cut_video(path, [1.0, 1.0], fps=25, size=(160, 120))
    second = process_video(str(path), out, CFG, RunInfo("t", "{}"))
    videos = read(out, "videos").to_pylist()
    assert second.status == "ok" and [v["status"] for v in videos] == ["ok"]


def test_new_config_replaces_clips_and_files_and_a_later_failure_drops_them(tmp_path):
    v = make_cut_video(tmp_path / "v.mp4", [1.5, 1.5], fps=25, size=(160, 120))
    out = tmp_path / "run"
    process_video(v.path, out, CFG, RunInfo("a", "{}"))
    old = {c["clip_path"] for c in read(out, "clips").to_pylist()}
    process_video(v.path, out, dataclasses.replace(CFG, trim_s=0.2), RunInfo("b", "{}"))
    new = {c["clip_path"] for c in read(out, "clips").to_pylist()}
    assert old.isdisjoint(new) and {p.relative_to(out).as_posix() for p in (out / "media").rglob("*.mp4")} == new
    # The same bytes now fail to encode (e.g. a broken ffmpeg): no clips may survive beside an error row.
    broken = dataclasses.replace(CFG, trim_s=0.3, encode=dataclasses.replace(CFG.encode, timeout_s=1e-3))
    o = process_video(v.path, out, broken, RunInfo("c", "{}"))
    assert (o.status, o.error_stage) == ("error", "encode")
    assert read(out, "clips").num_rows == 0 and not list((out / "media").rglob("*.mp4"))


def test_rows_written_outside_a_task_carry_the_runs_provenance(tmp_path):
    run = RunInfo("cfg", '{"ffmpeg": "x", "rushes": "y"}')
    v = make_cut_video(tmp_path / "v.mp4", [1.0], fps=25, size=(64, 48))
    ok = process_video(v.path, tmp_path / "run", CFG, run)
    record_crash(str(tmp_path / "crashed.mp4"), tmp_path / "run", run, MemoryError("killed"))
    record_duplicate(str(tmp_path / "copy.mp4"), v.path, tmp_path / "run", run)
    rows = read(tmp_path / "run", "videos").to_pylist()
    assert ok.status == "ok" and sorted(r["error_stage"] or r["status"] for r in rows) == ["duplicate", "ok", "worker"]
    assert [(r["tool_versions"], r["config_hash"]) for r in rows] == [(run.tool_versions, "cfg")] * 3
    assert all(r["created_at"] is not None for r in rows)


def test_a_url_input_is_an_error_row_that_keeps_the_url(tmp_path):
    o = process_video("https://example.com/take 1.mp4", tmp_path / "run", CFG, RunInfo("t", "{}"))
    row = read(tmp_path / "run", "videos").to_pylist()[0]
    assert (o.status, row["error_stage"], row["path"]) == ("error", "input", "https://example.com/take 1.mp4")
    assert "is a URL" in row["error_message"]
