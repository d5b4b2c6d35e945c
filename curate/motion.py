"""Motion from dense optical flow: per-pair measurements and the camera-motion label of a clip.

Method: DIS optical flow (OpenCV, Kroeger et al. 2016, fast preset) between two small luma
frames (long side ``flow_long_side`` px). Magnitudes are divided by the frame diagonal and by the PTS gap between the
two frames, so every motion number is in *frame diagonals per second* (diag/s): the same scene moving
at the same speed gives the same number at any resolution and frame rate, VFR included.

Camera motion: a similarity transform (translation, uniform scale, rotation) is fitted with RANSAC to
the flow on a coarse grid of points (coordinates centred on the frame, so translation is the motion
of the centre and scale is pure zoom). Moving subjects are outliers of that fit, so a still camera
filming a moving subject reads as ``static``. :func:`camera_label` turns the per-pair fits of a clip
into one label, and :func:`camera_shake` gives the score behind its ``shaky`` (``camera_shake`` in the clips
manifest, which ``rushes filter --max-camera-shake`` thresholds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FlowSample:
    """Flow between a reference frame and a later frame, all in diag/s (``zoom`` in 1/s)."""

    mean: float  # mean per-pixel flow magnitude
    p90: float  # 90th percentile of per-pixel flow magnitude
    tx: float  # global translation of the frame centre, +x = content moves right (NaN: too little texture)
    ty: float  # +y = content moves down
    zoom: float  # relative scale change per second, > 0 = content grows (zoom in)


class FlowEstimator:
    """Dense DIS flow between two uint8 luma frames of the same size, summarised as a :class:`FlowSample`."""

    def __init__(self, grid_step_px: int = 8, ransac_px: float = 1.0, min_gradient: float = 16.0) -> None:
        # FAST preset: ~0.5 ms at 128x72 on one core, ~10x cheaper than Farneback; known pans read within
        # a few percent (tests). ULTRAFAST saves a third more but its noisier global fits mislabel some
        # static shots (e.g. a screen with typing text read as a pan).
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._grid_step = grid_step_px
        self._ransac_px = ransac_px
        self._min_gradient = min_gradient  # Sobel magnitude (0..~1000 on 0..255 luma) of a textured point
        self._grid: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None

    def _grid_points(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        if self._grid is None or self._grid[0] != (h, w):
            step = self._grid_step
            ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
            idx = (ys.ravel(), xs.ravel())
            pts = np.stack([xs.ravel() - (w - 1) / 2.0, ys.ravel() - (h - 1) / 2.0], axis=1).astype(np.float32)
            self._grid = ((h, w), np.ravel_multi_index(idx, (h, w)), pts)
        return self._grid[1], self._grid[2]

    def measure(self, ref: np.ndarray, cur: np.ndarray, dt_s: float) -> FlowSample:
        """Flow from ``ref`` to ``cur`` (``dt_s`` seconds apart) in diag/s."""
        h, w = cur.shape[:2]
        flow = self._dis.calc(ref, cur, None)
        norm = 1.0 / (float(np.hypot(w, h)) * max(dt_s, 1e-6))
        mag = cv2.magnitude(flow[..., 0], flow[..., 1])
        flat_idx, pts = self._grid_points(h, w)
        # Flow in flat areas (sky, walls, black) is guesswork propagated from elsewhere: fit the camera
        # model only where the reference frame has texture, and not at all when too little of it has.
        gx = cv2.Sobel(ref, cv2.CV_32F, 1, 0, ksize=3).ravel()[flat_idx]
        gy = cv2.Sobel(ref, cv2.CV_32F, 0, 1, ksize=3).ravel()[flat_idx]
        textured = np.hypot(gx, gy) >= self._min_gradient
        if int(textured.sum()) >= max(12, textured.size // 10):
            uv = flow.reshape(-1, 2)[flat_idx][textured]
            tx, ty, zoom = _fit_similarity(pts[textured], uv, self._ransac_px)
        else:
            tx = ty = zoom = math.nan
        return FlowSample(
            mean=float(mag.mean()) * norm,
            p90=_p90(mag) * norm,
            tx=tx * norm,
            ty=ty * norm,
            zoom=zoom / max(dt_s, 1e-6),
        )


def _p90(mag: np.ndarray) -> float:
    """90th percentile of the magnitudes (every second pixel each way; partition beats a full sort)."""
    sample = mag[::2, ::2].ravel()
    k = int(0.9 * (sample.size - 1))
    return float(np.partition(sample, k)[k])


def _fit_similarity(pts: np.ndarray, uv: np.ndarray, ransac_px: float) -> tuple[float, float, float]:
    """Translation (px) and scale change (relative) of the similarity mapping pts -> pts+uv (RANSAC)."""
    matrix, _ = cv2.estimateAffinePartial2D(pts, pts + uv, method=cv2.RANSAC,
                                                  ransacReprojThreshold=ransac_px, maxIters=100, refineIters=5)
    if matrix is None:  # degenerate (e.g. all points identical): fall back to the robust median shift
        med = np.median(uv, axis=0)
        return float(med[0]), float(med[1]), 0.0
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    return float(matrix[0, 2]), float(matrix[1, 2]), scale - 1.0


@dataclass(frozen=True)
class CameraThresholds:
    """Thresholds of :func:`camera_label` (diag/s unless stated)."""

    static: float = 0.015  # median global motion below this: the camera does not move
    consistency: float = 0.6  # |mean vector| / mean |vector| at or above: one steady direction
    zoom_consistency: float = 0.7  # share of pairs zooming the same way for a zoom label
    axis_ratio: float = 2.0  # a pan/tilt needs its axis this many times the other one

    def __post_init__(self) -> None:
        if not self.static >= 0:
            raise ValueError(f"camera static={self.static}: use a speed >= 0 in diag/s (default 0.015)")
        for name in ("consistency", "zoom_consistency"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"camera {name}={getattr(self, name)}: use a share in 0..1")
        if not self.axis_ratio >= 1:
            raise ValueError(f"camera axis_ratio={self.axis_ratio}: use >= 1 (default 2)")


def camera_shake(tx: np.ndarray, ty: np.ndarray, zoom: np.ndarray, th: CameraThresholds) -> float | None:
    """How much a moving camera keeps changing direction, 0..1: ``1 - |mean translation| / mean |translation|``
    over the clip's pairs (0: one steady direction; 1: no net direction at all). 0 when the camera does not move
    (median global motion below ``th.static``) or zooms steadily (:func:`camera_label`'s zoom labels); None when
    no pair has a global fit. :func:`camera_label` says ``shaky`` exactly when this is above ``1 -
    th.consistency`` (0.4 by default), so a threshold on it moves the ``shaky`` line."""
    ok = ~(np.isnan(tx) | np.isnan(ty) | np.isnan(zoom))
    if not ok.any():
        return None
    tx, ty, zoom = tx[ok], ty[ok], zoom[ok]
    trans = np.hypot(tx, ty)
    if float(np.median(trans + 0.5 * np.abs(zoom))) < th.static:
        return 0.0
    steady_t = float(np.hypot(tx.mean(), ty.mean()))
    steady_zoom = 0.5 * abs(float(np.median(zoom)))
    zoom_agree = float(np.mean(np.sign(zoom) == np.sign(np.median(zoom))))
    if steady_zoom > steady_t and zoom_agree >= th.zoom_consistency and steady_zoom >= th.static:
        return 0.0
    return float(min(max(1.0 - steady_t / max(float(trans.mean()), 1e-12), 0.0), 1.0))


def camera_label(tx: np.ndarray, ty: np.ndarray, zoom: np.ndarray, th: CameraThresholds,
                 motion: np.ndarray | None = None) -> str | None:
    """One camera-motion label for a clip from its per-pair global motion (arrays of equal length).

    Global speed per pair = |translation| + zoom x half-diagonal (how fast the corners move under a
    zoom). Below ``th.static`` in median: ``static``. Otherwise the larger of the steady translation
    and the steady zoom decides: a steady direction along one axis is a pan (x) or tilt (y); a steady
    zoom sign is zoom in/out; translation that keeps changing direction is ``shaky``; anything else
    (diagonal drift, rotation, mixed) is ``complex``. Pairs without a global fit (NaN: too little
    texture) are left out; None when there are no pairs. When no pair has a fit, the per-pair mean
    flow magnitude ``motion`` decides between ``static`` and ``complex``.
    """
    if len(tx) == 0:
        return None
    ok = ~(np.isnan(tx) | np.isnan(ty) | np.isnan(zoom))
    if not ok.any():
        still = motion is not None and len(motion) and float(np.median(motion)) < th.static
        return "static" if still else "complex"
    tx, ty, zoom = tx[ok], ty[ok], zoom[ok]
    trans = np.hypot(tx, ty)
    corner_zoom = 0.5 * np.abs(zoom)  # a corner sits half a diagonal from the centre
    if float(np.median(trans + corner_zoom)) < th.static:
        return "static"
    mean_t = np.array([tx.mean(), ty.mean()])
    steady_t = float(np.hypot(*mean_t))
    consistency = steady_t / max(float(trans.mean()), 1e-12)
    zoom_sign = np.sign(np.median(zoom))
    zoom_agree = float(np.mean(np.sign(zoom) == zoom_sign))
    steady_zoom = 0.5 * abs(float(np.median(zoom)))
    if steady_zoom > steady_t and zoom_agree >= th.zoom_consistency and steady_zoom >= th.static:
        return "zoom_in" if zoom_sign > 0 else "zoom_out"
    if consistency < th.consistency:
        return "shaky"
    ax, ay = abs(mean_t[0]), abs(mean_t[1])
    # Content moving left (tx < 0) means the camera turns right; content moving down means it tilts up.
    if ax >= th.axis_ratio * ay:
        return "pan_right" if mean_t[0] < 0 else "pan_left"
    if ay >= th.axis_ratio * ax:
        return "tilt_up" if mean_t[1] > 0 else "tilt_down"
    return "complex"
