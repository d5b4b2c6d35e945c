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
from rushes.train.diffusion import flow_sample, resolution_shift
from rushes.train.encoders import latent_frames, pixel_frames, resolve_dtypes, text_encoder_of, vae_of
from rushes.train.inputs import Given, InputError, Inputs, read_clip, read_still, to_video
from rushes.train.model import DiffusionTransformer, grid_positions, patchify, unpatchify
from rushes.train.wan import build_transformer

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
        model = build_transformer(cfg.model)  # a Wan LoRA run: the base from --init, then its adapters
        checkpoint.load_weights(ckpt, model, use_ema=use_ema)
    return cfg, model.to(device).eval()


@torch.no_grad()
def generate(model: DiffusionTransformer, text: torch.Tensor, null_text: torch.Tensor, grid: tuple[int, int, int],
             steps: int, guidance: float, shift: float, seed: int = 0, solver: str = "euler",
             progress: CountProgress | None = None, given: Given | None = None) -> torch.Tensor:
    """Sample the tokens (N, patch_dim) of one clip of ``grid`` for caption embedding ``text`` (Lt, D);
    ``progress`` counts the solver's steps as they finish. ``given`` (train/inputs.py): tokens given clean (at
    t = 0, never moved: their velocity is 0) and an SDEdit start (the input noised to ``strength`` with the same
    noise a text-to-video sample of ``seed`` starts from)."""
    device = next(model.parameters()).device
    n = grid[0] * grid[1] * grid[2]
    noise = torch.randn(1, n, model.cfg.patch_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    clean = None if given is None else given.tokens[None].float().to(device)  # (1, N, P)
    cond = None if given is None or given.cond is None else given.cond[None].to(device)  # (1, N)
    start = 1.0 if given is None or given.strength is None else float(given.strength)
    if start < 1.0:
        noise = (1.0 - start) * clean + start * noise  # the input at t = start
    if cond is not None:
        noise = torch.where(cond[..., None], clean, noise)  # given tokens: clean from the start
    pos = grid_positions(grid, device)[None]  # (1, N, 3)
    seq = torch.zeros(1, n, dtype=torch.long, device=device)  # (1, N) a single clip in slot 0
    conds = {True: text, False: null_text}
    calls, per_step = [0], (2 if guidance != 1.0 else 1)  # model calls per Euler step (guided: with and without)

    dtype = next(model.parameters()).dtype

    def velocity(x, t, conditional):  # the model in its dtype (bf16 on a GPU), the solver's state in float32
        emb = conds[conditional].to(device)
        mask = torch.ones(1, 1, emb.shape[0], dtype=torch.bool, device=device)
        v = model(x.to(dtype), t, emb[None, None], mask, pos, seq, cond).float()
        if cond is not None:
            v = v.masked_fill(cond[..., None], 0.0)  # given tokens stay as given
        calls[0] += 1
        if progress is not None and calls[0] % per_step == 0:
            progress.update()
        return v

    x = flow_sample(velocity, noise, num_slots=1, steps=steps, shift=shift, guidance=guidance, solver=solver,
                    start=start)
    return (x if cond is None else torch.where(cond[..., None], clean, x))[0]


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    return ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def write_mp4(frames: np.ndarray, path: str | os.PathLike, fps: float) -> Path:
    """Write (T, H, W, 3) uint8 frames as H.264 yuv420p MP4 (even sizes required) via ``rushes.media.frames``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(str(path), frames, fps)
    return path


@dataclass(frozen=True)
class SampleOptions:
    """How clips are drawn: steps, guidance, shift (None: the run's resolution shift for the clip's tokens), the
    solver (``euler`` or ``unipc``), the negative prompt."""

    steps: int | None = None
    guidance: float | None = None
    shift: float | None = None
    solver: str = "euler"
    negative_prompt: str = ""


class Sampler:
    """A run's model, VAE and text encoder, loaded once, drawing clips for any number of prompts and seeds.

    ``dtype`` (``auto``: bfloat16 on a GPU, float32 on CPU; encoders.resolve_dtypes) is that of the transformer
    and text encoder; the Euler/UniPC state stays float32. A LoRA run's adapters are merged first."""

    def __init__(self, run_dir, device=None, use_ema: bool = True, dtype: str = "auto"):
        from dataclasses import replace

        from rushes.train.lora import merge_adapters
        from rushes.train.wan import cast_for_inference

        self.device = parallel.torch_device(device)  # checked before the run is read
        parallel.enable_tf32(self.device)  # the VAE (float32) and any float32 path: TF32 tensor cores on CUDA
        self.dtype, _ = resolve_dtypes(dtype, self.device)
        self.cfg, model = load_run(run_dir, self.device, use_ema)
        self.model = cast_for_inference(merge_adapters(model), self.dtype)
        self.data = replace(self.cfg.data, dtype=dtype)
        self.vae = vae_of(self.data, str(self.device))
        self._text = None

    def shape(self, frames: int, size: tuple[int, int]) -> Shape:
        """The checked output shape (frames and size fit the patch grid and VAE, and the device's memory)."""
        tf, sf = (self.vae.temporal_factor, self.vae.spatial_factor) if self.vae else (1, 1)
        shape = resolve_shape(self.cfg, frames, size[0], size[1], tf, sf)
        check_memory(self.cfg, shape, self.device)  # before the text encoder loads: a size too large fails at once
        return shape

    def embed(self, texts: list[str]) -> list[torch.Tensor]:
        """Caption embeddings (Lt, D) of ``texts``, valid tokens only (the text encoder loads on first use)."""
        if self._text is None:
            self._text = text_encoder_of(self.data, str(self.device))
        emb, mask = self._text.encode(texts)
        return [e[m] for e, m in zip(emb, mask)]

    def given(self, inputs: Inputs | None, shape: Shape) -> Given | None:
        """The conditioning of ``inputs`` (read, fitted to ``shape``, encoded), or None for text-to-video."""
        if inputs is None or not inputs.check().any:
            return None
        return condition(inputs, shape, self.cfg, self.vae)

    def sample(self, text: torch.Tensor, null_text: torch.Tensor, shape: Shape, seed: int,
               opts: SampleOptions, given: Given | None = None) -> torch.Tensor:
        """One clip: video (3, T, H, W) in about [-1, 1], float32 on CPU; ``given`` (:meth:`given`): what it is
        conditioned on, its kept frames written as given."""
        cfg, n = self.cfg, math.prod(shape.grid)
        shift = opts.shift or float(resolution_shift(torch.tensor(n), cfg.train.shift_base_tokens, cfg.train.max_shift))
        steps = opts.steps or cfg.train.sample_steps
        with CountProgress(steps, "step", "sample", log) as progress:
            tokens = generate(self.model, text.to(self.dtype), null_text.to(self.dtype), shape.grid, steps,
                              cfg.train.guidance if opts.guidance is None else opts.guidance, shift, seed,
                              solver=opts.solver, progress=progress, given=given)
        latent = unpatchify(tokens.float().cpu(), shape.grid, cfg.model.patch_size, cfg.model.in_channels)
        video = (self.vae.decode(latent) if self.vae else latent)[:, :shape.frames]  # (3, T, H, W)
        for i, rgb in ((given.keep or {}) if given else {}).items():  # an extended clip's prefix: exactly as given
            video[:, i] = to_video(rgb[None])[:, 0]
        return video


def sample_video(run_dir, prompt: str, frames: int, size: tuple[int, int], steps: int | None = None,
                 guidance: float | None = None, seed: int = 0, use_ema: bool = True, device=None,
                 negative_prompt: str = "", shift: float | None = None, solver: str = "euler",
                 dtype: str = "auto", inputs: Inputs | None = None) -> tuple[torch.Tensor, RunConfig]:
    """Generate one clip for ``prompt`` (from ``inputs``: a still, a clip to extend or edit, train/inputs.py):
    video (3, T, H, W) in [-1, 1] and the run's config."""
    sampler = Sampler(run_dir, device, use_ema, dtype)
    shape = sampler.shape(frames, size)
    given = sampler.given(inputs, shape)
    text, null_text = sampler.embed([prompt, negative_prompt])
    opts = SampleOptions(steps, guidance, shift, solver, negative_prompt)
    return sampler.sample(text, null_text, shape, seed, opts, given), sampler.cfg


def output_paths(out: str | os.PathLike, count: int) -> list[Path]:
    """``out`` itself for one clip; ``NAME-000.mp4``, ``NAME-001.mp4``... beside it for several."""
    out = Path(out)
    return [out] if count == 1 else [out.with_name(f"{out.stem}-{i:03d}{out.suffix}") for i in range(count)]


def sample_to_files(run_dir, prompts: list[str], out: str | os.PathLike, frames: int, size: tuple[int, int],
                    num_samples: int = 1, seed: int = 0, fps: float | None = None, use_ema: bool = True,
                    device=None, dtype: str = "auto", options: SampleOptions | None = None, label=None,
                    inputs: Inputs | None = None) -> list[Path]:
    """``num_samples`` clips (seeds ``seed``, ``seed + 1``...) of every prompt, the run's model and encoders loaded
    once, written as MP4s at ``fps`` (the run's training fps unless given) named by :func:`output_paths`, prompt
    by prompt, each labelled as generated (``label``: :class:`rushes.train.label.LabelSettings`, default on)."""
    from rushes.train.label import check_label, labelled_mp4

    if not prompts:
        raise ValueError("no prompt to sample; give --prompt TEXT (empty: unconditional) or a --prompts file")
    opts = options or SampleOptions()
    if inputs is not None:
        inputs.check()  # a bad combination fails before the run loads
    creds = check_label(label)  # a bad key or certificate fails before any sampling
    sampler = Sampler(run_dir, device, use_ema, dtype)
    shape = sampler.shape(frames, size)
    given = sampler.given(inputs, shape)  # an unreadable input fails before any sampling
    *texts, null_text = sampler.embed(list(prompts) + [opts.negative_prompt])
    paths = output_paths(out, len(prompts) * num_samples)
    todo = [(text, seed + k) for text in texts for k in range(num_samples)]
    for path, (text, s) in zip(paths, todo):
        video = to_uint8(sampler.sample(text, null_text, shape, s, opts, given))
        labelled_mp4(video, path, fps or sampler.cfg.data.fps, run_dir, sampler.cfg.model, label, write_mp4,
                     creds=creds)
    return paths


def condition(inputs: Inputs, shape: Shape, cfg: RunConfig, vae=None) -> Given:
    """``inputs`` as the model takes them (see train/inputs.py): an edit's whole clip at ``strength``, or the
    frames given clean: an extended clip's last frames as the prefix (to a whole token frame), a still as the first
    frame, a last still as the last token frame. Read at the run's fps, fitted to ``shape``, VAE-encoded (a last
    still on its own: a causal VAE's latent of one frame)."""
    h, w, frames, gt = shape.height_px, shape.width_px, shape.frames, shape.grid[0]
    pt, tf = cfg.model.patch_size[0], (vae.temporal_factor if vae else 1)
    fps = cfg.data.fps
    if pt != 1 and (inputs.image or inputs.last_image):
        raise InputError(f"this model's tokens span {pt} frames (patch_size {tuple(cfg.model.patch_size)}): a still "
                         f"is one frame; leave --image/--last-image out")
    if inputs.strength is not None:
        return Given(_tokens(to_video(read_clip(inputs.video, fps, frames, h, w)), cfg, vae), None, inputs.strength)
    video, given, keep = torch.zeros(3, frames, h, w), set(), {}
    if inputs.video is not None:
        kt = prefix_token_frames(frames, round(inputs.extend_s * fps), pt, tf)
        if not 1 <= kt < gt:
            raise InputError(f"--extend-s {inputs.extend_s} at {fps} fps leaves {frames - round(inputs.extend_s * fps)}"
                             f" of --frames {frames} for the given clip, not one whole token frame ({pt * tf} frames) "
                             f"with one to generate after it; raise --frames or lower --extend-s")
        rgb = read_clip(inputs.video, fps, pixel_frames(kt * pt, tf), h, w, tail=True)  # the clip's last frames
        video[:, :len(rgb)], given = to_video(rgb), set(range(kt))
        keep.update(enumerate(rgb))
    if inputs.image is not None:
        rgb = read_still(inputs.image, h, w)
        video[:, 0], keep[0] = to_video(rgb)[:, 0], rgb[0]
        given.add(0)
    tokens = _tokens(video, cfg, vae)  # (N, P)
    if inputs.last_image is not None:
        rgb = read_still(inputs.last_image, h, w)
        last = _tokens(to_video(rgb), cfg, vae)  # one token frame
        tokens[-last.shape[0]:] = last
        if vae is None:
            keep[frames - 1] = rgb[0]
        given.add(gt - 1)
    cond = torch.isin(grid_positions(shape.grid)[:, 0], torch.tensor(sorted(given), dtype=torch.long))
    return Given(tokens, cond, None, keep)


def prefix_token_frames(frames: int, new: int, pt: int, tf: int) -> int:
    """Token frames of an extension's prefix: the most whose pixel frames fit ``frames - new``."""
    kt = max(0, latent_frames(max(frames - new, 0), tf) // pt)
    while kt > 0 and pixel_frames(kt * pt, tf) > frames - new:
        kt -= 1
    return kt


def _tokens(video: torch.Tensor, cfg: RunConfig, vae) -> torch.Tensor:
    """(3, T, H, W) in [-1, 1] -> (N, patch_dim) tokens of its (latent) video, float32."""
    latent = vae.encode(video) if vae is not None else video
    return patchify(latent.float().cpu(), cfg.model.patch_size)[0]


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
                   fps: float | None = None, label=None, **kwargs) -> Path:
    """:func:`sample_video`, written to ``out`` as MP4 at ``fps`` (the run's training fps unless given), labelled as
    generated (a C2PA manifest and a visible mark; ``label``: :class:`rushes.train.label.LabelSettings`, default
    on)."""
    from rushes.train.label import labelled_mp4

    video, cfg = sample_video(run_dir, prompt, frames, size, **kwargs)
    return labelled_mp4(to_uint8(video), out, fps or cfg.data.fps, run_dir, cfg.model, label, write_mp4)
