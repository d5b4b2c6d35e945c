"""What ``rushes sample`` starts from besides a prompt: a still to animate, a last frame, a clip to extend or edit.

Inputs of any size are fitted to the output size as training fits clips (aspect kept): the largest centred crop of
the output's aspect, resized with an area filter (:func:`fit_frames`). Stills are read by ``rushes.media.images``,
clips decoded by PyAV through ``rushes.media.frames`` at the run's fps. An input that does not read is an
:class:`InputError` naming it and the fix (``rushes sample`` prints it as one line and exits 2).

:func:`condition` turns the inputs into a :class:`Given`: the clean (latent) tokens, which of them are given
(frames at t = 0, rushes.train.conditioning's tasks), the SDEdit strength, and the pixel frames kept as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rushes.media import frames as mframes
from rushes.media.images import ImageError, read_image


class InputError(ValueError):
    """An input of ``rushes sample`` that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class Inputs:
    """The material a sample starts from (all optional; none: text-to-video)."""

    image: str | None = None  # a still: the first frame
    last_image: str | None = None  # a still: the last frame
    video: str | None = None  # a clip: extended by extend_s seconds, or edited at strength
    extend_s: float | None = None
    strength: float | None = None  # SDEdit: 0 returns the input, 1 is text-to-video

    def check(self) -> Inputs:
        """Itself when the combination makes sense, else InputError naming the fix."""
        if self.video is None and (self.extend_s is not None or self.strength is not None):
            raise InputError("--extend-s and --strength act on a clip: give it with --video clip.mp4")
        if self.video is not None and (self.extend_s is None) == (self.strength is None):
            raise InputError(f"--video {self.video}: say what to do with it: --extend-s S (continue it) or "
                             f"--strength 0..1 (edit it), one of the two")
        if self.video is not None and (self.image or self.last_image) and self.strength is not None:
            raise InputError("--strength edits a clip as a whole: leave --image/--last-image out")
        if self.strength is not None and not 0.0 <= self.strength <= 1.0:
            raise InputError(f"--strength {self.strength} must be in 0..1 (0: the input as it is, 1: a new clip)")
        if self.extend_s is not None and not self.extend_s > 0:
            raise InputError(f"--extend-s {self.extend_s} must be > 0 seconds")
        return self

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.image, self.last_image, self.video))


def fit_frames(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames fitted to (height, width): the largest centred crop of that aspect, resized with an
    area filter (a bilinear one when enlarging): (T, height, width, 3) uint8."""
    t, h, w, _ = rgb.shape
    if (h, w) == (height, width):
        return rgb
    scale = min(h / height, w / width)
    ch, cw = min(h, round(height * scale)), min(w, round(width * scale))
    top, left = (h - ch) // 2, (w - cw) // 2
    x = torch.from_numpy(np.ascontiguousarray(rgb[:, top:top + ch, left:left + cw])).permute(0, 3, 1, 2).float()
    mode = "area" if ch >= height else "bilinear"
    x = F.interpolate(x, size=(height, width), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def read_still(path: str, height: int, width: int) -> np.ndarray:
    """A still fitted to (height, width): (1, height, width, 3) uint8; InputError when it does not read."""
    try:
        rgb = read_image(path)
    except (ImageError, OSError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {_first_line(exc)}; give a readable still (png, jpg, webp...)") \
            from None
    return fit_frames(rgb[None], height, width)


def read_clip(path: str, fps: float, count: int | None, height: int, width: int, tail: bool = False) -> np.ndarray:
    """``count`` frames of a clip at ``fps`` (all of them when None), its first ones (``tail``: its last ones), fitted
    to (height, width): (T, height, width, 3) uint8; InputError when it does not decode or is too short."""
    try:
        info = mframes.stream_info(path)
        duration = info.duration_s or 0.0
        have = int(math.floor(duration * fps + 1e-6))
        if have < 1:
            raise InputError(f"--video {path} is too short ({duration:.2f}s) for one frame at {fps} fps")
        n = have if count is None else count
        if n > have:
            raise InputError(f"--video {path} has {have} frames at {fps} fps, {n} are needed; give a longer clip "
                             f"or fewer --frames")
        first = have - n if tail else 0
        got = mframes.sample_frames(path, [(first + i + 0.5) / fps for i in range(n)])
    except (mframes.DecodeError, OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot decode video {path}: {_first_line(exc)}; give a readable clip (mp4, mov, mkv...)") \
            from None
    return fit_frames(np.stack([f.rgb for f in got]), height, width)


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


@dataclass
class Given:
    """What a sample is conditioned on, in the model's tokens: ``tokens`` (N, patch_dim) clean, ``cond`` (N,) bool
    (the given tokens, at t = 0; None: none), ``strength`` (SDEdit: start at this t from the noised tokens; None: from
    noise), and ``keep`` {pixel frame: (H, W, 3) uint8} written into the output as given (an extended clip's prefix)."""

    tokens: torch.Tensor
    cond: torch.Tensor | None = None
    strength: float | None = None
    keep: dict | None = None


def to_video(rgb: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float32 in [-1, 1] (as training takes frames)."""
    return torch.from_numpy(rgb).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)
