"""From a captions manifest to packed token sequences.

1. :func:`rushes.manifests.clips.captioned_clips` gives the kept clips with an ok caption: one
   :class:`~rushes.manifests.clips.KeptClip` per clip (an encoded clip file, or a span of its source video when
   curate ran with ``--no-encode``), in the one time base every stage decodes in.
2. :func:`plan_clip` picks each clip's frame count (at ``fps``, at most ``max_frames``) and the largest
   size keeping its aspect ratio whose token count fits ``clip_tokens``. No bucket tables.
3. :func:`prepare` decodes the frames once with PyAV (``rushes.media.frames``), normalises them to [-1, 1],
   encodes them with the optional VAE, embeds captions with the frozen text encoder, cuts spacetime
   patches, and caches everything under ``cache_dir`` so later epochs and resumed runs read tensors.
   A clip that fails to decode is skipped and reported, never stopping the run.
4. :func:`split_validation` holds clips out by a hash of their id. Packing the rest into sequences is
   train/packing.py.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rushes import storage
from rushes.manifests.clips import KeptClip
from rushes.manifests.store import ManifestError
from rushes.manifests.ids import make_id
from rushes.media import frames as mframes
from rushes.train.encoders import latent_frames, pixel_frames
from rushes.train.model import patchify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipPlan:
    """Decode size of one clip and its token grid."""

    frames: int  # pixel frames to decode
    width_px: int
    height_px: int
    grid: tuple[int, int, int]  # (gt, gh, gw) tokens

    @property
    def tokens(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]


def plan_clip(width: int, height: int, duration_s: float, fps: float, max_frames: int, clip_tokens: int,
              patch: tuple[int, int, int], max_side_px: int, temporal_factor: int = 1,
              spatial_factor: int = 1) -> ClipPlan | None:
    """Frame count (at ``fps``, at most ``max_frames``) and the largest aspect-keeping size such that a
    clip of ``max_frames`` fits ``clip_tokens``; None when the clip is too short for one token in time.

    ``temporal_factor``/``spatial_factor`` are the VAE's compression (1 in pixel space); frames map to
    latent frames as :func:`rushes.train.encoders.latent_frames` says.
    """
    pt, ph, pw = patch
    n = min(max_frames, int(math.floor(duration_s * fps + 1e-6)))
    gt_max = max(1, min(latent_frames(max_frames, temporal_factor) // pt, clip_tokens))
    gt = min(latent_frames(n, temporal_factor) // pt, gt_max)
    if gt < 1 or width < 1 or height < 1:
        return None
    frames = pixel_frames(gt * pt, temporal_factor)
    uh, uw = ph * spatial_factor, pw * spatial_factor  # pixels per token along rows and columns
    # The frame size comes from the budget of a full-length clip, so a shorter clip keeps the resolution
    # and has fewer tokens (native duration): resolution never depends on how long a shot lasts.
    area = clip_tokens // gt_max
    scale = min(math.sqrt(area / ((width / uw) * (height / uh))), 1.0, max_side_px / max(width, height))
    gw, gh = max(1, int(width * scale / uw)), max(1, int(height * scale / uh))
    while gw * gh > area:  # only for extreme aspect ratios, where max(1, .) rounded a side up
        gw, gh = (gw - 1, gh) if gw >= gh else (gw, gh - 1)
    return ClipPlan(frames, gw * uw, gh * uh, (gt, gh, gw))


def decode_rgb(src: KeptClip, plan: ClipPlan, fps: float, scratch: storage.Scratch | None = None) -> np.ndarray:
    """Frames of ``src`` at ``fps`` resized to the plan's size: (T, H, W, 3) uint8 (what `rushes encode` stores).
    A clip in a bucket is read from a copy in ``scratch`` (default: ``storage.Scratch()``), removed after."""
    if src.refused:
        raise ManifestError(src.refused)
    times = [src.start_s + (i + 0.5) / fps for i in range(plan.frames)]  # the plan's frames at fps from the start
    with storage.readable(src.path, scratch) as path:  # a clip in a bucket: a local copy while it decodes
        got = mframes.sample_frames(path, times, size=(plan.width_px, plan.height_px))
    if len(got) < plan.frames:
        raise mframes.DecodeError(f"{src.path}: decoded {len(got)} of {plan.frames} frames of clip {src.clip_id}")
    return np.stack([f.rgb for f in got])  # (T, H, W, 3) uint8


def rgb_to_video(rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames -> (3, T, H, W) float32 in [-1, 1], as the model and the VAE take them."""
    frames = torch.from_numpy(rgb) if isinstance(rgb, np.ndarray) else rgb
    return frames.permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def decode_clip(src: KeptClip, plan: ClipPlan, fps: float) -> torch.Tensor:
    """Frames of ``src`` at ``fps`` resized to the plan's size: (3, T, H, W) float32 in [-1, 1]."""
    return rgb_to_video(decode_rgb(src, plan, fps))


@dataclass
class Example:
    """A prepared clip: patch tokens of its (latent) video and its caption embedding."""

    clip_id: str
    caption: str
    tokens: torch.Tensor  # (N, patch_dim) float32
    grid: tuple[int, int, int]
    text: torch.Tensor  # (Lt, text_dim) float32, valid tokens only

    @property
    def num_tokens(self) -> int:
        return self.tokens.shape[0]


@dataclass
class Prepared:
    """The prepared training set: examples, the empty-caption embedding (for guidance), and skipped clips."""

    examples: list[Example]
    null_text: torch.Tensor  # (Lt, text_dim)
    skipped: list[dict]
    channels: int  # channels of the (latent) video: 3 in pixel space
    text_dim: int


def cache_key(data_cfg, patch: tuple[int, int, int]) -> str:
    """Hash of everything that shapes a cached tensor: change any of it and clips are decoded again."""
    fields = ("fps", "max_frames", "clip_tokens", "max_side_px", "text_encoder", "max_text_tokens", "vae",
              "vae_subfolder")
    from rushes.train.shards import optional_inputs

    return make_id("train-cache", {**{f: getattr(data_cfg, f) for f in fields}, **optional_inputs(data_cfg)},
                   list(patch), length=12)


def prepare(sources: Sequence[KeptClip], data_cfg, patch: tuple[int, int, int], cache_dir: str | os.PathLike,
            text_encoder_fn: Callable[[], object], vae_fn: Callable[[], object | None]) -> Prepared:
    """Decode, encode and embed every clip once (or read it from ``cache_dir``); see the module doc.

    ``text_encoder_fn``/``vae_fn`` build the encoders lazily, so a fully cached set never loads them.
    """
    cache = Path(cache_dir) / cache_key(data_cfg, patch)
    cache.mkdir(parents=True, exist_ok=True)
    enc: dict = {}

    def text_encoder():
        if "text" not in enc:
            enc["text"] = text_encoder_fn()
        return enc["text"]

    def vae():
        if "vae" not in enc:
            enc["vae"] = vae_fn()
        return enc["vae"]

    null_text = _cached_text(cache / "null-caption.safetensors", "", text_encoder)
    examples, skipped = [], []
    for src in sources:
        try:
            examples.append(_prepare_one(src, data_cfg, patch, cache, text_encoder, vae))
        except (mframes.DecodeError, ValueError, OSError) as exc:  # bad input: skip and report, never stop
            skipped.append({"clip_id": src.clip_id, "path": src.path, "error": str(exc)})
            log.warning("skipping clip %s: %s", src.clip_id, exc)
    if not examples:
        raise ValueError(f"none of {len(sources)} clips could be prepared; first error: "
                         f"{skipped[0]['error'] if skipped else 'none'}")
    channels = examples[0].tokens.shape[1] // (patch[0] * patch[1] * patch[2])
    return Prepared(examples, null_text, skipped, channels, null_text.shape[-1])


def _cached_text(path: Path, caption: str, text_encoder) -> torch.Tensor:
    if path.exists():
        return load_file(path)["text"]
    emb, mask = text_encoder().encode([caption])
    text = emb[0][mask[0]].contiguous()  # (Lt, D) valid tokens only
    _save_atomic({"text": text}, path, {})
    return text


def _prepare_one(src: KeptClip, data_cfg, patch, cache: Path, text_encoder, vae) -> Example:
    if src.refused:  # a row that names a file outside OUT or a span that is not a time: skipped, never read
        raise ManifestError(src.refused)
    path = cache / f"{src.clip_id}-{make_id(src.caption, length=8)}.safetensors"
    if path.exists():
        t = load_file(path)
        meta = json.loads(t["meta"].numpy().tobytes().decode())
        return Example(src.clip_id, src.caption, t["tokens"], tuple(meta["grid"]), t["text"])
    v = vae()
    tf, sf = (v.temporal_factor, v.spatial_factor) if v is not None else (1, 1)
    plan = plan_clip(src.width_px, src.height_px, src.end_s - src.start_s, data_cfg.fps, data_cfg.max_frames,
                     data_cfg.clip_tokens, patch, data_cfg.max_side_px, tf, sf)
    if plan is None:
        raise ValueError(f"clip {src.clip_id} is too short ({src.end_s - src.start_s:.2f}s) or has no size for "
                         f"{patch[0]} frame(s) at {data_cfg.fps} fps; lower --fps or filter short clips out")
    video = decode_clip(src, plan, data_cfg.fps)  # (3, T, H, W)
    latent = v.encode(video) if v is not None else video  # (C, T', H', W')
    tokens, grid = patchify(latent, patch)  # (N, patch_dim)
    emb, mask = text_encoder().encode([src.caption])
    text = emb[0][mask[0]].contiguous()
    meta = torch.frombuffer(bytearray(json.dumps({"grid": list(grid)}).encode()), dtype=torch.uint8)
    _save_atomic({"tokens": tokens.contiguous(), "text": text, "meta": meta}, path, {"clip_id": src.clip_id})
    return Example(src.clip_id, src.caption, tokens, grid, text)


def _save_atomic(tensors: dict, path: Path, metadata: dict) -> None:
    tmp = path.with_name(f"_tmp-{path.name}-{os.getpid()}")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def split_validation(examples: Sequence[Example], val_clips: int) -> tuple[list[Example], list[Example]]:
    """(train, val): ``val_clips`` clips chosen by a hash of their id; with a single clip it is both."""
    if len(examples) < 2 or val_clips == 0:
        return list(examples), list(examples[:1]) if val_clips else []
    ranked = sorted(examples, key=lambda e: make_id("val", e.clip_id))
    k = min(val_clips, len(examples) - 1)
    val_ids = {e.clip_id for e in ranked[:k]}
    return [e for e in examples if e.clip_id not in val_ids], [e for e in examples if e.clip_id in val_ids]
