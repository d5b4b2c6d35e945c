"""Faces in a frame, found by dlib's frontal face detector: the one owner of ``dlib``.

Usage::

    det = FaceDetector(long_side_px=640)
    count, largest, boxes = det.measure(rgb)  # faces, the largest's share of the frame, boxes (x, y, w, h) 0..1

The detector is dlib's ``get_frontal_face_detector``: a HOG feature pyramid with five linear SVMs (frontal,
left/right looking, rotated left/right), trained on labelled faces in the wild; its weights are compiled into
dlib itself (the ``dlib-bin`` wheel, Boost Software License), so nothing is downloaded. It is run on the
frame shrunk to ``long_side_px`` without upsampling: it finds faces from about 80x80 px, i.e. a face at
least ~1/8 of a 640 px frame's long side (about 22% of a 16:9 frame's height). Smaller faces, profiles
beyond ~45 degrees and heavily occluded faces are missed (see docs/guardrails.md).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

PACKAGE = "dlib-bin"
MODEL = "dlib-frontal-hog"


class FacesUnavailable(RuntimeError):
    """dlib is not installed."""


def available() -> bool:
    try:
        import dlib  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _detector():
    try:
        import dlib
    except ImportError as exc:
        raise FacesUnavailable("the faces score needs dlib: pip install 'rushes[guard]' (or pip install "
                               "dlib-bin)") from exc
    return dlib.get_frontal_face_detector()


def library_file() -> str | None:
    """The compiled dlib module (the detector's weights live in it): what the weights sha256 is taken of."""
    import _dlib_pybind11

    return _dlib_pybind11.__file__


class FaceDetector:
    def __init__(self, long_side_px: int = 640) -> None:
        self.long_side_px = long_side_px
        self._det = _detector()

    def measure(self, rgb: np.ndarray) -> tuple[int, float, tuple]:
        """(faces found, largest face's box area / frame area, their boxes (x, y, w, h) as shares of the frame's
        width and height) of one RGB uint8 frame."""
        h, w = rgb.shape[:2]
        scale = min(1.0, self.long_side_px / max(h, w))
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if scale < 1:
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        rects = self._det(gray, 0)
        if not len(rects):
            return 0, 0.0, ()
        gh, gw = gray.shape
        boxes = []
        for r in rects:
            x0, y0, x1, y1 = max(r.left(), 0), max(r.top(), 0), min(r.right(), gw), min(r.bottom(), gh)
            boxes.append((x0 / gw, y0 / gh, max(0, x1 - x0) / gw, max(0, y1 - y0) / gh))
        return len(rects), max(w * h for _, _, w, h in boxes), tuple(boxes)
