"""The training loop, readable top to bottom: manifest -> packed clips -> DiT -> checkpoints.

Use::

    from train.config import preset
    from train.loop import train
    result = train("OUT", "runs/tiny", preset("tiny"))      # resumes when runs/tiny has a checkpoint

Writes ``RUN_DIR/config.json`` (resolved config and tool versions), ``RUN_DIR/log.jsonl`` (one JSON line per logged step
and validation), ``RUN_DIR/skipped.jsonl`` (clips that failed to decode), ``RUN_DIR/checkpoints/`` and a
``train`` entry in ``OUT/summary.json``.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from manifests import store
from media.versions import tool_versions
from train import checkpoint
from train.config import RunConfig
from train.data import Prepared, prepare, split_validation, training_clips
from train.encoders import TextEncoder, Vae
from train.diffusion import training_loss
from train.model import DiffusionTransformer, count_parameters
from train.packing import PackedBatch, PackLoader, collate, pack_first_fit

log = logging.getLogger(__name__)

TOOLS = ("torch", "transformers", "diffusers", "safetensors", "av")  # recorded in config.json


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    run_dir: str
    start_step: int
    step: int
    losses: list[float] = field(default_factory=list)  # training loss of every step run in this call
    val_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss)
    num_clips: int = 0
    skipped: int = 0
    parameters: int = 0


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_data(out_dir, run_dir, cfg: RunConfig, device: torch.device) -> Prepared:
    """Prepare (or read from ``RUN_DIR/cache``) every kept, captioned clip of ``out_dir``."""
    d = cfg.data
    sources = training_clips(out_dir, d.captioner, d.prompt_version, d.limit)
    dev = str(device)
    return prepare(sources, d, cfg.model.patch_size, Path(run_dir) / "cache",
                   lambda: TextEncoder(d.text_encoder, d.max_text_tokens, device=dev),
                   lambda: Vae(d.vae, d.vae_subfolder, device=dev) if d.vae else None)


def build_model(cfg: RunConfig, device: torch.device) -> DiffusionTransformer:
    """The model of a resolved config, seeded so a fresh run always starts from the same weights."""
    torch.manual_seed(cfg.train.seed)
    return DiffusionTransformer(cfg.model).to(device)


def lr_at(step: int, cfg: RunConfig) -> float:
    """Linear warmup to ``lr``, then constant (rectified-flow DiTs train well at a constant rate)."""
    warm = cfg.train.warmup_steps
    return cfg.train.lr * min(1.0, (step + 1) / warm) if warm else cfg.train.lr


def train_step(model, ema, optimizer, batch: PackedBatch, generator: torch.Generator, cfg: RunConfig,
               step: int) -> dict:
    """One optimisation step on a packed batch: loss, backward, clip, AdamW, EMA. Returns log numbers."""
    tc = cfg.train
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, cfg)
    on_gpu = batch.x0.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_gpu):  # bf16 on GPU only; CPU stays fp32
        loss, _ = training_loss(
            lambda x_t, t: model(x_t, t, batch.text, batch.text_mask, batch.pos, batch.seq),
            batch.x0, batch.seq, batch.slot_tokens, generator, tc.timestep_mean, tc.timestep_std,
            tc.shift_base_tokens, tc.max_shift)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip if tc.grad_clip else float("inf"))
    optimizer.step()
    with torch.no_grad():  # one fused call over all tensors: a per-tensor loop costs more than a tiny model's step
        torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1.0 - tc.ema_decay)
    return {"loss": loss.item(), "grad_norm": float(gnorm), "lr": optimizer.param_groups[0]["lr"]}


@torch.no_grad()
def validation_loss(model, val_set, prepared: Prepared, cfg: RunConfig, device) -> float:
    """Mean loss over held-out clips at the fixed ``val_timesteps`` with fixed noise (comparable across steps)."""
    if not val_set:
        return float("nan")
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(12345)  # its own stream: validation never shifts training randomness
    total, count = 0.0, 0
    for pack in pack_first_fit([e.num_tokens for e in val_set], cfg.data.batch_tokens):
        batch = collate([val_set[i] for i in pack]).to(device)
        for t_val in cfg.train.val_timesteps:
            t = torch.full(batch.slot_tokens.shape, t_val, device=device)
            _, losses = training_loss(
                lambda x_t, tt: model(x_t, tt, batch.text, batch.text_mask, batch.pos, batch.seq),
                batch.x0, batch.seq, batch.slot_tokens, gen, t=t)
            total += float(losses.sum())
            count += losses.numel()
    model.train(was_training)
    return total / max(count, 1)


def _append_log(run_dir: Path, record: dict, echo: Callable[[str], None]) -> None:
    with open(run_dir / "log.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))


def _truncate_log(run_dir: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from, so the log reads as one run."""
    path = run_dir / "log.jsonl"
    if path.exists():
        keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln).get("step", 0) <= step]
        path.write_text("".join(ln + "\n" for ln in keep))


def write_config(run_dir: Path, cfg: RunConfig) -> None:
    """``RUN_DIR/config.json``: the resolved config plus the versions of the tools of this call."""
    record = {**cfg.to_dict(), "tool_versions": tool_versions(TOOLS)}
    (run_dir / "config.json").write_text(json.dumps(record, indent=2, sort_keys=True))


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)  # noise, timesteps and caption dropout come from this stream


def train(out_dir, run_dir, cfg: RunConfig, device: str | torch.device | None = None,
          echo: Callable[[str], None] = print) -> TrainResult:
    """Train (or resume) a run from the manifests in ``out_dir``; see the module docstring."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device else default_device()
    tc, dc = cfg.train, cfg.data

    # 1. Data: decode once into the cache, hold out validation clips, pack the rest by token budget.
    prepared = load_data(out_dir, run_dir, cfg, device)
    with open(run_dir / "skipped.jsonl", "w") as fh:
        fh.writelines(json.dumps(s) + "\n" for s in prepared.skipped)
    train_set, val_set = split_validation(prepared.examples, dc.val_clips)
    loader = PackLoader(train_set, dc.batch_tokens, seed=tc.seed)

    # 2. Model, EMA and optimizer; the config is resolved against the data (channels, text width).
    cfg = replace(cfg, model=replace(cfg.model, in_channels=prepared.channels, text_dim=prepared.text_dim))
    write_config(run_dir, cfg)
    generator = seed_everything(tc.seed)
    model = build_model(cfg, device).train()
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay,
                                  foreach=True)

    # 3. Resume: weights, EMA, optimizer, data position and every random stream.
    start = 0
    ckpt = checkpoint.latest(run_dir)
    if ckpt is not None:
        resumed = checkpoint.load(ckpt, model, ema, optimizer, generator)
        start = resumed.step
        loader.load_state_dict(resumed.data_state)
        _truncate_log(run_dir, start)
        echo(f"resumed from {ckpt} at step {start}")
    result = TrainResult(str(run_dir), start, start, num_clips=len(prepared.examples),
                         skipped=len(prepared.skipped), parameters=count_parameters(model))
    echo(f"training {result.parameters:,} parameters on {len(train_set)} clips ({len(val_set)} validation, "
         f"{len(prepared.skipped)} skipped) on {device}, steps {start} -> {tc.steps}")

    # 4. The loop.
    for step in range(start, tc.steps):
        t0 = time.perf_counter()
        pack = loader.next()
        dropped = torch.rand(len(pack), generator=generator) < dc.caption_dropout  # caption dropout for CFG
        texts = [prepared.null_text if d else e.text for e, d in zip(pack, dropped.tolist())]
        batch = collate(pack, pad_multiple=dc.pad_multiple, texts=texts).to(device)
        stats = train_step(model, ema, optimizer, batch, generator, cfg, step)
        result.losses.append(stats["loss"])
        result.step = step + 1
        dt = time.perf_counter() - t0
        if (step + 1) % tc.log_every == 0 or step == start or step + 1 == tc.steps:
            _append_log(run_dir, {"step": step + 1, **stats, "clips": len(pack), "real_tokens": batch.real_tokens,
                                  "tokens": int(batch.x0.shape[1]), "step_s": dt,
                                  "tokens_per_s": batch.real_tokens / dt}, echo)
        if val_set and ((step + 1) % tc.val_every == 0 or step + 1 == tc.steps):
            val = validation_loss(model, val_set, prepared, cfg, device)
            val_ema = validation_loss(ema, val_set, prepared, cfg, device)
            result.val_losses.append((step + 1, val))
            _append_log(run_dir, {"step": step + 1, "val_loss": val, "val_loss_ema": val_ema}, echo)
        if (step + 1) % tc.checkpoint_every == 0 or step + 1 == tc.steps:
            checkpoint.save(run_dir, step + 1, model, ema, optimizer, generator, loader.state_dict())

    store.update_summary(out_dir, "train", {
        "run_dir": str(run_dir), "step": result.step, "clips": result.num_clips, "skipped": result.skipped,
        "parameters": result.parameters, "last_loss": result.losses[-1] if result.losses else None,
        "last_val_loss": result.val_losses[-1][1] if result.val_losses else None})
    return result
