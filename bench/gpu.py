"""GPU benchmark of the trainer's hot path: tokens/s and MFU in bf16, eager and --compile, plus the GPU tests.

    python bench/gpu.py                         # everything, within --budget-s (default 480 s)
    python bench/gpu.py --only base --no-tests  # one preset's rows
    python bench/gpu.py --device cpu --smoke    # a CPU check that the script runs (tiny shapes, no numbers)

Never run in CI (no GPU there). On a GPU machine it:

1. runs the GPU attention equality tests (``pytest -m gpu``: varlen self- and cross-attention against the dense
   references, in bf16), which skip without CUDA;
2. times full training steps as ``rushes train`` runs them (``rushes.train.loop.train_step``: bf16 autocast,
   forward, backward, gradient clip, fused AdamW, EMA) on one fixed pack of several clips of different sizes, with
   random weights, eager and with per-block ``torch.compile`` (``--compile``), for:
   - ``base``: the base preset (768 x 12) with T5-base-wide captions (768) and a 16-channel latent;
   - ``wan13``: a Wan2.1-T2V-1.3B-shaped config: width 1536, 30 blocks, 12 heads, FFN 8960, text width 4096
     (UMT5-XXL), patch 1x2x2, 16 latent channels. Built with rushes' native architecture at those shapes (its
     per-block adaLN makes it ~1.8B parameters, against Wan's 1.3B with one shared modulation); once the
     Wan-compatible architecture (train/wan.py, issue 23 item 1) lands, build that one here instead.
   Rows at 16k tokens need activation checkpointing for wan13 on an 80 GB card; one row runs 8k without it.

MFU = model FLOPs of the step / seconds / the card's dense bf16 peak (``rushes.train.throughput``): FLOPs count
the real work only (attention within each clip and to its own caption, never the pack's L^2, no padding, no
recomputation by checkpointing). Each row prints when done (partial output survives a time limit), and the
results go to ``$OUT/gpu_bench.json`` when ``$OUT`` is set. Rows past ``--budget-s`` are skipped, not run.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rushes.train import parallel  # noqa: E402
from rushes.train.config import ModelConfig, preset  # noqa: E402
from rushes.train.data import Example  # noqa: E402
from rushes.train.loop import build_optimizer, train_step  # noqa: E402
from rushes.train.model import DiffusionTransformer, count_parameters  # noqa: E402
from rushes.train.packing import collate  # noqa: E402
from rushes.train.throughput import batch_flops, peak_flops  # noqa: E402

# A 480x832 video under a 4x8x8 VAE is a 60x104 latent: 30x52 tokens per latent frame with 1x2x2 patches.
PACK_16K = [(6, 30, 52), (3, 30, 52), (2, 26, 26)]  # 9,360 + 4,680 + 1,352 = 15,392 real tokens
PACK_8K = [(3, 30, 52), (2, 30, 52)]  # 4,680 + 3,120 = 7,800 real tokens
SMOKE_PACK = [(2, 4, 6), (1, 4, 4)]


def wan13_model() -> ModelConfig:
    """Wan2.1-T2V-1.3B's shapes in rushes' native architecture (random weights; see the module docstring)."""
    return ModelConfig(patch_size=(1, 2, 2), hidden_size=1536, depth=30, num_heads=12, mlp_ratio=8960 / 1536,
                       in_channels=16, text_dim=4096)


@dataclass(frozen=True)
class Row:
    name: str
    model: ModelConfig
    grids: list[tuple[int, int, int]]
    caption_tokens: list[int]  # real caption tokens per clip
    compile: bool


def rows(only: set[str], smoke: bool) -> list[Row]:
    base = replace(preset("base").model, text_dim=768, in_channels=16)
    wan = wan13_model()
    if smoke:
        tiny = replace(preset("tiny").model, patch_size=(1, 2, 2), text_dim=32, in_channels=4)
        return [Row("smoke", tiny, SMOKE_PACK, [5, 3], c) for c in (False, True)]
    out = []
    for c in (False, True):
        out.append(Row("base 16k", base, PACK_16K, [48, 30, 64], c))
    for c in (False, True):
        out.append(Row("wan13 8k", wan, PACK_8K, [180, 320], c))
    out.append(Row("wan13 16k ckpt", replace(wan, checkpointing=True), PACK_16K, [180, 320, 512], True))
    return [r for r in out if r.name.split()[0] in only]


def make_batch(row: Row, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pt, ph, pw = row.model.patch_size
    examples = [Example(f"clip{i}", "", torch.randn(t * h * w, row.model.patch_dim, generator=g), (t, h, w),
                        torch.randn(m, row.model.text_dim, generator=g))
                for i, ((t, h, w), m) in enumerate(zip(row.grids, row.caption_tokens))]
    return collate(examples, pad_multiple=64).to(device)


def measure(row: Row, device: torch.device, warmup: int, steps: int, backend: str) -> dict:
    """Seconds per training step (after ``warmup`` steps, which include compiling) and what they give."""
    cfg = preset("base").with_overrides(train={"warmup_steps": 0, "lr": 1e-5})
    cfg = replace(cfg, model=row.model)
    torch.manual_seed(0)
    net = DiffusionTransformer(row.model).to(device).train()
    ema = copy.deepcopy(net).requires_grad_(False).eval()
    if row.compile:
        parallel.compile_blocks(net, backend=backend)
    optimizer = build_optimizer(net, cfg.train)
    batch = make_batch(row, device)
    gen = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    first = train_step(net, ema, optimizer, [batch], [gen], cfg, 0)["loss"]
    for step in range(1, warmup):
        train_step(net, ema, optimizer, [batch], [gen], cfg, step)
    sync()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for step in range(warmup, warmup + steps):
        train_step(net, ema, optimizer, [batch], [gen], cfg, step)
    sync()
    step_s = (time.perf_counter() - t0) / steps
    flops = batch_flops(row.model, batch)
    peak = peak_flops(device)
    return {"row": row.name, "compile": row.compile, "params": count_parameters(net), "real_tokens": batch.real_tokens,
            "tokens": int(batch.x0.shape[1]), "step_s": step_s, "tokens_per_s": batch.real_tokens / step_s,
            "tflops_per_s": flops / step_s / 1e12, "mfu": flops / step_s / peak if peak else None,
            "warmup_s": warm_s, "first_loss": first,
            "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def run_tests(timeout: int) -> None:
    """The GPU attention equality tests (they skip without CUDA)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/train/test_attention.py",
           "tests/train/test_model.py"]
    print("$", " ".join(cmd), flush=True)
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        print(proc.stdout[-4000:], proc.stderr[-2000:], f"exit status {proc.returncode}", sep="\n", flush=True)
    except subprocess.TimeoutExpired:
        print(f"GPU tests: over {timeout} s, stopped", flush=True)


def table_line(r: dict) -> str:
    mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "-"
    mem = f"{r['peak_mem_gib']:.1f}" if r.get("peak_mem_gib") is not None else "-"
    return (f"| {r['row']} | {'compile' if r['compile'] else 'eager'} | {r['params'] / 1e6:.0f}M | "
            f"{r['real_tokens']:,} / {r['tokens']:,} | {r['step_s'] * 1e3:.0f} | {r['tokens_per_s']:,.0f} | "
            f"{r['tflops_per_s']:.0f} | {mfu} | {mem} | {r['warmup_s']:.0f} | {r['first_loss']:.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="base,wan13", help="comma-separated configs: base, wan13")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per row (compiling happens here)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per row")
    ap.add_argument("--budget-s", type=float, default=480, help="skip the rows left once this many seconds passed")
    ap.add_argument("--no-tests", action="store_true", help="skip the GPU equality tests")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, 1 timed step, compile with the eager "
                    "backend: checks the script itself (e.g. on CPU)")
    args = ap.parse_args()
    start, device = time.perf_counter(), torch.device(args.device)
    parallel.enable_tf32(device)
    if not args.no_tests:
        run_tests(timeout=int(min(180, args.budget_s / 3)))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\nDevice: {name}; torch {torch.__version__}; bf16 peak {peak_flops(device) or 0:.3g} FLOP/s\n")
    print("| config | mode | params | real / padded tokens | ms/step | real tokens/s | model TFLOP/s | MFU | "
          "peak GiB | warm-up s | first loss |")
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    results = []
    for row in rows(set(args.only.split(",")), args.smoke):
        if time.perf_counter() - start > args.budget_s:
            print(f"| {row.name} | {'compile' if row.compile else 'eager'} | skipped: over --budget-s |", flush=True)
            continue
        try:
            r = measure(row, device, 1 if args.smoke else args.warmup, 1 if args.smoke else args.steps,
                        "eager" if args.smoke else "inductor")
        except Exception as exc:  # one row's failure (out of memory, a compile error) never stops the others
            kind = "out of memory" if isinstance(exc, torch.cuda.OutOfMemoryError) else type(exc).__name__
            r = {"row": row.name, "compile": row.compile, "error": f"{kind}: {str(exc)[:300]}"}
            print(f"| {row.name} | {'compile' if row.compile else 'eager'} | {kind}: {str(exc)[:120]} |", flush=True)
        else:
            print(table_line(r), flush=True)
        results.append(r)
        torch._dynamo.reset()  # frees the compiled graphs (and the model they hold) before the next row
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_bench.json").write_text(json.dumps({"device": name, "rows": results}, indent=2))
    print(f"\ntotal {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
