"""Burned-in and scene text found by a real OCR detector: the one owner of ``rapidocr`` and ``onnxruntime``.

Usage (``curate.scores`` does this on the frames it samples for text, 1-2 per second)::

    det = OcrTextDetector(long_side_px=480)
    area_frac, boxes = det.measure(rgb)          # RGB uint8, any size: shrunk to long_side_px first

The model is PP-OCRv6 detection (small), the ONNX file shipped inside the ``rapidocr`` wheel (no download),
run by onnxruntime on one thread (a curate task owns one core). Only detection runs: no recognition, so the
cost is one forward of a ~10 MB network per sampled frame. ``area_frac`` is the share of the frame covered by
the union of the detected text boxes (quadrilaterals), ``boxes`` their count.

:func:`available` says whether the ``quality`` extra is installed; curate falls back to the classical
heuristic of :mod:`curate.text` when it is not, and records which method produced the score.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

PACKAGE_PIN = "rapidocr==3.10.0"
METHOD = "ppocr-v6-det"  # what the manifest's text_method says for scores from this module


class OcrUnavailable(RuntimeError):
    """The OCR packages are not installed (the message says how to install them)."""


def available() -> bool:
    """True when rapidocr and onnxruntime import."""
    try:
        import onnxruntime  # noqa: F401
        import rapidocr  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=4)
def _engine(long_side_px: int, threads: int, box_thresh: float):
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:
        raise OcrUnavailable(f"OCR text scores need rapidocr and onnxruntime: pip install 'rushes[quality]' "
                             f"(or pip install {PACKAGE_PIN} onnxruntime)") from exc
    return RapidOCR(params={
        "Global.use_cls": False, "Global.use_rec": False, "Global.log_level": "error",
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        "Det.limit_side_len": long_side_px, "Det.limit_type": "max", "Det.box_thresh": box_thresh,
    })


def model_version() -> str:
    """``rapidocr`` version and the detection model name (recorded with the scores)."""
    from importlib.metadata import version

    return f"rapidocr {version('rapidocr')} {METHOD}"


class OcrTextDetector:
    """PP-OCR detection on RGB frames; loads the model once per process and setting."""

    method = METHOD

    def __init__(self, long_side_px: int = 480, threads: int = 1, box_thresh: float = 0.5) -> None:
        if not 96 <= long_side_px <= 2048:
            raise ValueError(f"OCR long_side_px={long_side_px}: use 96..2048 px (default 480)")
        self.long_side_px = long_side_px
        self._engine = _engine(long_side_px, max(1, threads), box_thresh)

    def measure(self, rgb: np.ndarray) -> tuple[float, int]:
        """(share of the frame covered by text boxes 0..1, number of boxes) of one RGB uint8 frame."""
        h, w = rgb.shape[:2]
        scale = min(1.0, self.long_side_px / max(h, w))
        if scale < 1.0:
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
            h, w = rgb.shape[:2]
        # The network was trained on BGR input (PaddleOCR reads images with OpenCV).
        out = self._engine(np.ascontiguousarray(rgb[:, :, ::-1]), use_det=True, use_cls=False, use_rec=False)
        boxes = getattr(out, "boxes", None)
        if boxes is None or len(boxes) == 0:
            return 0.0, 0
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(b).astype(np.int32).reshape(-1, 1, 2) for b in boxes], 1)
        return float(mask.mean()), int(len(boxes))
