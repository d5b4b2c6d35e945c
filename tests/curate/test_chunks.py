"""Long videos as time chunks (rushes.curate.chunks): cuts, clips, scores and ids identical to one task.

In-process tests run the chunked path's steps one after another (analyse each chunk, reconcile) and compare
every column of every clip row with the same video as one chunk (one decode); the pipeline test runs both through
Ray.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from rushes.curate import adapter as A
from rushes.curate.chunks import plan_chunks, warmup_s
from rushes.curate.config import DetectorConfig, RayConfig, debug
from rushes.curate.job import WHOLE, Source
from rushes.curate.probe import probe_video
from rushes.manifests import read
from rushes.testing.synth import make_cut_video

FPS = 10
# Chunks of 15 s over 60 s: borders at frames 150, 300 and 450. Cuts exactly at a border (150), 3 frames
# before one (297: decided after it), 1 frame after one (301: within min_scene_len of 297, so suppressed in
# both runs), 1 frame before and 2 after the last border (449, 452).
CUTS = [80, 150, 297, 301, 449, 452, 520]
CHUNK_S = 15.0
RUN = A.RunInfo("cfg", "{}")


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> str:
    bounds = [0, *CUTS, 600]
    shots = [(b - a) / FPS for a, b in zip(bounds[:-1], bounds[1:])]
    return make_cut_video(tmp_path_factory.mktemp("long") / "long.mp4", shots, fps=FPS, size=(160, 90)).path


def _cfg(detector: str = "adaptive", **changes):
    cfg = dataclasses.replace(debug(), **{"chunk_s": CHUNK_S, **changes})
    return dataclasses.replace(cfg, detector=DetectorConfig(name=detector))


def _job(path: str, spans) -> A.VideoJob:
    return A.VideoJob(Source(path, "vid", 0, ""), probe_video(path), tuple(spans))


def _one_task(path: str, cfg):
    """The video as one chunk (one decode): its plan."""
    job = _job(path, [WHOLE])
    return A.plan_video(job, A.analyse_whole(job, path, cfg), "unused-out", cfg, RUN)


def _chunked(path: str, cfg, warm_s: float | None = None):
    probe = probe_video(path)
    warm = warmup_s(cfg, A._nominal_fps(probe)) if warm_s is None else warm_s
    job = _job(path, plan_chunks(probe.duration_s, cfg.chunk_s, warm))
    parts = [A.analyse_chunk_of(job, k, cfg, RUN) for k in reversed(range(len(job.spans)))]  # any order
    return job, A.reconcile_video(job, parts, "unused-out", cfg, RUN)


def _same(one: list[dict], two: list[dict]) -> None:
    assert len(one) == len(two)
    for a, b in zip(one, two):
        a, b = dict(a), dict(b)
        a.pop("created_at"), b.pop("created_at")
        assert a == b, {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}


def test_chunks_at_and_near_cuts_give_the_one_task_clips_exactly(long_video):
    cfg = _cfg()
    whole = _one_task(long_video, cfg)
    one = whole.clip_rows
    job, plan = _chunked(long_video, cfg)
    assert [s.start_s for s in job.spans] == [0.0, 15.0, 30.0, 45.0]
    assert plan is not None, "the chunks must join exactly (no fallback to one task)"
    _same(one, plan.clip_rows)
    assert plan.facts == whole.facts  # frames decoded, rotation, vfr, warnings
    assert len(plan.groups) == 4 and len(whole.groups) == 1  # one encode group per chunk
    # The cuts at and near the borders were found (trimmed by one frame), 301 suppressed by min_scene_len.
    assert {r["start_frame"] for r in one} == {0, 81, 151, 298, 450, 521}
    assert any(r["motion_mean"] is not None for r in one) and all(r["sharpness"] is not None for r in one)
    assert all(any(r["signature"]) for r in one)  # near-duplicate signatures joined across chunks too


def test_a_content_detector_merge_open_across_a_border_is_continued_from_the_previous_chunk(long_video, caplog):
    """ContentDetector's MERGE filter stays open from the close cuts at 297/301 until 449: a state no warm-up
    reproduces. The check sees it, and that chunk is decoded again from the previous chunk's detector: the clips
    are still exactly the one-task clips."""
    cfg = _cfg("content")
    with caplog.at_level(logging.INFO, logger="rushes.curate.adapter"):
        _, plan = _chunked(long_video, cfg)
    assert "chunk 3 (45.000 s): detector or sampler state did not converge" in caplog.text
    assert "decoding chunk 3 again from the previous chunk's detector" in caplog.text and plan is not None
    _same(_one_task(long_video, cfg).clip_rows, plan.clip_rows)


def test_a_warm_up_too_short_for_the_detector_is_caught_not_approximated(long_video, caplog):
    """With no warm-up the detector state at a border cannot converge: the video is redone in one task."""
    with caplog.at_level(logging.WARNING, logger="rushes.curate.adapter"):
        _, plan = _chunked(long_video, _cfg(), warm_s=0.0)
    assert plan is None
    assert "in one task instead of 4 chunks" in caplog.text and "did not converge" in caplog.text


def test_a_damaged_span_sends_the_video_to_one_task(tmp_path, caplog):
    """A chunk that meets damage (frames that do not decode) cannot prove its join: the whole video is decoded
    in one task, which records the damage and plans around it as usual."""
    v = make_cut_video(tmp_path / "whole.mp4", [4.0, 4.0], fps=25, size=(160, 120),
                       extra_output_args=["-movflags", "+faststart"])
    data = bytearray(Path(v.path).read_bytes())
    a, b = int(len(data) * 0.40), int(len(data) * 0.55)
    data[a:b] = bytes((i * 7919) % 251 for i in range(b - a))
    damaged, cfg = str(tmp_path / "damaged.mp4"), _cfg(chunk_s=2.0)
    Path(damaged).write_bytes(bytes(data))
    job = A.process_video(damaged, tmp_path / "redo", cfg, RUN)  # hashed and probed: 4 chunks, nothing written
    assert isinstance(job, A.VideoJob) and len(job.spans) == 4 and not (tmp_path / "redo").exists()
    parts = [A.analyse_chunk_of(job, k, cfg, RUN) for k in range(len(job.spans))]
    with caplog.at_level(logging.WARNING, logger="rushes.curate.adapter"):
        assert A.reconcile_video(job, parts, tmp_path / "redo", cfg, RUN) is None
    assert "damaged" in caplog.text
    # The driver then redoes it as one chunk: exactly the rows of a run that never cut it into chunks.
    assert A.curate_whole(job, tmp_path / "redo", cfg, RUN).status == "ok"
    assert A.process_video(damaged, tmp_path / "one", dataclasses.replace(cfg, chunk_s=0.0), RUN).status == "ok"
    _assert_equal_tables(_tables(tmp_path / "one"), _tables(tmp_path / "redo"))
    assert "damaged" in read(tmp_path / "redo", "videos")["warning"][0].as_py()


def test_a_chunk_that_cannot_read_its_span_sends_the_video_to_one_task(long_video, tmp_path):
    cfg = _cfg()
    job = A.VideoJob(Source(str(tmp_path / "gone.mp4"), "vid", 0, ""), probe_video(long_video),
                     tuple(plan_chunks(60.0, CHUNK_S, 3.0)))
    part = A.analyse_chunk_of(job, 1, cfg, RUN)
    assert part.decode.problem and "gone.mp4" in part.decode.problem


@pytest.mark.parametrize("name, detector", [("mpy_chaplin.mp4", "adaptive"), ("psd_goldeneye-vfr-drop3.mp4", "adaptive"),
                                            ("psd_issue-134-rotate.mp4", "adaptive"),
                                            ("psd_issue-195-aspect-ratio.mp4", "content")])
def test_real_footage_in_small_chunks_gives_the_one_task_clips(footage_dir, name, detector):
    """Real files (VFR with dropped frames, a rotation tag, film grain, anamorphic pixels) in 4 s chunks: several
    per file (ContentDetector on the last: borders where its MERGE filter is open continue from the previous
    chunk's detector)."""
    path = str(footage_dir / name)
    cfg = _cfg(detector, chunk_s=4.0)
    whole = _one_task(path, cfg)
    job, plan = _chunked(path, cfg)
    assert len(job.spans) >= 3 and plan is not None
    _same(whole.clip_rows, plan.clip_rows)
    assert plan.facts == whole.facts


def test_chunk_length_is_checked_and_not_part_of_the_config_hash():
    base = debug()
    assert dataclasses.replace(base, chunk_s=0.0).hashed_dict() == base.hashed_dict()  # a rerun resumes
    with pytest.raises(ValueError, match="chunk_s"):
        dataclasses.replace(base, chunk_s=0.5)


def test_chunk_flag_sets_the_length_and_says_its_default(capsys):
    import argparse

    from rushes.curate import cli

    sub = argparse.ArgumentParser().add_subparsers()
    cli.register(sub)
    curate = sub.choices["curate"]
    assert cli.build_config(curate.parse_args(["in.mp4", "--out", "o"])).chunk_s == 180.0
    assert cli.build_config(curate.parse_args(["in.mp4", "--out", "o", "--chunk-s", "0"])).chunk_s == 0.0
    assert cli.main(curate.parse_args(["in.mp4", "--out", "o", "--chunk-s", "0.5"])) == 2
    assert "argument --chunk-s: must be 0 (off) or >= 1" in capsys.readouterr().err
    assert "(default: 180.0)" in " ".join(curate.format_help().split())


def test_work_is_handed_out_longest_first_across_videos_and_chunks():
    import math

    from rushes.curate.pipeline import WorkQueue

    q = WorkQueue()
    q.push(40.0, "video", "short.mp4")
    q.push(180.0, "chunk", "long.mp4", 0)
    q.push(95.0, "chunk", "long.mp4", 9)  # the last, shorter chunk
    q.push(180.0, "chunk", "long.mp4", 1)
    q.push(math.inf, "reconcile", "other.mp4")  # unblocks a video's encoding
    q.push(60.0, "encode", "other.mp4", 0)
    order = [(kind, path, args) for kind, path, args in (q.pop() for _ in range(len(q)))]
    assert order == [("reconcile", "other.mp4", ()), ("chunk", "long.mp4", (0,)), ("chunk", "long.mp4", (1,)),
                     ("chunk", "long.mp4", (9,)), ("encode", "other.mp4", (0,)), ("video", "short.mp4", ())]


def test_encode_groups_split_neighbouring_clips_by_footage():
    jobs = [A.EncodeJob(f"c{i}", i * 10.0, i * 10.0 + d) for i, d in enumerate([9, 1, 1, 1, 9, 9])]
    groups = A.encode_groups(jobs, 3)
    assert [j for g in groups for j in g] == jobs and len(groups) == 3
    assert A.encode_groups(jobs[:1], 4) == [jobs[:1]] and A.encode_groups([], 2) == []


def _tables(out: Path):
    clips = read(out, "clips").to_pandas().sort_values("clip_id").reset_index(drop=True)
    videos = read(out, "videos").to_pandas().sort_values("video_id").reset_index(drop=True)
    for _, r in clips[clips["clip_path"].notna()].iterrows():
        assert (out / r["clip_path"]).stat().st_size > 0
    # Every clip the split rules kept is encoded (score rejects too: a looser re-filter brings them back).
    too_short = [isinstance(r, str) and "too_short" in r for r in clips["reject_reason"]]
    assert clips["clip_path"].notna().tolist() == [not t for t in too_short]
    return clips.drop(columns=["created_at"]), videos.drop(columns=["created_at", "process_s", "path"])


def _assert_equal_tables(one, two) -> None:
    for a, b in zip(one, two):
        assert list(a.columns) == list(b.columns)
        for col in a.columns:
            assert a[col].equals(b[col]), col


def _curate_chunked(inputs: list[str], out: Path, chunk_s: float, caplog) -> dict:
    from rushes.curate.pipeline import run_curate

    with caplog.at_level(logging.INFO, logger="rushes.curate.pipeline"):
        summary = run_curate(inputs, out, dataclasses.replace(debug(), chunk_s=chunk_s), RayConfig())
    assert "redoing it in one task" not in caplog.text
    return summary


def test_curate_through_ray_with_chunks_writes_the_tables_of_one_task_per_video(long_video, tmp_path, ray_local,
                                                                                 caplog):
    """The long synthetic video in 4 chunks through Ray (chunk tasks, a reconcile, encode groups, a finish)
    against the one-task path: every column of both tables equal but times; a clip file per kept clip."""
    one = tmp_path / "one"
    assert A.process_video(long_video, one, dataclasses.replace(debug(), chunk_s=0.0), RUN).status == "ok"
    summary = _curate_chunked([long_video], tmp_path / "chunked", CHUNK_S, caplog)
    assert "60 s of footage in 4 chunks" in caplog.text
    assert summary["videos"]["ok"] == 1 and summary["videos"]["nodes_used"] == 1
    assert all(summary["throughput"]["stage_s"][k] > 0 for k in ("probe", "hash", "decode", "encode"))
    one_tables, two_tables = _tables(one), _tables(tmp_path / "chunked")
    for t in (one_tables, two_tables):  # the run's own provenance differs (config hash of the whole run)
        for df in t:
            df.drop(columns=["config_hash", "tool_versions"], inplace=True)
    _assert_equal_tables(one_tables, two_tables)


@pytest.mark.slow
def test_curate_with_small_chunks_on_real_footage_equals_a_run_without(long_video, footage_dir, tmp_path, ray_local,
                                                                        caplog):
    """Through Ray: the synthetic and a real VFR file in 4 s chunks vs ``--chunk-s 0``: every column of both
    tables equal (but times), clip files for every kept clip."""
    inputs = [long_video, str(footage_dir / "psd_goldeneye-vfr-drop3.mp4")]
    tables = {}
    for chunk_s in (0.0, 4.0):
        _curate_chunked(inputs, tmp_path / f"chunk{chunk_s:g}", chunk_s, caplog)
        tables[chunk_s] = _tables(tmp_path / f"chunk{chunk_s:g}")
    assert "60 s of footage in 15 chunks" in caplog.text and "10 s of footage in 3 chunks" in caplog.text
    _assert_equal_tables(tables[0.0], tables[4.0])


@pytest.mark.slow
def test_kill_9_while_a_long_video_is_encoded_then_rerun_completes_it(long_video, tmp_path):
    """Killed after some of a chunked video's clip files exist but before its rows: the rerun redoes the video
    and leaves exactly the clip files its clips reference (the videos row is still written last)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = [sys.executable, "-m", "rushes.cli", "curate", long_video, "--out", str(out), "--preset", "debug",
            "--chunk-s", str(CHUNK_S), "--num-cpus", "2"]
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(args, cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not list((out / "media").rglob("*.mp4")):
            assert proc.poll() is None, "rushes curate exited before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not list((out / "videos").glob("part-*.parquet")), "the kill should land before the videos row"
    rerun = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert [v["status"] for v in read(out, "videos").to_pylist()] == ["ok"]
    clips = read(out, "clips").to_pylist()
    referenced = {out / c["clip_path"] for c in clips if c["clip_path"]}
    assert set((out / "media").rglob("*.mp4")) == referenced and not list((out / "media").rglob("_tmp-*"))
    one = tmp_path / "one"
    A.process_video(long_video, one, dataclasses.replace(debug(), chunk_s=0.0), RUN)
    assert sorted(c["clip_id"] for c in clips) == sorted(c["clip_id"] for c in read(one, "clips").to_pylist())
