"""Training at scale: memory of streamed encodings, encoded against on-the-fly data, Ray Train workers.

    python bench/stream.py [--only rss,encoded,workers,bucket] [--steps 40] [--workers-steps 400] [--workers-rounds 3]

1. Memory (``rss``): peak RSS (VmHWM) of ``rushes train`` (``rushes.train.loop.train``, tiny preset, one torch
   thread) streaming encodings of 200 and of 2,000 tiny random clips for the same number of steps (one epoch of
   the larger set), each in a fresh process; against the same clips held in memory as the on-the-fly path
   holds its prepared set (every clip's tensors resident, PackLoader).
2. Encoded against on-the-fly (``encoded``): a fresh training run of ``--steps`` steps on the same synthetic
   video clips, from encodings written by ``rushes encode`` earlier against decoding and encoding every clip
   first (today's path without encodings); samples/s over the whole run, and over the training steps alone.
3. Workers (``workers``): ``rushes train --workers 2`` (DDP and FSDP) against ``--workers 1`` on Ray Train,
   and the same loop without Ray as the reference: one process, and two processes joined by torch.distributed
   (gloo) directly (tiny preset, one torch thread per worker, the same global batch of 2 and of 4 packs per
   step, ``--workers-packs``; the trainer's default stream window), samples/s over the logged steps after the
   first ``--workers-skip-s`` seconds of training (Ray Train starts its helper actors beside the first steps),
   with worker 0's step split into data wait, forward, backward (the gradient all-reduce and any wait for the
   other worker included) and optimizer (the wait for the step's summed loss and counts included), its CPU
   share of the step (below 1: it waited for a core or for the other worker; above 1: its data thread ran on
   another core) and the hypervisor's steal share of the machine's time during the row. The runs alternate on
   one Ray instance, with the data thread off (one thread per worker) and auto (the default: on only where a
   core is free for it; or on), until each mode has ``--workers-rounds`` rounds in which no row had more than
   ``--max-steal`` steal; each ratio (two processes against one of the same kind) is the median over those
   rounds.
4. A run directory in a bucket (``bucket``, not in the default ``--only``): samples/s of a training run whose
   RUN is a bucket prefix on moto's S3 server (on loopback, sharing the 2 cores) against a folder RUN, with
   ~100 MB checkpoints every ``--bucket-every`` steps, uploaded beside the training (the default) and, for
   comparison, each upload waited for before the next step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rushes.testing.synth import make_cut_video  # noqa: E402
from rushes.testing.train_manifests import Clip, write_manifest  # noqa: E402
from rushes.testing.train_shards import write_random_run  # noqa: E402

from rushes.testing.tiny import save_tiny_text_encoder  # noqa: E402
from rushes import storage  # noqa: E402
from rushes.train import shards  # noqa: E402
from rushes.train.config import DataConfig, EncodeConfig, preset  # noqa: E402


def _cfg(t5: str, **data):
    return preset("tiny").with_overrides(
        data={"text_encoder": t5, "max_frames": 4, "clip_tokens": 96, "batch_tokens": 1024, "val_clips": 0,
              "stream_window": 64, **data},
        train={"log_every": 1, "val_every": 10 ** 6, "checkpoint_every": 10 ** 6})


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def random_set(root: Path, clips: int, t5: str) -> Path:
    """OUT with ``clips`` tiny clips in its manifests and encodings of them (random content) under the key."""
    return write_random_run(root / f"out-{clips}", _cfg(t5), clips, shard_rows=64)


def rss_child(out: str, t5: str, steps: int, mode: str) -> None:
    """One measurement in this (fresh) process; prints JSON."""
    import torch

    torch.set_num_threads(1)
    from rushes.train.loop import train

    cfg = _cfg(t5).with_overrides(train={"steps": steps})
    if mode == "resident":  # the on-the-fly path's shape: every clip's tensors in memory, PackLoader over them
        from rushes.train import loop
        from rushes.train.packing import PackLoader
        from rushes.train.stream import open_encodings, row_example, select_rows
        from rushes.manifests.clips import captioned_clips

        folder = shards.find_encodings(out, shards.key_inputs(cfg.data, cfg.model.patch_size))
        enc = open_encodings(folder, captioned_clips(out), cfg.model.patch_size, 0)
        examples = [row_example(r, cfg.model.patch_size) for r in select_rows(folder, enc.train_ids)]
        real = loop.load_train_data

        def resident(*args, **kwargs):
            data = real(*args, **kwargs)
            data.source = PackLoader(examples, cfg.data.batch_tokens, seed=0)
            return data
        loop.load_train_data = resident
    t0 = time.perf_counter()
    result = train(out, Path(out) / f"run-{mode}", cfg, echo=lambda s: None)
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "steps": result.step, "clips": result.num_clips,
                      "s": time.perf_counter() - t0}))


def _child(out: Path, t5: str, steps: int, mode: str) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", str(out), t5, str(steps), mode], capture_output=True,
                         text=True, check=True, cwd=REPO)
    return json.loads(res.stdout.strip().splitlines()[-1])


def rss_rows(root: Path, t5: str) -> None:
    small, large = random_set(root, 200, t5), random_set(root, 2000, t5)
    tokens = sum(row["num_tokens"] for p in shards.shard_paths(next((large / "encodings").iterdir()))
                 for row in shards.iter_rows(p, ["num_tokens"]))
    steps = tokens // 1024 + 1  # one epoch of the 2,000 clips
    print(f"\n{steps} steps of 1024 tokens (one epoch of 2,000 clips), tiny preset, 1 torch thread, "
          f"stream window 64 clips\n")
    print("| data | 200 clips peak RSS MiB | 2,000 clips peak RSS MiB | 2,000 / 200 |")
    print("|---|---|---|---|")
    for mode, label in (("stream", "streamed from encodings (rushes train)"),
                        ("resident", "every clip resident (the on-the-fly path's in-memory set)")):
        a, b = _child(small, t5, steps, mode), _child(large, t5, steps, mode)
        print(f"| {label} | {a['peak_rss_mib']:.0f} | {b['peak_rss_mib']:.0f} | "
              f"{b['peak_rss_mib'] / a['peak_rss_mib']:.2f}x |", flush=True)


def video_set(root: Path) -> Path:
    """A manifest of 24 synthetic video clips of three aspect ratios."""
    clips = []
    for i, (w, h) in enumerate([(128, 72), (72, 128), (96, 96)]):
        v = make_cut_video(root / f"v{i}.mp4", [2.0, 2.0], fps=16, size=(w, h))
        for j in range(8):
            clips.append(Clip(v.path, j * 0.5, j * 0.5 + 0.5, w, h, f"synthetic pattern {i} part {j}"))
    return write_manifest(root / "videos-out", clips)


def _logged(run: Path, skip: int = 2, skip_s: float = 0.0) -> list[dict]:
    """The step lines of ``run``'s log after the first ``skip`` steps and the first ``skip_s`` seconds of steps."""
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    kept, elapsed = [], 0.0
    for r in (r for r in lines if "loss" in r):
        elapsed += r["step_s"]
        if r["step"] > skip and elapsed > skip_s:
            kept.append(r)
    if not kept:
        raise ValueError(f"{run}: no step after {skip} steps and {skip_s} s; raise --workers-steps")
    return kept


def _steady(run: Path, skip: int = 2, skip_s: float = 0.0) -> float:
    """Samples/s over the logged steps after the first ``skip`` (and the first ``skip_s`` seconds)."""
    lines = _logged(run, skip, skip_s)
    return sum(r["clips"] for r in lines) / sum(r["step_s"] for r in lines)


def encoded_rows(root: Path, t5: str, steps: int) -> None:
    import torch

    from rushes.train.loop import train
    from rushes.train.pipeline import run_encode

    torch.set_num_threads(1)
    out = video_set(root)
    cfg = _cfg(t5, clip_tokens=192, batch_tokens=512, stream_window=256).with_overrides(train={"steps": steps})
    t0 = time.perf_counter()
    fly = train(out, root / "fly", cfg, echo=lambda s: None, use_encodings=False)
    fly_s = time.perf_counter() - t0
    enc = run_encode(out, cfg, EncodeConfig(batch_size=4))
    t0 = time.perf_counter()
    streamed = train(out, root / "enc", cfg, echo=lambda s: None)
    enc_s = time.perf_counter() - t0
    clips = sum(json.loads(line).get("clips", 0) for line in (root / "enc" / "log.jsonl").read_text().splitlines())
    print(f"\n{steps} steps, {fly.num_clips} clips, tiny preset, 1 torch thread; `rushes encode` took "
          f"{enc['elapsed_s']:.1f} s (Ray start included), once\n")
    print("| data | run wall s | samples/s over the run | samples/s over steps 3.. |")
    print("|---|---|---|---|")
    print(f"| decoded + encoded on the fly (no encodings) | {fly_s:.1f} | {clips / fly_s:.2f} | "
          f"{_steady(root / 'fly'):.2f} |")
    print(f"| streamed from encodings | {enc_s:.1f} | {clips / enc_s:.2f} | {_steady(root / 'enc'):.2f} |")
    print(f"| encodings / on the fly | | {fly_s / enc_s:.2f}x | "
          f"{_steady(root / 'enc') / _steady(root / 'fly'):.2f}x |", flush=True)
    assert streamed.step == fly.step


def _phases(run: Path, skip: int = 2, skip_s: float = 0.0) -> dict:
    """Worker 0's mean milliseconds per step of each phase over the logged steps after the first ``skip``, its
    CPU share (cpu_s / step_s: below 1 it waited for a core or for the other worker), and the CPU milliseconds
    all workers spend per sample (worker 0's times the workers): the cost of a sample whatever the load."""
    lines = _logged(run, skip, skip_s)
    mean = {k: 1000 * sum(r[k] for r in lines) / len(lines)
            for k in ("data_s", "forward_s", "backward_s", "optimizer_s", "step_s")}
    cpu = sum(r["cpu_s"] for r in lines)  # worker 0's; each worker trains 1/workers of the clips
    return {**mean, "busy": cpu / sum(r["step_s"] for r in lines),
            "cpu_ms_per_sample": 1000 * cpu * lines[0]["workers"] / sum(r["clips"] for r in lines)}


def _load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def _cpu_ticks() -> list[int]:
    """The machine's CPU time counters (user ... steal) from /proc/stat, in clock ticks."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def _steal_share(before: list[int], after: list[int]) -> float:
    """Share of the cores' time the hypervisor gave to other machines between two :func:`_cpu_ticks`."""
    delta = [b - a for a, b in zip(before, after)]
    return delta[7] / max(sum(delta), 1)


# key (--workers-runs), label, processes, parallel, on Ray Train
WORKER_RUNS = (("1ddp", "Ray Train, 1 worker", 1, "ddp", True), ("0ddp", "one process, no Ray", 1, "ddp", False),
               ("2ddp", "Ray Train, 2 workers, DDP", 2, "ddp", True),
               ("2noray", "2 processes, gloo DDP, no Ray", 2, "ddp", False),
               ("2fsdp", "Ray Train, 2 workers, FSDP", 2, "fsdp", True))


def _workers_cfg(t5: str, budget: int, steps: int, packs: int = 2):
    """The workers rows' config: ``packs`` packs of ``budget`` tokens per step (the global batch), the trainer's
    default stream window."""
    return _cfg(t5, packs_per_step=packs, batch_tokens=budget,
                stream_window=DataConfig().stream_window).with_overrides(
        train={"steps": steps})


def ddp_child(out: str, t5: str, run: str, steps: int, budget: int, packs: int, rank: int, world: int, port: int,
              prefetch: bool | None) -> None:
    """One process of a no-Ray reference row: with ``world`` > 1 torch.distributed (gloo) set up by hand, then the
    same loop (``prefetch`` None: the data thread where the node has a core for it, as `rushes train` decides)."""
    import torch
    import torch.distributed as dist

    from rushes.train.loop import auto_prefetch, train

    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        train(Path(out), Path(run), _workers_cfg(t5, budget, steps, packs), echo=lambda s: None, rank=rank, world=world,
              prefetch=auto_prefetch(torch.device("cpu"), world) if prefetch is None else prefetch)
    finally:
        if world > 1:
            dist.destroy_process_group()


PREFETCH_ARG = {False: "off", True: "on", None: "auto"}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker_run(out: Path, run: Path, cfg, n: int, parallel: str, on_ray: bool, prefetch: bool | None) -> None:
    """One row's training run, as `rushes train --workers` does it (the driver shows worker 0's log; nothing
    printed), or without Ray in fresh processes: one, or ``n`` joined by torch.distributed directly."""
    from rushes.train.pipeline import run_train_workers
    from rushes.progress import StepProgress

    if not on_ray:
        port, t5 = _free_port(), cfg.data.text_encoder
        procs = [subprocess.Popen([sys.executable, __file__, "--ddp-child", str(out), t5, str(run), str(cfg.train.steps),
                                   str(cfg.data.batch_tokens), str(cfg.data.packs_per_step), str(rank), str(n), str(port), PREFETCH_ARG[prefetch]],
                                  cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for rank in range(n)]
        errors = [p.communicate()[1] for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError(f"a no-Ray DDP process failed: {next(e for e in errors if e)[-2000:]}")
        return
    with open(os.devnull, "w") as quiet, StepProgress(cfg.train.steps, stream=quiet) as progress:
        run_train_workers(out, run, cfg, workers=n, torch_threads=1, parallel=parallel, progress=progress,
                          prefetch=prefetch)


def _worker_row(out: Path, run: Path, cfg, spec: tuple, prefetch: bool | None, head: str, base: float | None,
                skip_s: float) -> tuple[float, float]:
    """Run one row, print it (``head``: its first cells; ``base``: the rate it is compared with); its samples/s
    and the steal share during it."""
    _, _, n, parallel, on_ray = spec
    load, ticks = _load(), _cpu_ticks()
    _worker_run(out, run, cfg, n, parallel, on_ray, prefetch)
    steal = _steal_share(ticks, _cpu_ticks())
    rate, ph = _steady(run, 5, skip_s), _phases(run, 5, skip_s)
    ratio = f"{rate / base:.2f}x" if base else "1.00x"
    print(f"| {head} | {rate:.1f} | {ratio} | {ph['data_s']:.1f} | {ph['forward_s']:.1f} | {ph['backward_s']:.1f} | "
          f"{ph['optimizer_s']:.1f} | {ph['step_s']:.1f} | {ph['busy']:.2f} | {ph['cpu_ms_per_sample']:.2f} | "
          f"{steal:.1%} | {load} |", flush=True)
    return rate, steal


def _round(out: Path, root: Path, cfg, runs: set[str], prefetch: bool | None, tag: int, max_steal: float,
           skip_s: float) -> dict[str, float] | None:
    """One round of one prefetch mode, rows in WORKER_RUNS order: each 2-process run's ratio to the one-process
    row of its kind (Ray Train's 1 worker, or one process without Ray), or None when the hypervisor stole more
    than ``max_steal`` of the machine during one of its rows (printed all the same)."""
    bases, ratios, worst = {}, {}, 0.0
    for spec in (r for r in WORKER_RUNS if r[0] in runs):
        key, label, n, parallel, on_ray = spec
        base = bases.get(on_ray) if n > 1 else None
        dc = cfg.data
        run = root / f"w{key}-{dc.packs_per_step}x{dc.batch_tokens}-{tag}-{PREFETCH_ARG[prefetch]}"
        rate, steal = _worker_row(out, run, cfg, spec, prefetch,
                                  f"{dc.packs_per_step} | {dc.batch_tokens} | {tag} | {PREFETCH_ARG[prefetch]} | {label}",
                                  base, skip_s)
        worst = max(worst, steal)
        if n == 1:
            bases[on_ray] = rate
        elif base:
            ratios[f"{label} / {'1 worker' if on_ray else 'one process'}"] = rate / base
    return ratios if worst <= max_steal else None


def workers_rows(root: Path, t5: str, steps: int, batch_tokens: tuple[int, ...], runs: set[str],
                 rounds: int = 3, prefetch_modes: tuple[bool | None, ...] = (False, None), max_steal: float = 0.05,
                 skip_s: float = 10.0, packs_per_step: tuple[int, ...] = (2,)) -> None:
    """Samples/s of 1 and 2 Ray Train workers on the same global batch of ``packs_per_step`` packs of
    ``batch_tokens`` tokens (and the same without Ray: one process, and two processes joined by
    torch.distributed directly), with worker 0's step split into phases; the load average before each row and
    the hypervisor's steal share during it say how much else the cores ran. Rates count the steps after the
    first ``skip_s`` seconds of training: Ray Train starts its helper actors (about 2 CPU seconds each) while
    the first steps run. The runs alternate on one Ray instance (this machine's speed drifts by +-15% over
    minutes), the data thread off (one thread per worker) and auto (the default: on where a core is free for
    it, so for 1 worker on 2 cores and not for 2; or on) in turn, until each mode has ``rounds`` rounds whose
    rows all had at most ``max_steal`` steal (at most 3 x ``rounds`` attempts): a ratio is the median over
    those rounds."""
    import torch

    from rushes.cluster import connect

    torch.set_num_threads(1)
    out = random_set(root, 400, t5)
    print(f"\n{steps} steps (400 tiny clips, stream window {DataConfig().stream_window}), tiny preset, 1 torch "
          f"thread per worker, gloo on CPU, {os.cpu_count()} cores; ms per step of worker 0 over the steps after the "
          f"first {skip_s:g} s; a round counts when no row of it had more than {max_steal:.0%} steal\n")
    print("| packs per step | tokens per pack | round | data thread | run | samples/s | vs one process of its kind | "
          "data ms | forward ms | backward ms (+ all-reduce) | optimizer ms | step ms | CPU busy | CPU ms per sample | "
          "steal | load before |")
    print("|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    session = connect(None)  # one Ray instance for every row: its start-up never overlaps a measured run
    try:
        for packs in packs_per_step:
            for budget in batch_tokens:
                _shape_rounds(out, root, _workers_cfg(t5, budget, steps, packs), runs, rounds, prefetch_modes,
                              max_steal, skip_s)
    finally:
        session.close()
    print(f"\nload average after: {_load()} (1/5/15 min)")


def _shape_rounds(out: Path, root: Path, cfg, runs: set[str], rounds: int, prefetch_modes: tuple, max_steal: float,
                  skip_s: float) -> None:
    """The rounds of one global batch shape, then each mode's median ratios."""
    import statistics

    kept: dict[bool | None, list[tuple[int, dict]]] = {m: [] for m in prefetch_modes}
    for tag in range(1, 3 * rounds + 1):
        for prefetch in (m for m in prefetch_modes if len(kept[m]) < rounds):
            got = _round(out, root, cfg, runs, prefetch, tag, max_steal, skip_s)
            kept[prefetch] += [(tag, got)] if got is not None else []
        if all(len(v) >= rounds for v in kept.values()):
            break
    for prefetch, done in kept.items():
        for label in sorted({k for _, r in done for k in r}):
            values = [r[label] for _, r in done]
            print(f"\n{cfg.data.packs_per_step} packs of {cfg.data.batch_tokens} tokens per step, data thread "
                  f"{PREFETCH_ARG[prefetch]}, {label}: median **{statistics.median(values):.2f}x** over rounds "
                  f"{', '.join(str(t) for t, _ in done)} ({', '.join(f'{v:.2f}x' for v in values)})")


def _timed_run(out: Path, run, cfg, waited: bool) -> tuple[float, float]:
    """Samples/s of one training run from the end of its first step to its return (its last upload included),
    and the size of its newest checkpoint in MB; ``waited``: each checkpoint's upload is waited for at once
    (what an upload in the training thread would cost)."""
    from rushes.train import rundir
    from rushes.train.loop import train

    marks, push = [], rundir.Uploads.push

    def push_and_wait(self, name):
        push(self, name)
        self.wait()
    rundir.Uploads.push = push_and_wait if waited else push
    try:
        train(out, run, cfg, echo=lambda s: None, prefetch=False,
              on_step=lambda done, clips, tokens: marks.append((time.perf_counter(), clips)))
    finally:
        rundir.Uploads.push = push
    rate = sum(c for _, c in marks[1:]) / (time.perf_counter() - marks[0][0])
    latest = storage.join(run, "checkpoints", f"step-{cfg.train.steps:07d}")
    return rate, sum(storage.size(f) for f in storage.list_files(latest)) / 1e6


def bucket_rows(root: Path, t5: str, steps: int, every: int) -> None:
    """A run directory in a bucket (moto's S3 server on loopback, sharing the machine's cores) against one in a
    folder: a model of ~5M parameters (hidden 256, depth 4: checkpoints of weights, EMA and AdamW state), a
    checkpoint every ``every`` steps; uploads beside the training (the default) and each upload waited for."""
    import torch

    from rushes.testing.s3 import make_bucket, moto_server

    torch.set_num_threads(1)
    out = random_set(root, 400, t5)
    cfg = _cfg(t5, packs_per_step=2, batch_tokens=1024).with_overrides(
        model={"hidden_size": 256, "depth": 4}, train={"steps": steps, "checkpoint_every": every})
    print(f"\n{steps} steps of 2 packs of 1024 tokens, a checkpoint every {every} steps, 1 torch thread; "
          f"samples/s from the end of step 1 to the run's return (the last upload included)\n")
    print("| RUN | checkpoint MB | samples/s | vs folder |")
    print("|---|---:|---:|---:|")
    with moto_server(root / "moto.log") as url:
        bucket = make_bucket(url, "rushes-bench")
        base = None
        for label, run, waited in (("folder", root / "run-folder", False),
                                   ("bucket, uploads beside training (default)", f"{bucket}/beside", False),
                                   ("bucket, each upload waited for", f"{bucket}/waited", True)):
            rate, mb = _timed_run(out, run, cfg, waited)
            base = base or rate
            print(f"| {label} | {mb:.1f} | {rate:.1f} | {rate / base:.2f}x |", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        out, t5, steps, mode = sys.argv[2:6]
        rss_child(out, t5, int(steps), mode)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--ddp-child":
        out, t5, run, *numbers = sys.argv[2:]
        steps, budget, packs, rank, world, port = (int(v) for v in numbers[:-1])
        mode = {v: k for k, v in PREFETCH_ARG.items()}[numbers[-1]]
        ddp_child(out, t5, run, steps, budget, packs, rank, world, port, mode)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="rss,encoded,workers",
                    help="comma-separated: rss, encoded, workers, bucket (a run directory in a bucket)")
    ap.add_argument("--bucket-steps", type=int, default=60, help="training steps of each bucket row")
    ap.add_argument("--bucket-every", type=int, default=10, help="steps between checkpoints of the bucket rows")
    ap.add_argument("--steps", type=int, default=40, help="training steps of the encoded/on-the-fly rows")
    ap.add_argument("--workers-steps", type=int, default=400, help="training steps of each workers row")
    ap.add_argument("--workers-skip-s", type=float, default=10.0,
                    help="seconds of training left out of each workers row's rates (Ray Train starts its helper "
                         "actors while the first steps run)")
    ap.add_argument("--workers-tokens", default="1024", help="tokens per pack of the workers rows")
    ap.add_argument("--workers-packs", default="2,4",
                    help="packs per step (the global batch, split over the workers) of the workers rows: the "
                         "step's fixed costs (the all-reduce, the wait for the other worker, the optimizer that "
                         "every worker runs whole) weigh less on a larger batch")
    ap.add_argument("--workers-runs", default="1ddp,2ddp,0ddp,2noray,2fsdp",
                    help="workers rows: 1ddp, 2ddp, 2fsdp (Ray Train workers), 0ddp (one process without Ray), "
                         "2noray (two processes, gloo DDP set up by torch.distributed without Ray)")
    ap.add_argument("--workers-rounds", type=int, default=3,
                    help="rounds of the workers rows, run alternately; the ratio is their median")
    ap.add_argument("--workers-prefetch", default="off,auto",
                    help="data thread modes of the workers rows: off (one thread per worker), auto (the default of "
                         "rushes train: on where the node has a core for it), on")
    ap.add_argument("--max-steal", type=float, default=0.05,
                    help="a workers round counts only when the hypervisor's steal share stayed at or below this "
                         "during each of its rows (this machine is a VM on a shared host)")
    ap.add_argument("--ray-niceness", default="0",
                    help="nice value of Ray's worker processes (Ray's own default is 15, which on a machine shared "
                         "with other work starves the Ray Train workers against the one-process row)")
    args = ap.parse_args()
    os.environ["RAY_worker_niceness"] = args.ray_niceness  # read by the raylet of the local Ray started below
    print(f"`python {' '.join(sys.argv)}` on {os.cpu_count()} cores, load average {_load()} (1/5/15 min), "
          f"Ray workers at nice {args.ray_niceness}")
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        root = Path(tmp)
        t5 = save_tiny_text_encoder(root / "t5")
        if "rss" in only:
            rss_rows(root, t5)
        if "encoded" in only:
            encoded_rows(root, t5, args.steps)
        if "bucket" in only:
            bucket_rows(root, t5, args.bucket_steps, args.bucket_every)
        if "workers" in only:
            workers_rows(root, t5, args.workers_steps, tuple(int(t) for t in args.workers_tokens.split(",")),
                         set(args.workers_runs.split(",")), args.workers_rounds,
                         tuple({v: k for k, v in PREFETCH_ARG.items()}[m] for m in args.workers_prefetch.split(",")),
                         args.max_steal, args.workers_skip_s,
                         tuple(int(p) for p in args.workers_packs.split(",")))


if __name__ == "__main__":
    main()
