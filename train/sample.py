"""Sampling from a trained run: Euler steps with classifier-free guidance, written as a playable MP4.

Use::

    from rushes.train.sample import sample_to_file
    sample_to_file("runs/tiny", "a dog runs on a beach", "dog.mp4", frames=8, size=(64, 64))

or ``rushes sample RUN_DIR --prompt "..." --frames 8 --size 64x64 --out dog.mp4``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rushes import storage
from rushes.progress import CountProgress
from rushes.media.frames import write_video
from rushes.train import checkpoint, parallel, rundir
from rushes.train.config import RunConfig
from rushes.train.diffusion import euler_sample, resolution_shift
from rushes.train.encoders import TextEncoder, Vae, latent_frames, pixel_frames
from rushes.train.model import DiffusionTransformer, grid_positions, unpatchify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shape:
    """Requested output: pixel frames and size, with the latent grid that makes it."""

    frames: int
    height_px: int
    width_px: int
    grid: tuple[int, int, int]


def resolve_shape(cfg: RunConfig, frames: int, height: int, width: int, temporal_factor: int = 1,
                  spatial_factor: int = 1) -> Shape:
    """Check that frames/size fit the patch grid (and VAE), raising a ValueError that names valid values."""
    pt, ph, pw = cfg.model.patch_size
    uh, uw = ph * spatial_factor, pw * spatial_factor
    latent = latent_frames(frames, temporal_factor)
    if frames < 1 or pixel_frames(latent, temporal_factor) != frames or latent % pt:
        step = pt * temporal_factor
        hint = f"1 + a multiple of {step}" if temporal_factor > 1 else f"a multiple of {pt}"
        raise ValueError(f"--frames {frames} does not fit this model; use {hint}")
    if height < uh or width < uw or height % uh or width % uw or height % 2 or width % 2:
        raise ValueError(f"--size {height}x{width} does not fit this model: height must be a multiple of {uh} "
                         f"and width of {uw} (and both even), e.g. {max(uh, height // uh * uh)}x"
                         f"{max(uw, width // uw * uw)}")
    return Shape(frames, height, width, (latent // pt, height // uh, width // uw))


def load_run(run_dir: str | os.PathLike, device, use_ema: bool = True) -> tuple[RunConfig, DiffusionTransformer]:
    """The resolved config and the (EMA) model of a run's newest checkpoint (a folder or a bucket RUN)."""
    saved = rundir.read_config(run_dir)
    if saved is None:
        raise FileNotFoundError(f"{storage.join(run_dir, 'config.json')} not found: {run_dir} is not a training "
                                f"run; run `rushes train` first")
    cfg = RunConfig.from_dict(saved)
    with rundir.working_copy(run_dir, files=(checkpoint.weights_name(use_ema),)) as local:  # a bucket RUN: downloaded
        ckpt = checkpoint.latest(local, need=(checkpoint.weights_name(use_ema),))
        if ckpt is None:
            raise FileNotFoundError(f"no checkpoint in {storage.join(run_dir, rundir.CHECKPOINTS)}; train for at "
                                    f"least one checkpoint")
        model = DiffusionTransformer(cfg.model)
        checkpoint.load_weights(ckpt, model, use_ema=use_ema)
    return cfg, model.to(device).eval()


@torch.no_grad()
def generate(model: DiffusionTransformer, text: torch.Tensor, null_text: torch.Tensor, grid: tuple[int, int, int],
             steps: int, guidance: float, shift: float, seed: int = 0, progress: CountProgress | None = None
             ) -> torch.Tensor:
    """Sample the tokens (N, patch_dim) of one clip of ``grid`` for caption embedding ``text`` (Lt, D);
    ``progress`` counts the Euler steps as they finish."""
    device = next(model.parameters()).device
    n = grid[0] * grid[1] * grid[2]
    noise = torch.randn(1, n, model.cfg.patch_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    pos = grid_positions(grid, device)[None]  # (1, N, 3)
    seq = torch.zeros(1, n, dtype=torch.long, device=device)  # (1, N) a single clip in slot 0
    conds = {True: text, False: null_text}
    calls, per_step = [0], (2 if guidance != 1.0 else 1)  # model calls per Euler step (guided: with and without)

    def velocity(x, t, conditional):
        emb = conds[conditional].to(device)
        mask = torch.ones(1, 1, emb.shape[0], dtype=torch.bool, device=device)
        v = model(x, t, emb[None, None], mask, pos, seq)
        calls[0] += 1
        if progress is not None and calls[0] % per_step == 0:
            progress.update()
        return v

    return euler_sample(velocity, noise, num_slots=1, steps=steps, shift=shift, guidance=guidance)[0]


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def write_mp4(frames: np.ndarray, path: str | os.PathLike, fps: float) -> Path:
    """Write (T, H, W, 3) uint8 frames as H.264 yuv420p MP4 (even sizes required) via ``rushes.media.frames``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(str(path), frames, fps)
    return path


def sample_video(run_dir, prompt: str, frames: int, size: tuple[int, int], steps: int | None = None,
                 guidance: float | None = None, seed: int = 0, use_ema: bool = True, device=None,
                 negative_prompt: str = "") -> tuple[torch.Tensor, RunConfig]:
    """Generate one clip for ``prompt``: video (3, T, H, W) in [-1, 1] and the run's config."""
    device = parallel.torch_device(device)  # checked before the run is read
    cfg, model = load_run(run_dir, device, use_ema)
    vae = Vae(cfg.data.vae, cfg.data.vae_subfolder, device=str(device)) if cfg.data.vae else None
    tf, sf = (vae.temporal_factor, vae.spatial_factor) if vae else (1, 1)
    shape = resolve_shape(cfg, frames, size[0], size[1], tf, sf)
    check_memory(cfg, shape, device)  # before any encoder loads: a size that cannot fit fails at once
    enc = TextEncoder(cfg.data.text_encoder, cfg.data.max_text_tokens, device=str(device))
    emb, mask = enc.encode([prompt, negative_prompt])
    text, null_text = emb[0][mask[0]], emb[1][mask[1]]
    n = shape.grid[0] * shape.grid[1] * shape.grid[2]
    shift = float(resolution_shift(torch.tensor(n), cfg.train.shift_base_tokens, cfg.train.max_shift))
    steps = steps or cfg.train.sample_steps
    with CountProgress(steps, "step", "sample", log) as progress:
        tokens = generate(model, text, null_text, shape.grid, steps, cfg.train.guidance if guidance is None
                          else guidance, shift, seed, progress)
    latent = unpatchify(tokens.float().cpu(), shape.grid, cfg.model.patch_size, cfg.model.in_channels)
    video = vae.decode(latent) if vae else latent  # (3, T, H, W)
    return video[:, :shape.frames], cfg


class SampleTooLarge(ValueError):
    """A requested clip whose sampling needs more memory than the device has."""


def sample_memory_bytes(cfg: RunConfig, grid: tuple[int, int, int], frames: int, height: int, width: int) -> int:
    """A floor on the memory one sample needs: the weights, one block's activations over every token (the
    residual stream, attention inputs and outputs, the MLP) with guidance's two passes, and the decoded video."""
    m, n = cfg.model, grid[0] * grid[1] * grid[2]
    weights = 4 * 12 * m.depth * m.hidden_size ** 2  # float32, ~12 d^2 per block
    per_token = 4 * (m.hidden_size * (8 + 2 * m.mlp_ratio) + 4 * m.patch_dim)
    video = 4 * 3 * frames * height * width * 4  # float32 frames, a few copies while decoding and writing
    return int(weights + 2 * n * per_token + video)


def available_bytes(device: torch.device) -> int:
    """Free memory of ``device``: the GPU's free memory, or the machine's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 1 << 62  # not Linux: no check


def check_memory(cfg: RunConfig, shape, device: torch.device) -> None:
    """Raise :class:`SampleTooLarge` before any work when ``shape`` cannot fit on ``device``."""
    need = sample_memory_bytes(cfg, shape.grid, shape.frames, shape.height_px, shape.width_px)
    have = available_bytes(device)
    if need > 0.8 * have:
        raise SampleTooLarge(
            f"a {shape.height_px}x{shape.width_px} clip of {shape.frames} frames is {math.prod(shape.grid):,} tokens "
            f"and needs at least {need / 2**30:.1f} GiB, but {device} has {have / 2**30:.1f} GiB free: ask for "
            f"fewer frames or a smaller size (the run trained on clips of up to {cfg.data.clip_tokens:,} tokens)")


def sample_to_file(run_dir, prompt: str, out: str | os.PathLike, frames: int, size: tuple[int, int],
                   **kwargs) -> Path:
    """:func:`sample_video`, written to ``out`` as MP4 at the run's training fps."""
    video, cfg = sample_video(run_dir, prompt, frames, size, **kwargs)
    return write_mp4(to_uint8(video), out, cfg.data.fps)
