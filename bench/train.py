"""Trainer benchmark: is data loading a bottleneck, and how much compute does packing save?

    python bench/train.py [--steps 30] [--rounds 3] [--threads 1] [--only throughput,packing,attention,cross,cond]

1. Throughput: real tokens/s of a full training step as the loop runs it (next pack from the loader,
   caption dropout, collate, forward, backward, clip, AdamW, EMA) against forward+backward alone on the
   very same packed tensors, measured in one process, rounds interleaved. Data come from a manifest of
   synthetic clips of mixed sizes, prepared (decoded, embedded) once into the run's cache first, as
   `rushes train` does before its first step.
2. Packing efficiency (real tokens / computed tokens) on the same clip set, and on clips with the
   geometries of ../shared/footage and random durations: first-fit-decreasing packing into the token
   budget against pad-to-longest batching (as many clips per batch as the budget holds at the clip budget).
3. Attention memory: peak resident memory of one block-diagonal self-attention (forward + backward, clips of
   4,096 tokens as the base preset packs them) with the masked-dense reference (an L x L mask) against the
   per-clip kernel ``rushes train`` uses on CPU, each measured in a fresh process (VmHWM reset before the
   call), at 16k and 64k packed tokens, with the largest output difference between the two.
4. Cross-attention memory: peak resident memory of one cross-attention (12 heads x 64, fp32, 1 thread; forward
   + backward, q/k/v given) over 16,384 packed tokens of 32 clips of 512 tokens, with captions of up to 64
   tokens (the native default) and 512 (Wan's): the per-clip kernel ``rushes train`` runs against the
   dense-mask reference it replaced (every token against all 32 captions, ``rushes.testing.attention``), the
   latter through torch's default CPU kernel (blockwise: it takes the mask without materialising scores) and
   through the math kernel (scores materialised, as a kernel without mask support computes them); each in a
   fresh process (VmHWM reset just before the call), with the largest output difference on real tokens.
5. Conditioning: seconds of a training step (train_step: forward, backward, AdamW, EMA) on the same packs with
   every clip conditioned (``--cond-mix i2v=1,extend=1,firstlast=1``: a per-token timestep, given frames out of the
   loss) against none (``t2v=1``, the per-clip path), one process, rounds interleaved (target <= 1.05x).
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

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rushes.testing.train_manifests import Clip, write_manifest  # noqa: E402
from rushes.testing.synth import make_cut_video  # noqa: E402

from rushes.testing.tiny import save_tiny_text_encoder  # noqa: E402
from rushes.train.config import preset  # noqa: E402
from rushes.train.data import plan_clip, split_validation  # noqa: E402
from rushes.train.packing import PackLoader, collate, pack_first_fit  # noqa: E402
from rushes.train.loop import build_model, load_data, train_step  # noqa: E402


def make_set(root: Path) -> Path:
    """A manifest of 12 synthetic clips: three aspect ratios, durations 0.5-2 s (so token counts differ)."""
    clips = []
    for i, (w, h) in enumerate([(128, 72), (72, 128), (96, 96)]):
        v = make_cut_video(root / f"v{i}.mp4", [2.0, 2.0], fps=16, size=(w, h))
        for j, (s, e) in enumerate([(0.0, 0.5), (0.5, 1.5), (2.0, 4.0), (1.5, 2.25)]):
            clips.append(Clip(v.path, s, e, w, h, f"synthetic pattern {i} part {j}"))
    return write_manifest(root / "out", clips)


def throughput(out: Path, run: Path, cfg, steps: int, rounds: int) -> dict:
    device = torch.device("cpu")
    prepared = load_data(out, run, cfg, device)  # decode + embed once into the cache (not timed)
    train_set, _ = split_validation(prepared.examples, 0)
    from dataclasses import replace

    cfg = replace(cfg, model=replace(cfg.model, in_channels=prepared.channels, text_dim=prepared.text_dim))
    model = build_model(cfg, device).train()
    import copy

    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, fused=True)  # as train/loop.py
    gen = torch.Generator().manual_seed(0)
    dc = cfg.data
    full_s, model_s, fb_s, tokens = 0.0, 0.0, 0.0, 0
    for r in range(rounds + 1):  # round 0 warms up allocators and caches
        loader = PackLoader(train_set, dc.batch_tokens, seed=r)
        batches, t0, n = [], time.perf_counter(), 0
        for step in range(steps):
            pack = loader.next()
            drop = torch.rand(len(pack), generator=gen) < dc.caption_dropout
            texts = [prepared.null_text if d else e.text for e, d in zip(pack, drop.tolist())]
            batch = collate(pack, pad_multiple=dc.pad_multiple, texts=texts).to(device)
            train_step(model, ema, opt, [batch], [gen], cfg, step)
            batches.append(batch)
            n += batch.real_tokens
        t_full = time.perf_counter() - t0
        t0 = time.perf_counter()
        for step, b in enumerate(batches):  # the same step without data loading: same tensors
            train_step(model, ema, opt, [b], [gen], cfg, step)
        t_model = time.perf_counter() - t0
        t0 = time.perf_counter()
        for b in batches:  # forward + backward alone, same tensors
            out = model(b.x0, torch.rand(b.slot_tokens.shape, generator=gen), b.text, b.text_mask, b.pos, b.seq)
            out.float().pow(2).mean().backward()
            model.zero_grad(set_to_none=True)
        t_fb = time.perf_counter() - t0
        if r:
            full_s, model_s, fb_s, tokens = full_s + t_full, model_s + t_model, fb_s + t_fb, tokens + n
    return {"full": tokens / full_s, "model": tokens / model_s, "fwd_bwd": tokens / fb_s}


def efficiency(token_counts: list[int], budget: int, clip_budget: int, pad_multiple: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(token_counts)).tolist()
    real = sum(token_counts)
    packs = pack_first_fit(token_counts, budget, order)
    padded = sum(-(-sum(token_counts[i] for i in p) // pad_multiple) * pad_multiple for p in packs)
    per_batch = max(1, budget // clip_budget)
    pad_longest = sum(len(order[i:i + per_batch]) * max(token_counts[j] for j in order[i:i + per_batch])
                      for i in range(0, len(order), per_batch))
    return {"packed_budget": real / (len(packs) * budget), "packed_pad64": real / padded,
            "pad_longest": real / pad_longest, "clips": len(token_counts), "packs": len(packs)}


FOOTAGE_GEOMETRIES = [(1280, 720), (1280, 544), (544, 1280), (1024, 576), (1920, 1080), (1280, 720),
                      (320, 240), (640, 360), (640, 360)]  # display sizes of ../shared/footage


def footage_like_counts(cfg, n: int = 400, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    d = cfg.data
    counts = []
    for _ in range(n):
        w, h = FOOTAGE_GEOMETRIES[rng.integers(len(FOOTAGE_GEOMETRIES))]
        plan = plan_clip(w, h, float(rng.uniform(0.3, 6.0)), d.fps, d.max_frames, d.clip_tokens,
                         cfg.model.patch_size, d.max_side_px)
        if plan:
            counts.append(plan.tokens)
    return counts


ATTENTION_CHILD = r"""
import json, sys, time
import torch
from rushes.train.model import PackedAttention

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024  # MiB

kernel, tokens, clip, heads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
seq = torch.arange(tokens // clip).repeat_interleave(clip)[None]  # (1, L) clips of `clip` tokens
q, k, v = (torch.randn(1, heads, tokens, 64, generator=g, requires_grad=True) for _ in range(3))
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
base, t0 = status("VmRSS"), time.perf_counter()
out = PackedAttention(seq, kernel)(q, k, v)  # the mask (dense) or the segments are built inside the timing
out.backward(torch.ones_like(out))
seconds = time.perf_counter() - t0
torch.save(out[0, :, ::97].detach(), sys.argv[5])
print(json.dumps({"peak_mib": status("VmHWM") - base, "seconds": seconds}))
"""


def attention_memory(kernel: str, tokens: int, clip: int, heads: int, tmp: Path) -> dict:
    """Peak RSS above the inputs of one PackedAttention forward + backward, in a fresh process."""
    sample = tmp / f"att-{kernel}-{tokens}.pt"
    proc = subprocess.run([sys.executable, "-c", ATTENTION_CHILD, kernel, str(tokens), str(clip), str(heads),
                           str(sample)], capture_output=True, text=True, cwd=REPO, timeout=3600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode:
        raise RuntimeError(f"attention child failed: {proc.stderr[-2000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "sample": torch.load(sample)}


def attention_rows(tmp: Path, heads: int = 2, clip: int = 4096) -> None:
    print("\n| packed tokens | clips x tokens | heads x dim | masked-dense peak MiB | block-diagonal (segments) "
          "peak MiB | block / dense | dense s | block s | max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for tokens in (16384, 65536):
        block = attention_memory("segments", tokens, clip, heads, tmp)
        if tokens * tokens * 5 < 8 * 2**30:  # bool mask + its float copy must fit this machine
            dense = attention_memory("dense", tokens, clip, heads, tmp)
            diff = float((dense["sample"] - block["sample"]).abs().max())
            cells = (f"{dense['peak_mib']:.0f} | {block['peak_mib']:.0f} | {block['peak_mib'] / dense['peak_mib']:.3f} "
                     f"| {dense['seconds']:.1f} | {block['seconds']:.1f} | {diff:.1e}")
        else:
            cells = (f"not run (the mask alone: {tokens * tokens / 2**30:.0f} GiB bool, {tokens * tokens * 4 / 2**30:.0f} "
                     f"GiB as float) | {block['peak_mib']:.0f} | - | - | {block['seconds']:.1f} | -")
        print(f"| {tokens} | {tokens // clip} x {clip} | {heads} x 64 | {cells} |")


CROSS_CHILD = r"""
import json, sys, time
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from rushes.testing.attention import cross_attention_mask
from rushes.train.model import PackedAttention

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024  # MiB

path, tokens, clips, lt, heads = sys.argv[1], *map(int, sys.argv[2:6])
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
seq = torch.arange(clips).repeat_interleave(tokens // clips)[None]  # (1, L) clips of tokens/clips tokens
lengths = torch.randint(lt // 4, lt + 1, (clips,), generator=g)  # real caption tokens per clip
text_mask = (torch.arange(lt)[None] < lengths[:, None])[None]  # (1, S, Lt)
q = torch.randn(1, tokens, heads, 64, generator=g, requires_grad=True)  # (B, L, H, hd)
k, v = (torch.randn(1, clips * lt, heads, 64, generator=g) for _ in range(2))  # every slot's padded caption
if path == "per_clip":  # the real caption tokens only, as the model projects them
    attend = PackedAttention(seq, "auto", text_mask)
    k, v = (attend.caption_tokens(t.reshape(1, clips, lt, -1)).unflatten(1, (heads, 64)) for t in (k, v))
k, v = k.requires_grad_(True), v.requires_grad_(True)
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
base, t0 = status("VmRSS"), time.perf_counter()
if path == "per_clip":
    out = attend.cross(q, k, v)  # (B, L, H, hd)
else:  # every token against every caption token of the pack, through the mask (built inside the timing)
    kernel = sdpa_kernel(SDPBackend.MATH) if path == "dense_math" else torch.enable_grad()
    with kernel:
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=cross_attention_mask(seq, text_mask)).transpose(1, 2)
out.backward(torch.ones_like(out))
seconds = time.perf_counter() - t0
torch.save(out[0, ::97].detach(), sys.argv[6])
print(json.dumps({"peak_mib": status("VmHWM") - base, "seconds": seconds}))
"""


def cross_memory(path: str, tokens: int, clips: int, lt: int, heads: int, tmp: Path) -> dict:
    """Peak RSS above the inputs of one cross-attention forward + backward, in a fresh process."""
    sample = tmp / f"cross-{path}-{lt}.pt"
    proc = subprocess.run([sys.executable, "-c", CROSS_CHILD, path, str(tokens), str(clips), str(lt), str(heads),
                           str(sample)], capture_output=True, text=True, cwd=REPO, timeout=3600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode:
        raise RuntimeError(f"cross-attention child failed: {proc.stderr[-2000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "sample": torch.load(sample)}


DENSE_PATHS = {"dense": "dense mask, torch's CPU kernel", "dense_math": "dense mask, math kernel"}


def cross_rows(tmp: Path, tokens: int = 16384, clips: int = 32, heads: int = 12) -> None:
    print("\n| caption tokens (max) | dense path | dense peak MiB | per-clip peak MiB | per-clip / dense | dense s | "
          "per-clip s | max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    for lt in (64, 512):  # the native default (max_text_tokens) and Wan's caption budget
        ours = cross_memory("per_clip", tokens, clips, lt, heads, tmp)
        for path, label in DENSE_PATHS.items():
            if path == "dense_math" and heads * tokens * clips * lt * 4 * 2 > 8 * 2**30:
                print(f"| {lt} | {label} | not run: the scores alone are "
                      f"{heads * tokens * clips * lt * 4 / 2**30:.0f} GiB | {ours['peak_mib']:.0f} | - | - | "
                      f"{ours['seconds']:.1f} | - |")
                continue
            dense = cross_memory(path, tokens, clips, lt, heads, tmp)
            diff = float((dense["sample"] - ours["sample"]).abs().max())  # every sampled row is a real token
            print(f"| {lt} | {label} | {dense['peak_mib']:.0f} | {ours['peak_mib']:.0f} | "
                  f"{ours['peak_mib'] / dense['peak_mib']:.3f} | {dense['seconds']:.1f} | {ours['seconds']:.1f} | "
                  f"{diff:.1e} |")


def cond_rows(out: Path, root: Path, t5: str, steps: int, rounds: int) -> None:
    """Conditioned against unconditioned step time on the same packs (section 5 of the module doc)."""
    import copy

    from rushes.train.conditioning import pack_cond, task_rng

    device = torch.device("cpu")
    print("\n| config | unconditioned step ms | conditioned step ms | conditioned / unconditioned |")
    print("|---|---|---|---|")
    for name, model_kw in [("tiny", {}), ("192-wide 4-block model", {"hidden_size": 192, "depth": 4})]:
        cfg = preset("tiny").with_overrides(data={"text_encoder": t5}, model=model_kw)
        prepared = load_data(out, root / f"run-cond-{name[:4]}", cfg, device)
        from dataclasses import replace

        cfg = replace(cfg, model=replace(cfg.model, in_channels=prepared.channels, text_dim=prepared.text_dim))
        model = build_model(cfg, device).train()
        ema = copy.deepcopy(model).requires_grad_(False)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, fused=True)
        loader = PackLoader(prepared.examples, cfg.data.batch_tokens, seed=0)
        batches = [collate(loader.next(), pad_multiple=cfg.data.pad_multiple) for _ in range(steps)]
        conds = [pack_cond(b.grids, b.x0.shape[1], "i2v=1,extend=1,firstlast=1", task_rng(0, i, 0))
                 for i, b in enumerate(batches)]
        times = {"plain": 0.0, "cond": 0.0}
        for r in range(rounds + 1):  # round 0 warms up
            for kind in ("plain", "cond") if r % 2 else ("cond", "plain"):  # interleaved, alternating order
                t0 = time.perf_counter()
                for i, b in enumerate(batches):
                    b.cond = conds[i] if kind == "cond" else None
                    train_step(model, ema, opt, [b], [torch.Generator().manual_seed(i)], cfg, i)
                if r:
                    times[kind] += time.perf_counter() - t0
        n = rounds * steps
        print(f"| {name} | {1e3 * times['plain'] / n:.1f} | {1e3 * times['cond'] / n:.1f} | "
              f"**{times['cond'] / times['plain']:.3f}x** (target <= 1.05x) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="training steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is stable on a shared machine)")
    ap.add_argument("--only", default="throughput,packing,attention,cross,cond",
                    help="comma-separated sections to run: throughput, packing, attention, cross, cond")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        if "attention" in only:
            attention_rows(root)
        if "cross" in only:
            cross_rows(root)
        if not only & {"throughput", "packing", "cond"}:
            return
        out = make_set(root)
        t5 = save_tiny_text_encoder(root / "t5")
        if "cond" in only:
            cond_rows(out, root, t5, args.steps, args.rounds)
        if not only & {"throughput", "packing"}:
            return
        rows = []
        for name, data_kw, model_kw in [("tiny", {}, {}), ("tiny, 1 clip/pack", {"batch_tokens": 512}, {}),
                                        ("tiny data, 192-wide 4-block model", {}, {"hidden_size": 192, "depth": 4})]:
            cfg = preset("tiny").with_overrides(data={"text_encoder": t5, **data_kw}, model=model_kw)
            tp = throughput(out, root / f"run-{len(rows)}", cfg, args.steps, args.rounds)
            rows.append((name, cfg.data.batch_tokens, tp))
        print(f"\nDevice: CPU ({args.threads} thread(s)); no GPU in this session. "
              f"{args.rounds} x {args.steps} steps per row.\n")
        print("| config | batch tokens | full step tokens/s | step without data tokens/s | fwd+bwd tokens/s | "
              "full / fwd+bwd | full / step without data |")
        print("|---|---|---|---|---|---|---|")
        for name, budget, tp in rows:
            print(f"| {name} | {budget} | {tp['full']:.0f} | {tp['model']:.0f} | {tp['fwd_bwd']:.0f} | "
                  f"{tp['full'] / tp['fwd_bwd']:.2f}x | {tp['full'] / tp['model']:.2f}x |")

        print("\n| clip set | preset (clip / batch tokens) | clips | packed, padded to budget | packed, padded to 64 "
              "| pad-to-longest | packed to budget / pad-to-longest |")
        print("|---|---|---|---|---|---|---|")
        tiny_counts = [e.num_tokens for e in load_data(out, root / "run-0", preset("tiny").with_overrides(
            data={"text_encoder": t5}), torch.device("cpu")).examples]
        sets = [("synthetic bench set", "tiny", tiny_counts * 10)]
        for p in ("tiny", "small", "base"):
            sets.append(("footage geometries, 0.3-6 s", p, footage_like_counts(preset(p))))
        for label, p, counts in sets:
            d = preset(p).data
            e = efficiency(counts, d.batch_tokens, d.clip_tokens, d.pad_multiple)
            print(f"| {label} | {p} ({d.clip_tokens} / {d.batch_tokens}) | {e['clips']} | {e['packed_budget']:.3f} | "
                  f"{e['packed_pad64']:.3f} | {e['pad_longest']:.3f} | "
                  f"{e['packed_budget'] / e['pad_longest']:.2f}x |")


if __name__ == "__main__":
    main()
