"""From a captions manifest to packed token sequences.

1. :func:`rushes.manifests.clips.captioned_clips` gives the kept clips with an ok caption: one
   :class:`~rushes.manifests.clips.KeptClip` per clip (an encoded clip file, or a span of its source video when
   curate ran with ``--no-encode``), in the one time base every stage decodes in.
2. :func:`plan_clip` picks each clip's frame count (at ``fps``, at most ``max_frames``, spread over its whole span:
   :func:`frame_times`) and the largest size keeping its aspect ratio whose token count fits ``clip_tokens``; a
   still image (``kind = 'image'``) is one frame at the largest size fitting ``image_tokens`` (:func:`plan_still`).
   No bucket tables.
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rushes import storage
from rushes.manifests.clips import KeptClip, source_clip_id
from rushes.manifests.store import ManifestError
from rushes.manifests.ids import make_id
from rushes.media import frames as mframes
from rushes.media.images import ImageError, read_image
from rushes.train.encoders import latent_frames, pixel_frames, text_token_budget
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
    # The frame size comes from the budget of a full-length clip, so a shorter clip keeps the resolution
    # and has fewer tokens (native duration): resolution never depends on how long a shot lasts.
    return _sized(width, height, clip_tokens // gt_max, frames, gt, patch, max_side_px, spatial_factor)


def plan_still(width: int, height: int, image_tokens: int, patch: tuple[int, int, int], max_side_px: int,
               spatial_factor: int = 1) -> ClipPlan | None:
    """A still image as a one-frame clip: the largest aspect-keeping size whose tokens fit ``image_tokens``; None
    when a token spans more than one frame (``patch[0] > 1``) or the image has no size. A causal video VAE keeps
    one frame as one latent frame."""
    if patch[0] != 1 or width < 1 or height < 1:
        return None
    return _sized(width, height, image_tokens, 1, 1, patch, max_side_px, spatial_factor)


def _sized(width: int, height: int, area: int, frames: int, gt: int, patch: tuple[int, int, int], max_side_px: int,
           spatial_factor: int) -> ClipPlan:
    """The plan of ``frames`` frames (``gt`` tokens in time) at the largest size of at most ``area`` tokens per
    frame, keeping aspect, never upscaled, no side over ``max_side_px``."""
    uh, uw = patch[1] * spatial_factor, patch[2] * spatial_factor  # pixels per token along rows and columns
    scale = min(math.sqrt(area / ((width / uw) * (height / uh))), 1.0, max_side_px / max(width, height))
    gw, gh = max(1, int(width * scale / uw)), max(1, int(height * scale / uh))
    while gw * gh > area:  # only for extreme aspect ratios, where max(1, .) rounded a side up
        gw, gh = (gw - 1, gh) if gw >= gh else (gw, gh - 1)
    return ClipPlan(frames, gw * uw, gh * uh, (gt, gh, gw))


def plan_source(src: KeptClip, data_cfg, patch: tuple[int, int, int], temporal_factor: int = 1,
                spatial_factor: int = 1) -> ClipPlan:
    """The plan of a clip or a still of the training set; raises ValueError naming the fix when it has none."""
    d = data_cfg
    if src.still:
        plan = plan_still(src.width_px, src.height_px, d.image_tokens or d.clip_tokens, patch, d.max_side_px,
                          spatial_factor)
        if plan is None:
            raise ValueError(f"still {src.clip_id} cannot be trained with patch_size {tuple(patch)} (a token spans "
                             f"{patch[0]} frames; a still has one) or has no size; use a patch of 1 frame or filter "
                             f"stills out (--where \"kind = 'video'\")")
        return plan
    plan = plan_clip(src.width_px, src.height_px, src.end_s - src.start_s, d.fps, d.max_frames, d.clip_tokens, patch,
                     d.max_side_px, temporal_factor, spatial_factor)
    if plan is None:
        raise ValueError(f"clip {src.clip_id} is too short ({src.end_s - src.start_s:.2f}s) or has no size for "
                         f"{patch[0]} frame(s) at {d.fps} fps; lower --fps or filter short clips out")
    return plan


def frame_times(start_s: float, end_s: float, frames: int, fps: float) -> list[float]:
    """When a clip's ``frames`` training frames are shown: across the whole span [start_s, end_s) its caption
    describes, never only its head.

    A span with no more than ``frames`` frames at ``fps`` is sampled at ``fps``, centred in the span; a longer one
    at the centres of ``frames`` equal parts of it (a lower rate, ``frames / duration``). Either way each frame
    stands for one step of the span around it, the steps are contiguous, and less than half a step is left out
    at each end. Why not windows of the span at ``fps``: docs/train.md ("Whole span")."""
    span = end_s - start_s
    if frames < 1 or not span > 0:
        return []
    if math.floor(span * fps + 1e-6) > frames:  # more frames than the plan holds: spread them over the span
        return mframes.uniform_times(start_s, end_s, frames)
    lead = max(0.0, (span - frames / fps) / 2)  # the frames at fps, centred
    return [start_s + lead + (i + 0.5) / fps for i in range(frames)]


def decode_rgb(src: KeptClip, plan: ClipPlan, fps: float, scratch: storage.Scratch | None = None) -> np.ndarray:
    """Frames of ``src`` at ``fps`` resized to the plan's size: (T, H, W, 3) uint8 (what `rushes encode` stores).
    A clip in a bucket is read from a copy in ``scratch`` (default: ``storage.Scratch()``), removed after."""
    if src.refused:
        raise ManifestError(src.refused)
    if src.still:  # one frame: the image itself, in display orientation
        with storage.readable(src.path, scratch) as path:
            try:
                return read_image(path, size=(plan.width_px, plan.height_px))[None]  # (1, H, W, 3)
            except ImageError as exc:
                raise mframes.DecodeError(str(exc)) from exc
    times = frame_times(src.start_s, src.end_s, plan.frames, fps)  # across the whole span the caption describes
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
    caption_tokens: int | None = None  # the caption's tokens before the cut to max_text_tokens (None: unknown)
    kind: str = "video"  # or "image": a still trained as a one-frame clip

    @property
    def still(self) -> bool:
        return self.kind == "image"

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
    over_budget: list[str] = field(default_factory=list)  # ids of clips whose caption was cut to max_text_tokens


def cache_key(data_cfg, patch: tuple[int, int, int]) -> str:
    """Hash of everything that shapes a cached tensor: change any of it and clips are decoded again."""
    fields = ("fps", "max_frames", "clip_tokens", "image_tokens", "max_side_px", "text_encoder", "max_text_tokens",
              "vae", "vae_subfolder")
    from rushes.train.shards import optional_inputs

    # "frames": how a clip's frames are chosen (span: across its whole span, frame_times)
    values = {**{f: getattr(data_cfg, f) for f in fields}, "max_text_tokens": budget(data_cfg),
              **optional_inputs(data_cfg)}
    return make_id("train-cache", values, list(patch), {"frames": "span"}, length=12)


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
    over = [e.clip_id for e in examples if e.caption_tokens is not None and e.caption_tokens > budget(data_cfg)]
    return Prepared(examples, null_text, skipped, channels, null_text.shape[-1], over)


def budget(data_cfg) -> int:
    """The caption token budget of ``data_cfg``: its ``max_text_tokens``, else the text encoder's default (what
    rushes.train.plan.with_text_budget records in a run's config)."""
    return text_token_budget(data_cfg.text_encoder, data_cfg.max_text_tokens, data_cfg.text_encoder_subfolder)


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
        return Example(src.clip_id, src.caption, t["tokens"], tuple(meta["grid"]), t["text"],
                       meta.get("caption_tokens"), src.kind)
    v = vae()
    tf, sf = (v.temporal_factor, v.spatial_factor) if v is not None else (1, 1)
    plan = plan_source(src, data_cfg, patch, tf, sf)
    video = decode_clip(src, plan, data_cfg.fps)  # (3, T, H, W)
    latent = v.encode(video) if v is not None else video  # (C, T', H', W')
    tokens, grid = patchify(latent, patch)  # (N, patch_dim)
    emb, mask = text_encoder().encode([src.caption])
    text = emb[0][mask[0]].contiguous()
    caption_tokens = text_encoder().token_counts([src.caption])[0]
    meta = torch.frombuffer(bytearray(json.dumps({"grid": list(grid), "caption_tokens": caption_tokens}).encode()),
                            dtype=torch.uint8)
    _save_atomic({"tokens": tokens.contiguous(), "text": text, "meta": meta}, path, {"clip_id": src.clip_id})
    return Example(src.clip_id, src.caption, tokens, grid, text, caption_tokens, src.kind)


def _save_atomic(tensors: dict, path: Path, metadata: dict) -> None:
    tmp = path.with_name(f"_tmp-{path.name}-{os.getpid()}")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def split_validation(examples: Sequence[Example], val_clips: int) -> tuple[list[Example], list[Example]]:
    """(train, val): ``val_clips`` clips chosen by a hash of their id, with every window example of a chosen clip
    (a clip's windows never sit on both sides); with a single clip it is both."""
    clips = sorted({source_clip_id(e.clip_id) for e in examples}, key=lambda c: make_id("val", c))
    if len(clips) < 2 or val_clips == 0:
        return list(examples), list(examples[:1]) if val_clips else []
    held = set(clips[:min(val_clips, len(clips) - 1)])
    return ([e for e in examples if source_clip_id(e.clip_id) not in held],
            [e for e in examples if source_clip_id(e.clip_id) in held])
