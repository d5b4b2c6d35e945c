"""Frames a captioner sees: N per clip (uniform, or at a given fps), at the model's input size.

Frames come from the encoded clip file when curate wrote one, else from the source video between
the clip's ``start_s`` and ``end_s``; both are decoded with ``rushes.media.frames.sample_frames``, which picks
the frame shown at each time (VFR-safe) in display orientation. Times are always reported in the
source video's PTS seconds, so ``frame_times_s`` lies inside the clip span either way.

Usage::

    spec = FrameSpec(max_side=384)
    times = frame_times(2.0, 6.0, num_frames=8)
    clip = decode_clip("clips/abc.mp4", times, offset_s=2.0, size=spec.size_for(1280, 720))
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rushes.media.frames import even, fps_times, sample_frames, stream_info, uniform_times
from rushes.media.images import probe_image, read_image


@dataclass(frozen=True)
class FrameSpec:
    """Largest frame a model wants: a cap on the long side and/or on the pixel count (Qwen-style)."""

    max_side: int | None = None
    max_pixels: int | None = None

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) to decode a ``width`` x ``height`` display frame at: aspect kept, never upscaled."""
        scale = 1.0
        if self.max_side:
            scale = min(scale, self.max_side / max(width, height))
        if self.max_pixels:
            scale = min(scale, math.sqrt(self.max_pixels / (width * height)))
        return even(width * scale), even(height * scale)


@dataclass(frozen=True)
class ClipFrames:
    """Decoded frames of one clip: ``rgb`` is (T, H, W, 3) uint8, ``times_s`` the source PTS of each frame."""

    rgb: np.ndarray
    times_s: list[float]
    still: bool = False  # a still image (one frame): the model gets it as an image, not a video

    @property
    def sampled_fps(self) -> float:
        """Frames per second of the sample (what video processors call the video's fps)."""
        if len(self.times_s) < 2:
            return 1.0
        span = self.times_s[-1] - self.times_s[0]
        return (len(self.times_s) - 1) / span if span > 0 else 1.0


def frames_sha256(rgb: np.ndarray) -> str:
    """sha256 of the exact frames a model is given: ``b'TxHxWx3:'`` then the (T, H, W, 3) uint8 RGB bytes
    (``captions.frames_sha256``; a caption found beside another clip's hash was misassigned)."""
    arr = np.ascontiguousarray(rgb, dtype=np.uint8)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8 RGB, got shape {arr.shape}")
    t, h, w, c = arr.shape
    digest = hashlib.sha256(f"{t}x{h}x{w}x{c}:".encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()


def window_spans(start_s: float, end_s: float, window_s: float) -> list[tuple[float, float]]:
    """Windows of ``window_s`` seconds over [start_s, end_s); a last piece shorter than half a window joins the one
    before it. A clip that would make one window only has none (its clip-level caption covers it)."""
    if window_s <= 0 or end_s - start_s <= window_s:
        return []
    edges = [start_s]
    while end_s - edges[-1] > window_s:
        edges.append(edges[-1] + window_s)
    if end_s - edges[-1] < window_s / 2 and len(edges) > 1:
        edges.pop()
    edges.append(end_s)
    if len(edges) < 3:  # one window would be the clip itself
        return []
    return [(round(a, 6), round(b, 6)) for a, b in zip(edges, edges[1:])]


def frame_times(start_s: float, end_s: float, num_frames: int, fps: float | None = None) -> list[float]:
    """Source times to sample over [start_s, end_s): ``num_frames`` uniform, or ``fps`` capped to ``num_frames``."""
    if end_s <= start_s:
        raise ValueError(f"empty clip span [{start_s}, {end_s}); check the clip's start_s/end_s")
    if fps:
        return fps_times(start_s, end_s, fps, max_frames=num_frames)
    return uniform_times(start_s, end_s, num_frames)


def display_dims(path: str, width: int | None, height: int | None) -> tuple[int, int]:
    """Display size from the manifest when known, else probed from the file."""
    if width and height:
        return int(width), int(height)
    info = stream_info(path)
    return info.width_px, info.height_px


def decode_clip(path: str, times_s: Sequence[float], offset_s: float = 0.0,
                size: tuple[int, int] | None = None) -> ClipFrames:
    """Decode the frames shown at source ``times_s`` from ``path``, whose time 0 is source time ``offset_s``.

    For an encoded clip file ``offset_s`` is the clip's ``start_s``; for the source video it is 0.
    Raises ``rushes.media.frames.DecodeError`` when the file does not decode.
    """
    local = [max(0.0, t - offset_s) for t in times_s]
    frames = sample_frames(path, local, size=size)
    rgb = np.stack([f.rgb for f in frames])
    return ClipFrames(rgb=rgb, times_s=[float(t) for t in times_s])


def decode_still(path: str, spec: FrameSpec, width: int | None = None, height: int | None = None) -> ClipFrames:
    """A still image as the model sees it: one frame (1, H, W, 3) at ``spec``'s size, display orientation, at
    time 0. Raises ``rushes.media.images.ImageError`` when it does not decode."""
    if not (width and height):
        info = probe_image(path)
        width, height = info.width_px, info.height_px
    rgb = read_image(path, size=spec.size_for(int(width), int(height)))
    return ClipFrames(rgb=rgb[None], times_s=[0.0], still=True)
