"""Visible watermarks and logos: text in the frame's corners at the source's own resolution, and edges that
stay put in a corner while the picture under them changes.

Usage (``rushes.curate.guard`` does this on its sampled frames)::

    det = CornerText(long_side_px=640)
    frac = det.measure(rgb_native)          # text-box share of the most covered corner, 0..1
    edges = corner_edges(gray_analysis)     # (corner edge bits, corner luma) of one analysis frame
    score = static_score(samples)           # 0..1 over a clip's samples (None with fewer than 3)

Corner text: the four corners (``CORNER_W`` x ``CORNER_H`` of the frame each) are cut from the frame at its
native size, or shrunk to ``long_side_px`` (640) when bigger, laid side by side in one mosaic (grey gaps keep
boxes from joining) and given to PP-OCR text detection (:mod:`rushes.curate.ocr`, the model the text score
uses; detection only, no recognition) in one call. The whole-frame text score reads a copy shrunk to 480 px,
where a 16 px channel logo at 80% opacity on a 640 px frame fades into the picture; here the corners of a
640 px frame are read at full size, so it is found. The cap bounds the cost (the network's cost grows with
the pixels it reads: a 720p frame's corners at full size cost 4x a 640 px frame's), and means a mark must be
about 16 px tall at 640 px (27 px on a 1080p frame) to be read as well. The score of a frame is the share of
the most text-covered corner's area inside text boxes.

Static edges: on the analysis frame (256 px), each corner's Canny edges and its luma are kept per sample.
Over a clip, a pixel is a *static edge* when it is an edge in at least 90% of the samples; a corner's
content *changes* where the luma moves by more than ``CHANGE_LUMA`` between consecutive samples in at least a
quarter of the pairs. The score of a corner is its share of static-edge pixels, weighted by how much of the
corner changes (a still shot's corners are static everywhere and score near 0); the clip's score is its best
corner's. Logos, bugs and watermarks that are not text are what this catches.
"""

from __future__ import annotations

import cv2
import numpy as np

CORNER_W = 0.25  # share of the frame width a corner spans
CORNER_H = 0.20  # share of the frame height
GAP_PX = 16  # grey gap between corners in the OCR mosaic
CHANGE_LUMA = 12  # luma step (0..255) between samples that counts as change
PERSIST = 0.9  # a static edge is an edge in at least this share of samples
MIN_SAMPLES = 3


def corners(img: np.ndarray) -> list[np.ndarray]:
    """The four corner crops (top-left, top-right, bottom-left, bottom-right) of ``img``."""
    h, w = img.shape[:2]
    cw, ch = max(1, round(w * CORNER_W)), max(1, round(h * CORNER_H))
    return [img[:ch, :cw], img[:ch, w - cw:], img[h - ch:, :cw], img[h - ch:, w - cw:]]


class CornerText:
    """PP-OCR text detection on the four corners of a frame at native size."""

    def __init__(self, long_side_px: int = 640, model: str = "v4-mobile") -> None:
        from rushes.curate.ocr import OcrTextDetector

        self.long_side_px = long_side_px
        self._ocr = OcrTextDetector(2048, model=model, max_box_height=1.0)  # the mosaic is never shrunk

    def measure(self, rgb: np.ndarray) -> float:
        """Share of the most text-covered corner's area inside text boxes (0..1)."""
        h, w = rgb.shape[:2]
        scale = self.long_side_px / max(h, w)
        if scale < 1:
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        tl, tr, bl, br = corners(rgb)
        ch, cw = tl.shape[:2]
        mosaic = np.full((2 * ch + GAP_PX, 2 * cw + GAP_PX, 3), 128, np.uint8)
        origins = [(0, 0), (0, cw + GAP_PX), (ch + GAP_PX, 0), (ch + GAP_PX, cw + GAP_PX)]
        for crop, (y, x) in zip((tl, tr, bl, br), origins):
            mosaic[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
        mask = self._ocr.mask(mosaic)
        if mask is None:
            return 0.0
        return max(float(mask[y:y + ch, x:x + cw].mean()) for y, x in origins)


def corner_edges(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(packed Canny edge bits, luma) of the four corners of an analysis frame's luma, corners concatenated."""
    parts = corners(gray)
    luma = np.concatenate([p.reshape(-1) for p in parts])
    edges = np.concatenate([cv2.Canny(np.ascontiguousarray(p), 60, 160).reshape(-1) > 0 for p in parts])
    return np.packbits(edges), luma


def static_score(samples: list[tuple[np.ndarray, np.ndarray]], shape: tuple[int, int]) -> float | None:
    """Static-edge score (0..1) of a clip from its samples' :func:`corner_edges`, in time order, of frames
    whose luma had ``shape`` (h, w); None with fewer than :data:`MIN_SAMPLES` samples."""
    if len(samples) < MIN_SAMPLES:
        return None
    sizes = [c.size for c in corners(np.zeros(shape, np.uint8))]
    n = sum(sizes)
    edges = np.stack([np.unpackbits(e)[:n] for e, _ in samples]).astype(np.float32)
    luma = np.stack([y for _, y in samples]).astype(np.int16)
    persist = edges.mean(axis=0) >= PERSIST
    changed = (np.abs(np.diff(luma, axis=0)) > CHANGE_LUMA).mean(axis=0) >= 0.25
    best, start = 0.0, 0
    for size in sizes:
        sl = slice(start, start + size)
        start += size
        best = max(best, float(persist[sl].mean()) * min(1.0, float(changed[sl].mean()) / 0.2))
    return best
