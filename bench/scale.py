"""Footage throughput of one long video on a local 2-node Ray cluster against one node, and per stage.

    python bench/scale.py [--minutes 30] [--chunk-s 180] [--size 640x360] [--fps 25]

Synthesizes one long video with hard cuts (a 2-minute segment of lavfi shots, 4-12 s each, stream-copied
``minutes / 2`` times), starts a head node (``ray start --head --block``, 1 CPU, token authentication, its own
temp folder and ports), and runs ``rushes curate`` on it through ``RAY_ADDRESS`` (default preset: cuts, scores,
720p-capped encodes), each run into a fresh OUT:

1. one node (the head alone, 1 CPU), ``--chunk-s`` (long videos in time chunks);
2. two nodes (a worker node of 1 CPU joined), ``--chunk-s``;
3. two nodes, ``--chunk-s 0`` (one task per video: what rushes did before chunking).

It prints a markdown table of wall time, footage seconds per wall second and the speed-up against the one-node
run, then the per-stage throughput of the two-node chunked run from its ``summary.json`` (footage seconds per
task second; a task has 1 CPU, so that is footage seconds per CPU second), and the peak RSS of one chunk's analysis
and of the reconcile of all chunks (fresh processes). The issue's target: one 30-minute video at least 1.7x faster
on two 1-CPU nodes than on one. The machine's load (``uptime``) is printed before and after: a loaded machine
makes every number slower and the ratios noisier. Only the processes this script started are stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rushes.media.ffmpeg import run_ffmpeg  # noqa: E402
from rushes.testing.ray_nodes import free_ports, node_env  # noqa: E402
from rushes.testing.synth import make_cut_video  # noqa: E402

SEGMENT_SHOTS = [7.0, 4.0, 12.0, 5.5, 9.0, 6.0, 11.0, 4.5, 8.0, 10.0, 6.5, 9.5, 7.0, 5.0, 15.0]  # 120 s


def synth_long(d: Path, minutes: float, size: tuple[int, int], fps: int) -> Path:
    """A ``minutes``-long H.264 MP4: a 2-minute segment of cut shots, stream-copied end to end."""
    seg = make_cut_video(d / "segment.mp4", SEGMENT_SHOTS, fps=fps, size=size).path
    n = max(1, round(minutes / 2))
    listing = d / "list.txt"
    listing.write_text("".join(f"file '{seg}'\n" for _ in range(n)))
    out = d / f"long-{n * 2}min.mp4"
    run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", "-y", str(out)], timeout_s=600,
               whitelist=None)
    return out


class Nodes:
    """Ray nodes started here with ``ray start --block`` (1 CPU each), each in a process group of its own."""

    def __init__(self, temp_dir: Path) -> None:
        self.temp_dir, self.procs = temp_dir, []
        self.port = free_ports(1)[0]
        self.env = node_env(temp_dir, REPO)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, timeout_s: float = 300) -> None:
        """Start one more node (the first is the head) and wait until the cluster counts it."""
        agent, grpc, metrics, runtime_env, dashboard = free_ports(5)
        role = (["--head", "--port", str(self.port), "--include-dashboard=false", "--dashboard-port", str(dashboard)]
                if not self.procs else ["--address", self.address])
        cmd = ["ray", "start", "--block", "--num-cpus", "1", "--num-gpus", "0", "--temp-dir", str(self.temp_dir),
               "--object-store-memory", str(200 << 20), "--disable-usage-stats", "--include-log-monitor=false",
               "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(grpc),
               "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env), *role]
        log = open(self.temp_dir / f"node{len(self.procs)}.log", "w")
        self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))
        probe = ("import ray; ray.init(address=%r, log_to_driver=False, configure_logging=False); "
                 "print(sum(x['Alive'] for x in ray.nodes()))" % self.address)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = subprocess.run([sys.executable, "-c", probe], env=self.env, capture_output=True, text=True)
            if got.returncode == 0 and got.stdout.strip().splitlines()[-1:] == [str(len(self.procs))]:
                return
            time.sleep(2)
        raise SystemExit(f"node {len(self.procs)} did not join within {timeout_s} s; see {self.temp_dir}/node*.log")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def curate(nodes: Nodes, video: Path, out: Path, chunk_s: float) -> dict:
    """Run ``rushes curate`` on the cluster; returns its summary with the measured wall time."""
    cmd = [sys.executable, "-m", "rushes.cli", "curate", str(video), "--out", str(out), "--chunk-s", str(chunk_s)]
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=REPO, env={**nodes.env, "RAY_ADDRESS": nodes.address}, capture_output=True,
                         text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"rushes curate failed: {res.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())["curate"]
    return {**summary, "measured_wall_s": wall}


PEAK_SCRIPT = """
import dataclasses, resource, sys
sys.path.insert(0, {repo!r})
from rushes.curate import adapter as A
from rushes.curate.chunks import plan_chunks, warmup_s
from rushes.curate.config import default
from rushes.curate.job import Source
from rushes.curate.probe import probe_video
path, chunk_s, mode = {path!r}, {chunk_s!r}, {mode!r}
cfg = dataclasses.replace(default(), chunk_s=chunk_s, decode_threads=1)
probe = probe_video(path)
job = A.VideoJob(Source(path, "v", 0, ""), probe, tuple(plan_chunks(probe.duration_s, chunk_s,
                                                                   warmup_s(cfg, A._nominal_fps(probe)))))
run = A.RunInfo("h", "{{}}")
if mode == "chunk":
    A.analyse_chunk_of(job, 1, cfg, run)
else:
    parts = [A.analyse_chunk_of(job, k, cfg, run) for k in range(len(job.spans))]
    assert A.reconcile_video(job, parts, "unused", cfg, run) is not None
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_mb(video: Path, chunk_s: float, mode: str) -> float:
    """Peak RSS (MB) of a fresh process analysing one chunk ("chunk"), or every chunk then reconciling ("all")."""
    script = PEAK_SCRIPT.format(repo=str(REPO), path=str(video), chunk_s=chunk_s, mode=mode)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


def stage_table(summary: dict) -> list[str]:
    footage = summary["footage_s"]
    rows = ["| stage | task s | footage s per CPU s |", "|---|---:|---:|"]
    for stage, sec in summary["throughput"]["stage_s"].items():
        rows.append(f"| {stage} | {sec:.1f} | {footage / sec:.1f} |" if sec else f"| {stage} | 0 | - |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="length of the synthetic video (2-minute steps)")
    ap.add_argument("--chunk-s", type=float, default=180.0, help="rushes curate --chunk-s of the chunked runs")
    ap.add_argument("--size", default="640x360", help="frame size of the synthetic video")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--skip-peak", action="store_true", help="do not measure the peak RSS (two more passes)")
    ap.add_argument("--skip-one-task", action="store_true",
                    help="do not run the 2-node --chunk-s 0 comparison (one more full pass)")
    args = ap.parse_args()
    load0 = os.getloadavg()
    size = tuple(int(x) for x in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="rsc", dir="/tmp"))  # short: Ray socket paths must fit in 107 bytes
    nodes = Nodes(work)
    try:
        video = synth_long(work, args.minutes, size, args.fps)
        nodes.add()
        runs = {"1 node, chunked": curate(nodes, video, work / "one", args.chunk_s)}
        nodes.add()
        runs["2 nodes, chunked"] = curate(nodes, video, work / "two", args.chunk_s)
        if not args.skip_one_task:
            runs["2 nodes, one task per video (--chunk-s 0)"] = curate(nodes, video, work / "two-whole", 0)
    finally:
        nodes.stop()
    report(args, video, runs, load0, None if args.skip_peak else (peak_mb(video, args.chunk_s, "chunk"),
                                                                   peak_mb(video, args.chunk_s, "all")))
    shutil.rmtree(work, ignore_errors=True)


def report(args, video: Path, runs: dict, load0, peaks) -> None:
    base = runs["1 node, chunked"]["measured_wall_s"]
    footage = runs["1 node, chunked"]["footage_s"]
    print(f"\n`python bench/scale.py --minutes {args.minutes:g} --chunk-s {args.chunk_s:g} --size {args.size} "
          f"--fps {args.fps}`: one {footage / 60:.1f}-minute video ({args.size}, {args.fps} fps, "
          f"{len(SEGMENT_SHOTS) * round(args.minutes / 2)} shots), default preset; load average before "
          f"{load0[0]:.1f}, after {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| run | nodes used | wall s | footage s per wall s | speed-up vs 1 node |\n|---|---:|---:|---:|---:|")
    for name, s in runs.items():
        wall = s["measured_wall_s"]
        print(f"| {name} | {s['videos']['nodes_used']} | {wall:.1f} | {footage / wall:.2f} | {base / wall:.2f}x |")
    print("\nPer stage, 2 nodes chunked (task seconds summed over tasks):\n")
    print("\n".join(stage_table(runs["2 nodes, chunked"])))
    if peaks:
        print(f"\nPeak RSS: one chunk's analysis {peaks[0]:.0f} MB; all chunks analysed in one process then "
              f"reconciled {peaks[1]:.0f} MB (what grows with length: the joined per-frame scalars)")


if __name__ == "__main__":
    main()
