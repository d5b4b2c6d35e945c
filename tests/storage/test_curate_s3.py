"""curate s3 -> s3 on a real S3 server equals a local run of the same footage; filter and inspect on it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.compute as pc
import pytest
from s3_server import SECRETS, all_objects, make_bucket

from rushes import manifests
from rushes import storage

REPO = Path(__file__).resolve().parents[2]
# Footage file -> key in the bucket (spaces on purpose).
FILES = {"psd_counter.mp4": "raw/day one/counter clip.mp4", "iio_realshort.mp4": "raw/day one/real short.mp4",
         "psd_fades.mp4": "raw/day two/fades.mp4"}
pytestmark = pytest.mark.slow  # curate runs with Ray, from and to a bucket: about 3 minutes on 2 cores
# Ray waits a hard-coded 30 s for its raylet; on an overloaded machine a fresh instance can miss that.
RAY_START_TIMEOUT = "The current node timed out during startup"


def rushes(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the ``rushes`` command (a fresh process: its Ray workers inherit the AWS settings of this session)."""
    for _attempt in range(3):
        res = subprocess.run([sys.executable, "-m", "rushes.cli", *args], cwd=REPO, capture_output=True, text=True,
                             timeout=900, env={**os.environ, **(env or {})}, check=False)
        if RAY_START_TIMEOUT not in res.stderr:
            break
        time.sleep(20)  # let the load that delayed Ray pass
    assert res.returncode == 0, f"rushes {' '.join(args)} failed:\n{res.stdout}\n{res.stderr[-4000:]}"
    return res


@pytest.fixture(scope="module")
def runs(s3_server, footage_dir, tmp_path_factory):
    """The same three videos curated from a bucket into a bucket and from a folder into a folder."""
    tmp = tmp_path_factory.mktemp("curate-s3")
    bucket = make_bucket(s3_server, f"rushes-{uuid.uuid4().hex[:10]}")
    local_in = tmp / "footage"
    local_in.mkdir()
    for src, key in FILES.items():
        storage.copy_file(footage_dir / src, f"{bucket}/{key}")
        shutil.copy(footage_dir / src, local_in / src)
    # A list in the bucket: relative lines resolve against its own prefix; a glob; a key that does not exist.
    storage.write_bytes_atomic(f"{bucket}/raw/list.txt", "\n".join([
        "# day one", "day one/counter clip.mp4", f"{bucket}/raw/day one/real short.mp4", "day two/*.mp4",
        "missing take.mp4"]).encode())
    remote_run, local_run, scratch = f"{bucket}/runs/first run", tmp / "run", tmp / "scratch"
    rushes("curate", f"{bucket}/raw/list.txt", "--out", remote_run, "--scratch", str(scratch),
           "--scratch-max-gb", "0.5", "--preset", "debug", "--num-cpus", "2")
    rushes("curate", str(local_in), "--out", str(local_run), "--preset", "debug", "--num-cpus", "2")
    return {"bucket": bucket, "remote": remote_run, "local": local_run, "scratch": scratch, "tmp": tmp}


def _rows(table, drop=("created_at", "process_s", "path")) -> list[dict]:
    rows = [{k: v for k, v in r.items() if k not in drop} for r in table.to_pylist()]
    return sorted(rows, key=lambda r: r.get("clip_id") or r["video_id"])


def test_a_bucket_run_equals_a_local_run(runs):
    remote_videos = manifests.read(runs["remote"], "videos")
    ok = remote_videos.filter(pc.field("status") == "ok")
    assert sorted(ok["path"].to_pylist()) == sorted(f"{runs['bucket']}/{k}" for k in FILES.values())
    assert _rows(ok) == _rows(manifests.read(runs["local"], "videos"))  # ids, hashes, probe facts, clip counts
    remote_clips, local_clips = manifests.read(runs["remote"], "clips"), manifests.read(runs["local"], "clips")
    assert remote_clips.num_rows >= 3
    assert _rows(remote_clips) == _rows(local_clips)  # same ids, spans, scores, keep and reject_reason
    # Every encoded clip was uploaded beside the manifests, under the same relative path.
    for rel in filter(None, remote_clips["clip_path"].to_pylist()):
        assert storage.size(f"{runs['remote']}/{rel}") > 1000
    failed = remote_videos.filter(pc.field("status") == "error").to_pylist()
    assert [(v["error_stage"], v["path"]) for v in failed] == [("input", f"{runs['bucket']}/raw/missing take.mp4")]
    assert "no such object" in failed[0]["error_message"]
    # Scratch copies are gone; nothing unpublished is left in the bucket; no credential was written anywhere.
    assert not [p for p in runs["scratch"].iterdir() if p.name.startswith(("rushes-", ".rushes-"))]
    objects = all_objects(runs["bucket"])
    assert not [k for k in objects if storage.TEMP_PREFIX in k]
    for key, data in objects.items():
        assert not any(s.encode() in data for s in SECRETS), f"{key} holds a credential"


def test_caption_and_train_decode_clips_straight_from_the_bucket_run(runs):
    from rushes.caption.adapter import decode_batch, plan_run
    from rushes.caption.frames import FrameSpec

    frames = {}
    for run in (runs["remote"], str(runs["local"])):
        plan = plan_run(run, "tiny-vlm", "v1")
        assert plan.tasks.num_rows >= 1
        frames[run] = decode_batch(plan.tasks, FrameSpec(max_side=64), 4, None).to_pylist()
    assert all(p.startswith(runs["remote"]) for p in plan_run(runs["remote"], "tiny-vlm", "v1").tasks["path"].to_pylist())
    assert [f["error_message"] for f in frames[runs["remote"]]] == [None] * len(frames[runs["remote"]])
    shapes = {run: sorted((f["clip_id"], tuple(f["frames_shape"])) for f in fs) for run, fs in frames.items()}
    assert shapes[runs["remote"]] == shapes[str(runs["local"])]
    pytest.importorskip("torch")
    from rushes.manifests.clips import KeptClip
    from rushes.train.data import ClipPlan, decode_clip

    clip = manifests.read(runs["remote"], "clips").filter(pc.field("keep")).to_pylist()[0]
    src = KeptClip(clip["clip_id"], clip["video_id"], f"{runs['remote']}/{clip['clip_path']}", 0.0,
                   clip["duration_s"], clip["start_s"], clip["width_px"], clip["height_px"], True, "a caption")
    video = decode_clip(src, ClipPlan(4, 32, 32, (4, 2, 2)), fps=8.0)
    assert tuple(video.shape) == (3, 4, 32, 32) and float(video.abs().max()) <= 1.0


def test_kill_9_mid_run_then_rerun_on_the_bucket_equals_the_local_run(runs):
    run = f"{runs['bucket']}/runs/killed run"
    args = [sys.executable, "-m", "rushes.cli", "curate", f"{runs['bucket']}/raw/list.txt", "--out", run,
            "--scratch", str(runs["scratch"]), "--preset", "debug", "--num-cpus", "2"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group: Ray's processes die with it
    try:
        deadline = time.monotonic() + 600
        while not manifests.part_paths(run, "videos") and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):  # already gone when the run finished first
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # What a killed writer can leave: an unpublished part. Readers ignore it; the rerun deletes it.
    storage.write_bytes_atomic(f"{run}/clips/_tmp-part-x.parquet-0badf00d", b"PAR1 half")
    rushes(*args[3:])
    videos = manifests.read(run, "videos")
    ok = videos.filter(pc.field("status") == "ok")
    assert _rows(ok) == _rows(manifests.read(runs["local"], "videos"))
    assert _rows(manifests.read(run, "clips")) == _rows(manifests.read(runs["local"], "clips"))
    assert not [u for u in storage.list_files(run) if storage.TEMP_PREFIX in u]


def test_filter_and_inspect_work_on_the_bucket_run_without_duckdb_extensions(runs):
    for run in (runs["remote"], str(runs["local"])):
        rushes("filter", run, "--preset", "strict")
    remote, local = manifests.read(runs["remote"], "clips"), manifests.read(runs["local"], "clips")
    assert _rows(remote) == _rows(local)
    assert manifests.read_summary(runs["remote"])["filter"]["preset"] == "strict"
    # A fresh HOME: no DuckDB extension cached, and no network to fetch one (the server is on loopback).
    home = runs["tmp"] / "home"
    home.mkdir(exist_ok=True)
    sql = "SELECT count(*) AS n, count(*) FILTER (WHERE keep) AS kept, count(DISTINCT video_id) AS v FROM clips"
    out = {run: rushes("inspect", run, "--sql", sql, "--format", "csv", env={"HOME": str(home)}).stdout
           for run in (runs["remote"], str(runs["local"]))}
    assert out[runs["remote"]] == out[str(runs["local"])] == f"n,kept,v\n{remote.num_rows},{sum(remote['keep'].to_pylist())},3\n"
    summary = rushes("inspect", runs["remote"], env={"HOME": str(home)}).stdout
    assert "Videos" in summary and "Clips" in summary
    html = runs["tmp"] / "report" / "report.html"
    rushes("inspect", runs["remote"], "--html", str(html), "--workers", "1", env={"HOME": str(home)})
    assert html.is_file() and list((runs["tmp"] / "report" / "report_files" / "thumbs").glob("*.jpg"))


def test_rerun_on_the_bucket_skips_completed_videos(runs):
    res = rushes("curate", f"{runs['bucket']}/raw/list.txt", "--out", runs["remote"], "--scratch",
                 str(runs["scratch"]), "--preset", "debug", "--num-cpus", "2")
    summary = manifests.read_summary(runs["remote"])["curate"]
    assert summary["videos"]["processed_this_run"] == 1, res.stderr[-2000:]  # only the missing key is retried
    assert summary["videos"]["ok"] == 3
