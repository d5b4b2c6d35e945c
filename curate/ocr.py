"""Burned-in and scene text found by a real OCR detector: the one owner of ``rapidocr`` and ``onnxruntime``.

Usage (``rushes.curate.scores`` does this on the frames it samples for text, 1-2 per second)::

    det = OcrTextDetector(long_side_px=480)
    area_frac, boxes = det.measure(rgb)          # RGB uint8, any size: shrunk to long_side_px first

The model is PP-OCR text detection, an ONNX file shipped inside a wheel (no download), run by ``rapidocr``'s
engine on onnxruntime on one thread (a curate task owns one core). Two are known (``MODELS``): ``v4-mobile``
(PP-OCRv4 mobile detection, 4.7 MB, shipped in the ``rapidocr-onnxruntime`` wheel; the default: ~3x cheaper
per frame than v6-small at the same recall in ``bench/text.py``) and ``v6-small`` (PP-OCRv6 small detection,
10 MB, shipped in the ``rapidocr`` wheel). Only detection runs: no recognition, so the cost is one forward of
the network per sampled frame. ``area_frac`` is the share of the frame covered by
the union of the detected text boxes (quadrilaterals), ``boxes`` their count; boxes taller than
``max_box_height`` of the frame are dropped (the detector's whole-picture boxes on flat frames).

:func:`available` says whether the ``quality`` extra is installed; curate falls back to the classical
heuristic of :mod:`rushes.curate.text` when it is not, and records which method produced the score.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

PACKAGE_PIN = "rapidocr==3.10.0 rapidocr-onnxruntime==1.4.4"


@dataclass(frozen=True)
class OcrModel:
    """A detection model file shipped inside a wheel: ``package``/``models``/``file``."""

    method: str  # what the manifest's text_method says for scores from this model
    package: str  # the importable package whose wheel carries the file (found without importing it)
    file: str


MODELS = {
    "v4-mobile": OcrModel("ppocr-v4-det", "rapidocr_onnxruntime", "ch_PP-OCRv4_det_infer.onnx"),
    "v6-small": OcrModel("ppocr-v6-det", "rapidocr", "PP-OCRv6_det_small.onnx"),
}
DEFAULT_MODEL = "v4-mobile"
METHOD = MODELS[DEFAULT_MODEL].method


class OcrUnavailable(RuntimeError):
    """The OCR packages are not installed (the message says how to install them)."""


def _missing() -> OcrUnavailable:
    return OcrUnavailable(f"OCR text scores need rapidocr, rapidocr-onnxruntime (its model file) and onnxruntime: "
                          f"pip install 'rushes[quality]' (or pip install {PACKAGE_PIN} onnxruntime)")


def model_path(model: str = DEFAULT_MODEL) -> Path:
    """The ONNX file of ``model`` inside its wheel; raises :class:`OcrUnavailable` when it is not installed."""
    if model not in MODELS:
        raise ValueError(f"unknown OCR model {model!r}; use one of {', '.join(MODELS)}")
    spec = MODELS[model]
    found = importlib.util.find_spec(spec.package)
    folders = list(found.submodule_search_locations or []) if found else []
    for folder in folders:
        path = Path(folder) / "models" / spec.file
        if path.is_file():
            return path
    raise _missing()


def available(model: str = DEFAULT_MODEL) -> bool:
    """True when rapidocr, onnxruntime and the model file are installed."""
    try:
        import onnxruntime  # noqa: F401
        import rapidocr  # noqa: F401

        model_path(model)
    except (ImportError, OcrUnavailable):
        return False
    return True


@functools.lru_cache(maxsize=4)
def _engine(long_side_px: int, threads: int, box_thresh: float, model: str):
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:
        raise _missing() from exc
    return RapidOCR(params={
        "Det.model_path": str(model_path(model)),
        "Global.use_cls": False, "Global.use_rec": False, "Global.log_level": "error",
        "EngineConfig.onnxruntime.intra_op_num_threads": threads,
        "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        "Det.limit_side_len": long_side_px, "Det.limit_type": "max", "Det.box_thresh": box_thresh,
    })


def model_version(model: str = DEFAULT_MODEL) -> str:
    """``rapidocr`` version and the detection model name (recorded with the scores)."""
    from importlib.metadata import version

    return f"rapidocr {version('rapidocr')} {MODELS[model].method}"


class OcrTextDetector:
    """PP-OCR detection on RGB frames; loads the model once per process and setting."""

    def __init__(self, long_side_px: int = 480, threads: int = 1, box_thresh: float = 0.5,
                 max_box_height: float = 0.25, model: str = DEFAULT_MODEL) -> None:
        if not 96 <= long_side_px <= 2048:
            raise ValueError(f"OCR long_side_px={long_side_px}: use 96..2048 px (default 480)")
        if not 0 < max_box_height <= 1:
            raise ValueError(f"OCR max_box_height={max_box_height}: use a share of the frame height in (0, 1]")
        self.long_side_px = long_side_px
        self.max_box_height = max_box_height
        self.method = MODELS[model].method if model in MODELS else model
        self._engine = _engine(long_side_px, max(1, threads), box_thresh, model)

    def measure(self, rgb: np.ndarray) -> tuple[float, int]:
        """(share of the frame covered by text boxes 0..1, number of boxes) of one RGB uint8 frame."""
        mask, boxes = self._detect(rgb)
        return (0.0, 0) if mask is None else (float(mask.mean()), boxes)

    def mask(self, rgb: np.ndarray) -> np.ndarray | None:
        """A 0/1 uint8 mask of the text boxes of ``rgb`` at its own size, or None when no box was found."""
        mask, _ = self._detect(rgb)
        if mask is None or mask.shape == rgb.shape[:2]:
            return mask
        return cv2.resize(mask, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)

    def _detect(self, rgb: np.ndarray) -> tuple[np.ndarray | None, int]:
        h, w = rgb.shape[:2]
        scale = min(1.0, self.long_side_px / max(h, w))
        if scale < 1.0:
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
            h, w = rgb.shape[:2]
        # The network was trained on BGR input (PaddleOCR reads images with OpenCV).
        out = self._engine(np.ascontiguousarray(rgb[:, :, ::-1]), use_det=True, use_cls=False, use_rec=False)
        boxes = getattr(out, "boxes", None)
        if boxes is None or len(boxes) == 0:
            return None, 0
        # On flat or low-contrast frames the detector sometimes returns one box around the whole picture;
        # a text line is never a quarter of the frame tall (measured: such boxes were 52-100% of it).
        boxes = [b for b in boxes if float(np.ptp(b[:, 1])) <= self.max_box_height * h]
        if not boxes:
            return None, 0
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(b).astype(np.int32).reshape(-1, 1, 2) for b in boxes], 1)
        return mask, int(len(boxes))
