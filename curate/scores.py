"""Per-clip motion, quality and text scores from the analysis frame stream (no second decode).

Usage (the curate adapter does this for every video)::

    signals = FrameSignals(ScoreConfig())
    result = analyse_video(path, [splitter, signals])   # rushes.curate.decode: one decode, every frame, both consumers
    for clip in clips:
        row.update(signals.clip_scores(clip.start_frame, clip.end_frame, clip.width_px, clip.height_px))

What is computed per frame (only scalars are kept, so memory grows with the number of frames, never
with their size; about 100 bytes per frame):

- every frame, on a copy downscaled to ``work_long_side`` px: luma mean/std, share of black pixels,
  colourfulness; on the luma area-downscaled to ``flow_long_side`` px: variance of the Laplacian
  (:mod:`rushes.curate.quality`), and the mean absolute difference to the previous frame (each frame's luma
  stretched to a fixed contrast first, so fades do not count as change) divided by the PTS gap;
- ``flow_fps`` times a second: DIS optical flow at ``flow_long_side`` px between the frame and the most
  recent frame at least ``flow_min_gap_s`` older (the same time step at 25, 60 or 120 fps, and at
  least ~1 px of displacement for slow motion, where sub-pixel flow reads low), summarised into
  mean/p90 magnitude and a global similarity fit (:mod:`rushes.curate.motion`);
- text: the classical text-line heuristic (:mod:`rushes.curate.text`) ``text_fps`` times a second on the analysis
  frame, always (~1 ms a sample); and, by ``text_method`` (``auto``, the default: when the ``quality`` extra
  is installed; ``ocr``: required; ``heuristic``: never), PP-OCR text detection (:mod:`rushes.curate.ocr`) ``ocr_fps``
  times a second on a sharper copy of the sampled frame (``ocr_long_side`` px, built by the same decode pass,
  see :mod:`rushes.curate.decode`): share of the frame covered by text boxes and their count. A clip's text score
  comes from its OCR samples; a clip with none (shorter than the OCR grid's step) falls back to its
  heuristic samples. ``text_method`` records per clip which one produced the score. Cost and accuracy of
  each in ``bench/text.py`` (docs/benchmarks.md): OCR v4-mobile at 0.5/s adds ~40% CPU to the pass, recall 0.94 vs 0.57.

A clip summarises the samples whose frames all lie inside [start_frame, end_frame): a flow pair or a
frame difference that straddles a cut is never counted. Sampling flow at 8/s and text at 2/s keeps the
cost low (see ``bench/scores.py``) while a 2 s clip still has ~16 flow pairs and 4 text samples.
Scores a clip has no sample for (e.g. flow for a one-frame clip) are None.
"""

from __future__ import annotations

import hashlib
import math
import struct
from array import array
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from rushes.curate.motion import CameraThresholds, FlowEstimator, camera_label, camera_shake
from rushes.curate.quality import frame_quality, luma, to_work_size
from rushes.curate.text import TextDetector, TextParams
from rushes.media.frames import Frame

SCORE_COLUMNS = ("motion_mean", "motion_p90", "frame_diff_mean", "camera_motion", "camera_shake", "sharpness",
                 "brightness_mean", "contrast_std", "black_frame_frac", "flat_frame_frac", "colourfulness",
                 "text_area_frac", "text_boxes", "text_method", "aspect_ratio")
TEXT_METHODS = ("auto", "ocr", "heuristic")


@dataclass(frozen=True)
class ScoreConfig:
    """How per-frame signals are measured. Defaults suit analysis frames with a long side of 256-320 px."""

    work_long_side: int = 256  # px; quality and text are measured at this size so scores do not depend on it
    flow_long_side: int = 128  # px; optical flow and frame difference size (half of 256: a fast exact resize)
    flow_fps: float = 8.0  # flow pairs per second of video; 0 = every frame
    flow_min_gap_s: float = 1 / 15  # a flow pair spans at least this much time (sub-pixel flow is biased low)
    text_fps: float = 2.0  # heuristic text samples per second; 0 = every frame
    text_method: str = "auto"  # auto (PP-OCR when the quality extra is installed); ocr (required); heuristic
    ocr_fps: float = 0.5  # OCR text samples per second; 0 = every frame
    ocr_long_side: int = 480  # px; long side of the sharper copy OCR reads (small corner text needs ~480)
    ocr_model: str = "v4-mobile"  # rushes.curate.ocr.MODELS: v4-mobile (~3x cheaper) or v6-small
    black_level: float = 0.10  # luma at or below (0..1) is a black pixel (ffmpeg blackdetect pix_th)
    black_frame_pixels: float = 0.98  # a frame with this share of black pixels is black (blackdetect default)
    flat_luma_std: float = 0.02  # a frame whose luma std (0..0.5) is below this has no detail
    camera: CameraThresholds = field(default_factory=CameraThresholds)
    text: TextParams = field(default_factory=TextParams)

    def __post_init__(self) -> None:
        if not 32 <= self.work_long_side <= 4096:
            raise ValueError(f"work_long_side={self.work_long_side}: use 32..4096 px (default 256)")
        if not 32 <= self.flow_long_side <= self.work_long_side:
            raise ValueError(f"flow_long_side={self.flow_long_side}: use 32..work_long_side px (default 128)")
        if self.text_method not in TEXT_METHODS:
            raise ValueError(f"text_method={self.text_method!r}: use one of {', '.join(TEXT_METHODS)}")
        if self.ocr_model not in ("v4-mobile", "v6-small"):
            raise ValueError(f"ocr_model={self.ocr_model!r}: use v4-mobile or v6-small (rushes.curate.ocr.MODELS)")
        if not 96 <= self.ocr_long_side <= 2048:
            raise ValueError(f"ocr_long_side={self.ocr_long_side}: use 96..2048 px (default 480)")
        for name in ("flow_fps", "text_fps", "ocr_fps", "flow_min_gap_s"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"{name}={getattr(self, name)} must be a finite number >= 0 (0 = every frame)")
        for name in ("black_level", "black_frame_pixels", "flat_luma_std"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)} must be in (0, 1]")


def default() -> ScoreConfig:
    """The calibrated defaults."""
    return ScoreConfig()


def fast() -> ScoreConfig:
    """Cheaper sampling for very large runs: flow 4/s, heuristic text 1/s (no OCR), smaller work size."""
    return ScoreConfig(work_long_side=192, flow_long_side=96, flow_fps=4.0, text_fps=1.0, text_method="heuristic")


def debug() -> ScoreConfig:
    """Every frame measured: slowest, used by tests to check sampling does not change the picture."""
    return ScoreConfig(flow_fps=0.0, text_fps=0.0)


def ocr() -> ScoreConfig:
    """PP-OCR text detection required (an error without the ``quality`` extra) and sampled 1/s, twice the
    default's rate: every clip of 1 s or more has an OCR sample."""
    return ScoreConfig(text_method="ocr", ocr_fps=1.0)


PRESETS = {"default": default, "fast": fast, "debug": debug, "ocr": ocr}


def _bucket(pts_s: float, rate: float) -> int:
    """The 1/rate-second slot of an absolute time grid (from PTS 0) that ``pts_s`` falls in.

    A sampler takes the first frame of each slot (so 12/s really is ~12/s at 25 fps). The grid is absolute,
    not started at the first frame seen, so a decode that begins anywhere (a time chunk of a long video,
    :mod:`rushes.curate.chunks`) samples the same frames as one that begins at the start. Rate 0 samples every frame.
    """
    return math.floor(pts_s * rate) if rate > 0 else 0


def _due(pts_s: float, rate: float, last_bucket: float) -> bool:
    """Whether a sampler at ``rate`` (0 = every frame) whose last sample fell in ``last_bucket`` takes this frame."""
    return rate <= 0 or _bucket(pts_s, rate) > last_bucket


def _normalise(gray: np.ndarray) -> np.ndarray:
    """Luma stretched to mean 128 and std 48 (gain capped at 4): flow and differences then follow
    structure, not global brightness, so a fade or an exposure change does not read as motion."""
    mean, std = cv2.meanStdDev(gray)
    gain = min(48.0 / max(float(std[0, 0]), 1e-3), 4.0)
    return cv2.convertScaleAbs(gray, alpha=gain, beta=128.0 - gain * float(mean[0, 0]))


def _ocr_detector(cfg: ScoreConfig):
    """The OCR detector ``cfg.text_method`` asks for, or None for the heuristic."""
    from rushes.curate import ocr

    if cfg.text_method == "heuristic" or (cfg.text_method == "auto" and not ocr.available()):
        return None
    return ocr.OcrTextDetector(cfg.ocr_long_side, model=cfg.ocr_model)


class _Columns:
    """Growable float columns (array('d')) with a cached numpy view."""

    def __init__(self, *names: str) -> None:
        self.data = {n: array("d") for n in names}
        self._np: dict[str, np.ndarray] | None = None

    def append(self, **values: float) -> None:
        for name, col in self.data.items():
            col.append(values[name])
        self._np = None

    @classmethod
    def from_numpy(cls, columns: dict[str, np.ndarray]) -> _Columns:
        out = cls(*columns)
        for name, values in columns.items():
            out.data[name].frombytes(np.ascontiguousarray(values, dtype=np.float64).tobytes())
        return out

    def numpy(self) -> dict[str, np.ndarray]:
        if self._np is None:
            self._np = {n: np.frombuffer(c, dtype=np.float64).copy() for n, c in self.data.items()}
        return self._np

    def __len__(self) -> int:
        return len(next(iter(self.data.values())))


_FRAME_COLUMNS = ("index", "pts", "luma_mean", "luma_std", "lap_var", "black", "colour", "diff")
_FLOW_COLUMNS = ("ref", "cur", "ref_pts", "cur_pts", "mean", "p90", "tx", "ty", "zoom")
_TEXT_COLUMNS = ("index", "pts", "frac", "boxes")


@dataclass
class SignalColumns:
    """The per-frame signals a time chunk owns, keyed by PTS (see :meth:`FrameSignals.export`)."""

    frames: dict[str, np.ndarray]
    flow: dict[str, np.ndarray]
    text: dict[str, np.ndarray]
    ocr_text: dict[str, np.ndarray]
    text_method: str
    config: ScoreConfig


class FrameSignals:
    """Accumulates per-frame signals of one video; summarises them per clip. One instance per video.

    For a long video analysed as time chunks (:mod:`rushes.curate.chunks`): each chunk's instance reports
    :meth:`state` where its owned span starts and ends (equal states prove the chunk's samples equal a
    whole-video run's), :meth:`export` s the rows it owns, and :meth:`merged` rebuilds the whole video's.
    """

    def __init__(self, config: ScoreConfig | None = None) -> None:
        self.config = config or ScoreConfig()
        self._frames = _Columns(*_FRAME_COLUMNS)
        self._flow = _Columns(*_FLOW_COLUMNS)
        self._text = _Columns(*_TEXT_COLUMNS)  # heuristic samples (always taken: the fallback)
        self._ocr_text = _Columns(*_TEXT_COLUMNS)  # OCR samples
        self._flow_est = FlowEstimator()
        self._text_det = TextDetector(self.config.text)
        self._ocr = _ocr_detector(self.config)
        self.text_method = self._ocr.method if self._ocr is not None else "heuristic"
        self._text_rate = self.config.text_fps
        self._recent: deque[tuple[int, float, np.ndarray]] = deque(maxlen=8)  # (index, pts, flow-size luma)
        self._flow_bucket = -math.inf  # time-grid slot of the last flow sample (see _bucket)
        self._text_bucket = -math.inf
        self._ocr_bucket = -math.inf
        self._count = 0

    def add(self, frame: Frame) -> None:
        """Consume the next analysis frame (decode order, display orientation, RGB uint8)."""
        cfg = self.config
        index = frame.index if frame.index is not None else self._count
        self._count = index + 1
        work_rgb = to_work_size(frame.rgb, cfg.work_long_side)
        gray = luma(work_rgb)
        coarse = to_work_size(gray, cfg.flow_long_side)
        small = _normalise(coarse)
        q = frame_quality(work_rgb, gray, coarse, cfg.black_level)
        diff = math.nan
        if self._recent:
            p_index, p_pts, p_small = self._recent[-1]
            dt = frame.pts_s - p_pts
            if dt > 0 and p_index == index - 1 and p_small.shape == small.shape:
                diff = float(cv2.absdiff(small, p_small).mean()) / 255.0 / dt
        self._frames.append(index=index, pts=frame.pts_s, luma_mean=q.luma_mean, luma_std=q.luma_std,
                            lap_var=q.laplacian_var, black=q.black_pixel_frac, colour=q.colourfulness, diff=diff)
        # DIS needs a few of its 8 px patches each way; slivers (e.g. 256x6) get no flow, only quality.
        flow_ok = min(small.shape) >= 16
        if flow_ok and _due(frame.pts_s, cfg.flow_fps, self._flow_bucket) and self._measure_flow(
                index, frame.pts_s, small):
            self._flow_bucket = _bucket(frame.pts_s, cfg.flow_fps)
        if self.detail_side(frame.pts_s):  # no sharper copy came (frames fed by hand): read the analysis frame
            self.add_detail(Frame(index, frame.pts_s, frame.rgb))
        if _due(frame.pts_s, self._text_rate, self._text_bucket):
            self._text.append(index=index, pts=frame.pts_s, frac=self._text_det.area_frac(gray), boxes=math.nan)
            self._text_bucket = _bucket(frame.pts_s, self._text_rate)
        self._recent.append((index, frame.pts_s, small))

    def detail_side(self, pts_s: float) -> int:
        """Long side (px) of the sharper copy of this frame OCR wants (a text sample is due), else 0."""
        due = self._ocr is not None and _due(pts_s, self.config.ocr_fps, self._ocr_bucket)
        return self.config.ocr_long_side if due else 0

    def add_detail(self, frame: Frame) -> None:
        """OCR text sample of a sharper copy of the next frame (given just before its ``add``)."""
        frac, boxes = self._ocr.measure(frame.rgb)
        index = frame.index if frame.index is not None else self._count
        self._ocr_text.append(index=index, pts=frame.pts_s, frac=frac, boxes=boxes)
        self._ocr_bucket = _bucket(frame.pts_s, self.config.ocr_fps)

    def _measure_flow(self, index: int, pts_s: float, small: np.ndarray) -> bool:
        """Flow against the newest recent frame at least ``flow_min_gap_s`` older; False when none is."""
        ref = None
        for r_index, r_pts, r_small in reversed(self._recent):
            if r_small.shape != small.shape:
                break
            ref = (r_index, r_pts, r_small)
            if pts_s - r_pts >= self.config.flow_min_gap_s - 1e-6:
                break
        if ref is None or pts_s - ref[1] <= 0:
            return False
        s = self._flow_est.measure(ref[2], small, pts_s - ref[1])
        self._flow.append(ref=ref[0], cur=index, ref_pts=ref[1], cur_pts=pts_s, mean=s.mean, p90=s.p90, tx=s.tx,
                          ty=s.ty, zoom=s.zoom)
        return True

    def clip_scores(self, start_frame: int, end_frame: int, width_px: int, height_px: int) -> dict:
        """Scores of frames [start_frame, end_frame): a dict whose keys are clips-schema score columns."""
        out: dict = dict.fromkeys(SCORE_COLUMNS)
        out["aspect_ratio"] = width_px / height_px if width_px and height_px else None
        f = self._frames.numpy()
        lo, hi = np.searchsorted(f["index"], [start_frame, end_frame], side="left")
        if hi > lo:
            out.update(self._quality_scores(f, lo, hi))
        fl = self._flow.numpy()
        if len(self._flow):
            sel = (fl["ref"] >= start_frame) & (fl["cur"] < end_frame)
            if sel.any():
                out["motion_mean"] = float(fl["mean"][sel].mean())
                out["motion_p90"] = float(fl["p90"][sel].mean())
                out["camera_motion"] = camera_label(fl["tx"][sel], fl["ty"][sel], fl["zoom"][sel], self.config.camera,
                                                    motion=fl["mean"][sel])
                out["camera_shake"] = camera_shake(fl["tx"][sel], fl["ty"][sel], fl["zoom"][sel], self.config.camera)
        out.update(self._text_scores(start_frame, end_frame))
        return out

    def _text_scores(self, start_frame: int, end_frame: int) -> dict:
        """The clip's OCR text samples, or its heuristic ones when it has no OCR sample."""
        for samples, method in ((self._ocr_text, self.text_method), (self._text, "heuristic")):
            if not len(samples):
                continue
            t = samples.numpy()
            sel = (t["index"] >= start_frame) & (t["index"] < end_frame)
            if sel.any():
                boxes = float(t["boxes"][sel].mean()) if samples is self._ocr_text else None
                return {"text_area_frac": float(t["frac"][sel].mean()), "text_method": method, "text_boxes": boxes}
        return {}

    def _quality_scores(self, f: dict[str, np.ndarray], lo: int, hi: int) -> dict:
        cfg = self.config
        diffs = f["diff"][lo + 1:hi]  # the first frame's difference reaches across the clip start
        diffs = diffs[~np.isnan(diffs)]
        return {
            "frame_diff_mean": float(diffs.mean()) if diffs.size else None,
            "sharpness": float(np.median(f["lap_var"][lo:hi])),
            "brightness_mean": float(f["luma_mean"][lo:hi].mean()),
            "contrast_std": float(f["luma_std"][lo:hi].mean()),
            "black_frame_frac": float((f["black"][lo:hi] >= cfg.black_frame_pixels).mean()),
            "flat_frame_frac": float((f["luma_std"][lo:hi] < cfg.flat_luma_std).mean()),
            "colourfulness": float(f["colour"][lo:hi].mean()),
        }

    @property
    def num_frames(self) -> int:
        """Frames consumed so far."""
        return len(self._frames)

    def state(self, next_pts_s: float = 0.0) -> bytes:
        """A digest of everything that shapes the samples of the frames from ``next_pts_s`` on: the recent
        frames (times and flow-size pixels), the sampling slots and the text detector's memory. Frame indices
        are left out (a chunk counts them from its own first frame)."""
        h = hashlib.sha256()
        for _, pts, small in self._recent:
            h.update(struct.pack("<d", pts))
            h.update(repr(small.shape).encode())
            h.update(small.tobytes())
        h.update(repr((self._flow_bucket, self._text_bucket, self._ocr_bucket)).encode())
        prev = self._text_det._prev_candidates
        h.update(b"-" if prev is None else repr(prev.shape).encode() + prev.tobytes())
        return h.digest()

    def export(self, start_s: float, end_s: float | None) -> SignalColumns:
        """The rows of frames with ``start_s <= pts < end_s`` (None: to the end), flow pairs by their later
        frame: indices are this instance's, :meth:`merged` re-assigns them from the times."""
        def rows(columns: _Columns, key: str) -> dict[str, np.ndarray]:
            data = columns.numpy()
            sel = (data[key] >= start_s) & (data[key] < (math.inf if end_s is None else end_s))
            return {name: values[sel] for name, values in data.items()}

        return SignalColumns(rows(self._frames, "pts"), rows(self._flow, "cur_pts"), rows(self._text, "pts"),
                             rows(self._ocr_text, "pts"), self.text_method, self.config)

    @classmethod
    def merged(cls, parts: list[SignalColumns], pts_s) -> FrameSignals:
        """The signals of a whole video from its chunks' :meth:`export` s (in time order) and the PTS of
        all its frames: :meth:`clip_scores` then answers exactly as one instance fed every frame would."""
        pts = np.asarray(pts_s, dtype=np.float64)
        out = cls.__new__(cls)
        out.config = parts[0].config
        out.text_method = parts[0].text_method

        def joined(kind: str, remap: dict[str, str]) -> _Columns:
            cols = {n: np.concatenate([getattr(p, kind)[n] for p in parts]) for n in getattr(parts[0], kind)}
            for index_col, pts_col in remap.items():  # indices from the times: position in the whole video
                cols[index_col] = np.searchsorted(pts, cols[pts_col]).astype(np.float64)
            return _Columns.from_numpy(cols)

        out._frames = joined("frames", {"index": "pts"})
        out._flow = joined("flow", {"ref": "ref_pts", "cur": "cur_pts"})
        out._text = joined("text", {"index": "pts"})
        out._ocr_text = joined("ocr_text", {"index": "pts"})
        return out
