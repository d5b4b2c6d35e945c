"""Per-frame image quality scalars: brightness, contrast, sharpness, black/flat pixels, colourfulness.

Each function takes one frame at the scoring work size and returns plain floats, so a video of any
length costs a few floats per frame. Clip summaries are taken in :mod:`rushes.curate.scores`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FrameQuality:
    """Quality scalars of one frame."""

    luma_mean: float  # 0 (black) .. 1 (white)
    luma_std: float  # 0 .. 0.5
    laplacian_var: float  # variance of the 3x3 Laplacian of the coarse luma, 0..255 scale
    black_pixel_frac: float  # share of pixels darker than the black level
    colourfulness: float  # Hasler-Suesstrunk M, 0 (grey) .. ~150


def to_work_size(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """Downscale (area filter, never upscale) so the long side is at most ``long_side`` px."""
    h, w = rgb.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(2, int(round(w * scale))), max(2, int(round(h * scale))))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 luma (BT.601 weights, as OpenCV's RGB2GRAY)."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def frame_quality(rgb: np.ndarray, gray: np.ndarray, coarse: np.ndarray, black_level: float) -> FrameQuality:
    """Quality scalars of one frame: ``rgb`` HxWx3 uint8, ``gray`` its luma, ``coarse`` that luma area-
    downscaled (long side ~128 px), ``black_level`` in 0..1.

    Sharpness is measured on ``coarse``: the analysis frames are often shrunk without antialiasing
    (as PySceneDetect does), which leaves pixel-level aliasing that a Laplacian at that size reads as
    detail; averaged down to ~128 px the aliasing cancels and real blur still shows.
    """
    mean, std = cv2.meanStdDev(gray)
    lap = cv2.Laplacian(coarse, cv2.CV_32F, ksize=1)
    _, lap_std = cv2.meanStdDev(lap)
    # Black pixels as ffmpeg's blackdetect counts them: luma at or below pix_th of full range.
    black = float(np.count_nonzero(gray <= black_level * 255.0)) / gray.size
    return FrameQuality(
        luma_mean=float(mean[0, 0]) / 255.0,
        luma_std=float(std[0, 0]) / 255.0,
        laplacian_var=float(lap_std[0, 0]) ** 2,
        black_pixel_frac=black,
        colourfulness=colourfulness(rgb),
    )


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness M on the 0..255 scale (every third pixel each way: the
    statistic is global, and this cuts its cost ~9x)."""
    x = rgb[::3, ::3].astype(np.float32)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    rg_m, rg_s = cv2.meanStdDev(rg)
    yb_m, yb_s = cv2.meanStdDev(yb)
    std_root = float(np.hypot(rg_s[0, 0], yb_s[0, 0]))
    mean_root = float(np.hypot(rg_m[0, 0], yb_m[0, 0]))
    return std_root + 0.3 * mean_root
