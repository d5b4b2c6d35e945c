"""Resume after ``kill -9`` of a running ``rushes curate``, and a 2-node local Ray cluster.

Both start their own Ray (in a subprocess), so they do not disturb the session's shared instance.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from rushes.manifests import read
from rushes.media.ffmpeg import run_ffprobe_json
from rushes.testing.synth import make_cut_video

REPO = Path(__file__).resolve().parents[2]
SHOTS = [(2.0, 1.5, 2.0), (1.5, 2.5), (2.0, 2.0, 1.0), (3.0,), (1.2, 1.2, 1.2)]


def _videos(d: Path):
    return [make_cut_video(d / f"v{i}.mp4", shots, fps=25, size=(320, 240)) for i, shots in enumerate(SHOTS)]


def _rushes(*args: str) -> list[str]:
    return [sys.executable, "-m", "rushes.cli", "curate", *args]


def _assert_complete(out: Path, vids) -> None:
    videos = read(out, "videos").to_pylist()  # validates: no duplicate ids
    assert sorted(Path(v["path"]).name for v in videos) == sorted(Path(v.path).name for v in vids)
    assert all(v["status"] == "ok" for v in videos)
    clips = read(out, "clips").to_pylist()
    by_video = {v["video_id"]: v for v in videos}
    expected = {Path(v.path).name: len(v.cut_frames) + 1 for v in vids}
    for vid, row in by_video.items():
        mine = [c for c in clips if c["video_id"] == vid]
        assert len(mine) == expected[Path(row["path"]).name] == row["num_clips"]
    referenced = set()
    for clip in clips:
        if clip["clip_path"]:
            path = out / clip["clip_path"]
            referenced.add(path)
            assert int(run_ffprobe_json(str(path), timeout_s=30)["streams"][0]["nb_frames"]) == clip["num_frames"]
    on_disk = set((out / "media").rglob("*.mp4"))
    assert on_disk == referenced  # no orphan or temporary clip files left behind
    assert not list((out / "media").rglob("_tmp-*"))
    for kind in ("videos", "clips"):  # temporary manifest parts of a killed run are cleaned on the rerun
        assert not list((out / kind).glob("_tmp-*"))


def test_kill_9_then_rerun_completes_without_lost_or_duplicated_clips(tmp_path):
    vids = _videos(tmp_path)
    out = tmp_path / "run"
    args = _rushes(str(tmp_path / "v*.mp4"), "--out", str(out), "--preset", "debug", "--no-scores",
                   "--num-cpus", "2", "--num-cpus-per-task", "1")
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list((out / "videos").glob("part-*.parquet")):
            assert proc.poll() is None, "rushes curate exited before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.wait(timeout=30)
    done_before = len(list((out / "videos").glob("part-*.parquet")))
    assert 1 <= done_before < len(vids), "the kill should land mid-run"
    rerun = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    _assert_complete(out, vids)


CLUSTER_SCRIPT = """
import sys
from ray.cluster_utils import Cluster
import ray
from rushes.curate.config import RayConfig, debug
from rushes.curate.pipeline import run_curate
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
assert len({n["NodeID"] for n in ray.nodes() if n["Alive"]}) == 2
summary = run_curate(sys.argv[1:-1], sys.argv[-1], debug(), RayConfig(address=cluster.address))
print("OK", summary["videos"]["ok"], "NODES", summary["videos"]["nodes_used"])
ray.shutdown()
cluster.shutdown()
"""


def test_two_node_local_cluster(tmp_path):
    vids = _videos(tmp_path)[:3]
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", CLUSTER_SCRIPT, *[v.path for v in vids], str(out)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "OK 3 NODES 2" in res.stdout, res.stdout + res.stderr[-3000:]
    _assert_complete(out, vids)
