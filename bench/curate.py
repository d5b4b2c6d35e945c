"""Benchmark ``rushes curate`` against ffmpeg decode-only and the PySceneDetect CLI, in one run.

    python bench/curate.py [--footage ../shared/footage] [--skip-scores-run]

Every command runs on the same files (all videos of the footage folder), one after the other, on this
machine; the table reports wall-time RATIOS measured in this run, so machine speed cancels out:

- ffmpeg decode-only: ``ffmpeg -threads 1 -i F -f null -`` per file (sum over files);
- PySceneDetect cuts: ``scenedetect -i F detect-adaptive`` per file;
- PySceneDetect split: ``scenedetect -i F detect-adaptive split-video`` per file, with libx264
  ``-preset veryfast -crf 22`` (its defaults) and no audio, the same codec, preset, CRF as rushes;
- ``rushes curate FILES --no-encode --no-scores`` (cuts only), and ``--max-short-side 0 --no-scores``
  (cuts + encoding at the source size, the same output size as PySceneDetect), each a fresh process
  including Python and Ray start-up; and the full default run (cuts + scores + encode at 720p) for scale;
- the two rushes runs again in this process with Ray already started and its workers warm ("warm Ray"),
  which is what a run on a standing cluster sees;
- the fixed cost of a fresh ``rushes curate`` process (Python imports, starting and stopping a local
  Ray, the first task's imports, summary): the same cuts-only command on one 1 s synthetic video.

Peak memory per worker: the analysis pass (decode + cuts + scores) of the longest footage file in a
fresh process (peak RSS), and of a 10 s vs 120 s synthetic video to show it does not grow with length.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a source checkout: its rushes (one namespace: no bench file can hide it)

from rushes.curate.inputs import expand_inputs  # noqa: E402
from rushes.curate.probe import probe_video  # noqa: E402

PSD_ARGS = "-map 0:v:0 -c:v libx264 -preset veryfast -crf 22 -an"


def timed(cmds: list[list[str]], cwd: str | None = None) -> float:
    """Wall seconds to run ``cmds`` one after the other (each must succeed)."""
    t = time.perf_counter()
    for cmd in cmds:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t


def rushes(files: list[str], out: str, *flags: str) -> list[list[str]]:
    return [[sys.executable, "-m", "rushes.cli", "curate", *files, "--out", out, *flags]]


MEMORY_SCRIPT = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from rushes.curate.config import default
from rushes.curate.decode import analyse_video
from rushes.curate.scores import FrameSignals
from rushes.curate.split import SceneSplitter
from rushes.curate.probe import probe_video
cfg = default()
probe = probe_video(sys.argv[2])
splitter, signals = SceneSplitter(cfg.detector, probe.fps), FrameSignals(cfg.score_config())
result = analyse_video(sys.argv[2], [splitter, signals], cfg.analysis_long_side_px, threads=1)
# VmHWM, not ru_maxrss: the latter is inherited from the parent across fork/exec.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"frames": result.num_frames, "peak_rss_mb": int(hwm) / 1024}))
"""


def peak_memory(path: str) -> dict:
    res = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(REPO), path], capture_output=True, text=True,
                         check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def warm_runs(files: list[str], tmp: str) -> tuple[float, float]:
    """The same two runs with Ray already up and its workers warm (a cluster's steady state): measures
    throughput without the fixed Python + Ray start-up of a fresh process."""
    import dataclasses

    import ray

    from rushes.curate.config import EncodeConfig, RayConfig, default
    from rushes.curate.pipeline import run_curate
    from rushes.testing.synth import make_cut_video

    ray.init(address="local", num_cpus=None, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        cuts = dataclasses.replace(default(), scores_preset=None, encode=EncodeConfig(enabled=False))
        enc = dataclasses.replace(default(), scores_preset=None, encode=EncodeConfig(max_short_side_px=0))
        warm = make_cut_video(f"{tmp}/warm.mp4", [1.0, 1.0], fps=25, size=(320, 240))
        for i in range(2):  # start and import both workers
            run_curate([warm.path], f"{tmp}/warmup{i}", enc, RayConfig())
        t0 = time.perf_counter()
        run_curate(files, f"{tmp}/warm_cuts", cuts, RayConfig())
        t1 = time.perf_counter()
        run_curate(files, f"{tmp}/warm_enc", enc, RayConfig())
        return t1 - t0, time.perf_counter() - t1
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--footage", default=str(REPO.parent / "shared" / "footage"))
    ap.add_argument("--skip-scores-run", action="store_true", help="skip the full default run (cuts+scores+encode)")
    args = ap.parse_args()
    files = expand_inputs([args.footage])
    durations = {f: probe_video(f).duration_s or 0.0 for f in files}
    longest = max(files, key=durations.get)
    tmp = tempfile.mkdtemp(prefix="bench-curate-")
    t = {}
    t["ffmpeg"] = timed([["ffmpeg", "-v", "error", "-threads", "1", "-i", f, "-f", "null", "-"] for f in files])
    t["psd_cuts"] = timed([["scenedetect", "-q", "-i", f, "detect-adaptive"] for f in files], cwd=tmp)
    t["rushes_cuts"] = timed(rushes(files, f"{tmp}/cuts", "--no-encode", "--no-scores"))
    t["psd_split"] = timed([["scenedetect", "-q", "-i", f, "-o", f"{tmp}/psd", "detect-adaptive", "split-video",
                             "-a", PSD_ARGS] for f in files], cwd=tmp)
    t["rushes_encode"] = timed(rushes(files, f"{tmp}/enc", "--no-scores", "--max-short-side", "0"))
    if not args.skip_scores_run:
        t["rushes_full"] = timed(rushes(files, f"{tmp}/full"))
    t["warm_cuts"], t["warm_encode"] = warm_runs(files, tmp)
    from rushes.testing.synth import make_cut_video

    tiny = make_cut_video(f"{tmp}/tiny.mp4", [0.5, 0.5], fps=25, size=(320, 240))
    t["startup"] = timed(rushes([tiny.path], f"{tmp}/startup", "--no-encode", "--no-scores"))
    mem_long = peak_memory(longest)
    short = make_cut_video(f"{tmp}/short.mp4", [5.0, 5.0], fps=25, size=(640, 360))
    long = make_cut_video(f"{tmp}/long.mp4", [40.0, 40.0, 40.0], fps=25, size=(640, 360))
    mem_short, mem_120 = peak_memory(short.path), peak_memory(long.path)
    footage_s = sum(durations.values())
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{len(files)} files, {footage_s:.1f} s of footage; {os.cpu_count()} CPUs, load average {load} at the "
          f"end; one run\n")
    print("| comparison | rushes wall s | baseline wall s | ratio | target |")
    print("|---|---:|---:|---:|---|")
    rows = [
        ("cuts only vs `scenedetect detect-adaptive`", t["rushes_cuts"], t["psd_cuts"], "rushes/PSD <= 1.0"),
        ("cuts only vs `ffmpeg -threads 1 -f null` decode", t["rushes_cuts"], t["ffmpeg"], "rushes/ffmpeg <= 1.5"),
        ("cuts + encode vs `detect-adaptive split-video`", t["rushes_encode"], t["psd_split"], "rushes/PSD <= 0.67"),
        ("warm Ray: cuts only vs `scenedetect detect-adaptive`", t["warm_cuts"], t["psd_cuts"], "rushes/PSD <= 1.0"),
        ("warm Ray: cuts only vs ffmpeg decode", t["warm_cuts"], t["ffmpeg"], "rushes/ffmpeg <= 1.5"),
        ("warm Ray: cuts + encode vs split-video", t["warm_encode"], t["psd_split"], "rushes/PSD <= 0.67"),
    ]
    if "rushes_full" in t:
        rows.append(("default run (cuts + scores + 720p encode) vs split-video", t["rushes_full"], t["psd_split"],
                     "(for scale)"))
    for name, ours, base, target in rows:
        print(f"| {name} | {ours:.1f} | {base:.1f} | {ours / base:.2f} | {target} |")
    print(f"| speed-up of encoding run over split-video | | | {t['psd_split'] / t['rushes_encode']:.2f}x | >= 1.5x |")
    print(f"| fixed start-up of a fresh `rushes curate` (one 1 s video) vs ffmpeg decode of all files | "
          f"{t['startup']:.1f} | {t['ffmpeg']:.1f} | {t['startup'] / t['ffmpeg']:.2f} | (context) |")
    print("\n| peak memory of one worker's analysis pass | frames | peak RSS MiB |")
    print("|---|---:|---:|")
    print(f"| longest file ({Path(longest).name}, {durations[longest]:.0f} s) | {mem_long['frames']} | "
          f"{mem_long['peak_rss_mb']:.0f} |")
    print(f"| synthetic 640x360, 10 s | {mem_short['frames']} | {mem_short['peak_rss_mb']:.0f} |")
    print(f"| synthetic 640x360, 120 s | {mem_120['frames']} | {mem_120['peak_rss_mb']:.0f} |")
    print(f"| ratio 120 s / 10 s | | {mem_120['peak_rss_mb'] / mem_short['peak_rss_mb']:.2f} |")
    print(f"\n(bench driver peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
          f"outputs in {tmp})")


if __name__ == "__main__":
    main()
