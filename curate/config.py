"""Configuration of ``rushes curate``: frozen dataclasses validated on creation, and named presets.

Use a preset and override fields with :func:`dataclasses.replace`::

    cfg = dataclasses.replace(PRESETS["default"](), max_clip_s=30.0,
                              detector=DetectorConfig(name="content"))

Paths are arguments of the command, not config. Each run writes its resolved config to
``OUT/config/curate.json``; its hash (:func:`manifests.config_hash`) is stored on every row and decides
which videos a rerun may skip.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from rushes.manifests.schema import SCHEMA_VERSIONS

DETECTORS = ("adaptive", "content", "transnetv2", "hybrid")
MODEL_DEVICES = ("auto", "cpu", "cuda")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_finite(obj) -> None:
    """Every number of a config must be finite: nan and inf are refused, naming the field."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{f.name} must be a finite number, got {value}; give a plain number "
                             f"(default {f.default})")


def _score_presets() -> dict:
    # Imported when a config is made, not when the CLI is built: scores pull in OpenCV and numpy.
    from rushes.curate.scores import PRESETS

    return PRESETS


@dataclass(frozen=True)
class DetectorConfig:
    """Scene detector and its parameters (PySceneDetect's and TransNetV2's own defaults).

    ``transnetv2`` is the reference TransNetV2 network (:mod:`rushes.curate.shots`, the ``quality`` extra); ``hybrid``
    is TransNetV2 completed by AdaptiveDetector's cuts where the network also responded (``hybrid_min_prob``).
    """

    name: str = "adaptive"  # "adaptive" (AdaptiveDetector), "content" (ContentDetector), "transnetv2", "hybrid"
    adaptive_threshold: float = 3.0  # AdaptiveDetector: frame score / rolling average needed for a cut
    min_content_val: float = 15.0  # AdaptiveDetector: minimum content score for a cut
    window_width: int = 2  # AdaptiveDetector: frames before and after used for the rolling average
    content_threshold: float = 27.0  # ContentDetector: content score needed for a cut
    min_scene_len_frames: int = 15  # both: frames that must pass after a cut before the next one
    luma_only: bool = False  # both: compare brightness only (for black-and-white footage)
    transnet_threshold: float = 0.5  # TransNetV2: per-frame transition probability above which a shot ends
    hybrid_min_prob: float = 0.1  # hybrid: TransNetV2 probability near an Adaptive cut that confirms it

    def __post_init__(self) -> None:
        _check_finite(self)
        _check(self.name in DETECTORS, f"detector {self.name!r} is not known; use one of {', '.join(DETECTORS)}")
        _check(self.adaptive_threshold > 0, f"adaptive_threshold must be > 0, got {self.adaptive_threshold}; "
               f"PySceneDetect's default is 3.0")
        _check(self.min_content_val >= 0, f"min_content_val must be >= 0, got {self.min_content_val}")
        _check(self.window_width >= 1, f"window_width must be >= 1 frame, got {self.window_width}")
        _check(0 < self.content_threshold <= 255, f"content_threshold must be in (0, 255], got "
               f"{self.content_threshold}; PySceneDetect's default is 27")
        _check(self.min_scene_len_frames >= 1, f"min_scene_len_frames must be >= 1, got {self.min_scene_len_frames}")
        _check(0 < self.transnet_threshold < 1, f"transnet_threshold must be in (0, 1), got "
               f"{self.transnet_threshold}; TransNetV2's reference value is 0.5")
        _check(0 < self.hybrid_min_prob <= self.transnet_threshold, f"hybrid_min_prob must be in (0, "
               f"transnet_threshold={self.transnet_threshold}], got {self.hybrid_min_prob} (default 0.1)")

    def params(self) -> dict:
        """The parameters that shape this detector's cuts (recorded per clip)."""
        adaptive = ("adaptive_threshold", "min_content_val", "window_width", "min_scene_len_frames", "luma_only")
        keys = {"adaptive": adaptive, "content": ("content_threshold", "min_scene_len_frames", "luma_only"),
                "transnetv2": ("transnet_threshold",),
                "hybrid": ("transnet_threshold", "hybrid_min_prob", *adaptive)}[self.name]
        return {k: getattr(self, k) for k in keys}

    @property
    def uses_transnet(self) -> bool:
        """True when the TransNetV2 network (the ``quality`` extra) runs."""
        return self.name in ("transnetv2", "hybrid")


@dataclass(frozen=True)
class EncodeConfig:
    """How clips are encoded: one ffmpeg process per source video, H.264 yuv420p, square pixels."""

    enabled: bool = True  # False (--no-encode): keep spans only, clip_path stays null
    codec: str = "libx264"
    preset: str = "veryfast"  # x264 preset; PySceneDetect's split-video uses veryfast
    crf: int = 22  # x264 constant rate factor; PySceneDetect's split-video uses 22
    max_short_side_px: int = 720  # cap on the short side of encoded clips; 0 keeps the source size
    threads: int = 0  # x264 threads; 0 = as many as CPUs given to the task (rushes curate)
    timeout_s: float = 3600.0  # ffmpeg wall-clock limit per source video

    def __post_init__(self) -> None:
        _check_finite(self)
        _check(self.codec in ("libx264",), f"codec {self.codec!r} is not supported; use libx264")
        _check(self.preset in X264_PRESETS, f"preset {self.preset!r} is not an x264 preset; use one of "
               f"{', '.join(X264_PRESETS)}")
        _check(0 <= self.crf <= 51, f"crf must be in 0..51, got {self.crf}; 18-28 is the useful range")
        _check(self.max_short_side_px == 0 or self.max_short_side_px >= 16,
               f"max_short_side_px must be 0 (no cap) or >= 16, got {self.max_short_side_px}")
        _check(self.threads >= 0, f"encode threads must be >= 0 (0 = auto), got {self.threads}")
        _check(self.timeout_s > 0, f"encode timeout_s must be > 0, got {self.timeout_s}")


@dataclass(frozen=True)
class CurateConfig:
    """Everything that shapes a curate run's outputs (resources are not part of the hash)."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    min_clip_s: float = 2.0  # shorter scenes are kept in the manifest with keep=false, reject_reason=too_short
    max_clip_s: float = 60.0  # longer scenes are split into equal windows of at most this length
    trim_s: float = 0.1  # dropped on each side of a detected cut (detectors can be a frame off)
    analysis_long_side_px: int = 256  # long side of the analysis frames (cuts and scores); 256 = PySceneDetect's
    decode_threads: int = 0  # PyAV decoder threads; 0 = as many as CPUs given to the task
    model_device: str = "auto"  # TransNetV2 device: auto (cuda when the task was given a GPU), cpu or cuda
    scores_preset: str | None = "default"  # rushes.curate.scores preset for per-clip scores; None = cuts only
    filter_preset: str = "default"  # thresholds applied at the end of the run (rushes filter --preset)
    probe_timeout_s: float = 60.0
    # Videos longer than this are analysed and encoded as time chunks by separate tasks (rushes.curate.chunks), with
    # results identical to one task; 0 = one task per video. Not hashed: it changes where work runs, not results.
    chunk_s: float = 180.0

    def __post_init__(self) -> None:
        _check_finite(self)
        _check(self.chunk_s == 0 or self.chunk_s >= 1, f"chunk_s must be 0 (off) or >= 1 second, got "
               f"{self.chunk_s}; a few minutes (default 180) keeps the warm-up overhead near 1%")
        _check(self.min_clip_s >= 0, f"min_clip_s must be >= 0, got {self.min_clip_s}")
        _check(self.max_clip_s > 0 and self.max_clip_s >= self.min_clip_s,
               f"max_clip_s must be > 0 and >= min_clip_s ({self.min_clip_s}), got {self.max_clip_s}")
        _check(0 <= self.trim_s < 5, f"trim_s must be in [0, 5) seconds, got {self.trim_s}")
        _check(32 <= self.analysis_long_side_px <= 1920, f"analysis_long_side_px must be in 32..1920, got "
               f"{self.analysis_long_side_px}; 256 reproduces PySceneDetect's cuts")
        _check(self.decode_threads >= 0, f"decode_threads must be >= 0 (0 = auto), got {self.decode_threads}")
        _check(self.model_device in MODEL_DEVICES, f"model_device {self.model_device!r} is not known; use one of "
               f"{', '.join(MODEL_DEVICES)}")
        score_presets = _score_presets()
        _check(self.scores_preset is None or self.scores_preset in score_presets,
               f"scores_preset {self.scores_preset!r} is not known; use one of {', '.join(score_presets)} "
               f"or None (cuts only)")
        from rushes.curate.filter import PRESETS as filter_presets

        _check(self.filter_preset in filter_presets, f"filter_preset {self.filter_preset!r} is not known; use one "
               f"of {', '.join(sorted(filter_presets))} (rushes filter --preset)")
        _check(self.probe_timeout_s > 0, f"probe_timeout_s must be > 0, got {self.probe_timeout_s}")

    def score_config(self):
        """The resolved :class:`rushes.curate.scores.ScoreConfig`, or None when scores are off."""
        return _score_presets()[self.scores_preset]() if self.scores_preset else None

    def to_dict(self) -> dict:
        """Plain dict (JSON-serialisable) of the resolved config, score settings included."""
        d = dataclasses.asdict(self)
        scores = self.score_config()
        d["scores"] = dataclasses.asdict(scores) if scores is not None else None
        return d

    def hashed_dict(self) -> dict:
        """The part of the config that shapes outputs (what :func:`manifests.config_hash` is taken of).

        Thread counts and timeouts change speed, not results, so a rerun with more threads still resumes;
        the filter preset is applied by a cheap re-runnable step, so changing it never forces a re-decode.
        The manifests' schema versions are in it: a video curated by an older rushes (e.g. clips without
        signatures) is redone by a rerun instead of being taken as done.
        """
        d = {**self.to_dict(), "manifest_schema": {k: SCHEMA_VERSIONS[k] for k in ("videos", "clips")}}
        for key in ("decode_threads", "model_device", "probe_timeout_s", "filter_preset", "chunk_s"):
            d.pop(key)
        for key in ("threads", "timeout_s"):
            d["encode"].pop(key)
        return d


@dataclass(frozen=True)
class RayConfig:
    """Where and how the per-video tasks run (not part of the config hash)."""

    address: str | None = None  # None: $RAY_ADDRESS, else a local instance; "auto" or "ray://host:10001" for a cluster
    num_cpus_per_task: float = 1.0  # CPUs reserved per video task
    num_gpus_per_task: float = 0.0  # GPUs reserved per video task (TransNetV2 then runs on it); 0 = none
    memory_per_task_mb: int = 0  # memory reserved per video task; 0 = no reservation
    max_in_flight: int = 0  # videos submitted at once; 0 = 2x the cluster's CPUs
    local_num_cpus: int | None = None  # CPUs of a local instance started here; None = all

    def __post_init__(self) -> None:
        _check_finite(self)
        _check(self.num_cpus_per_task > 0, f"num_cpus_per_task must be > 0, got {self.num_cpus_per_task}; "
               f"fractions like 0.5 run two videos per core")
        _check(self.num_gpus_per_task >= 0, f"num_gpus_per_task must be >= 0, got {self.num_gpus_per_task}; "
               f"fractions like 0.25 share one GPU between four videos")
        _check(self.memory_per_task_mb >= 0, f"memory_per_task_mb must be >= 0, got {self.memory_per_task_mb}")
        _check(self.max_in_flight >= 0, f"max_in_flight must be >= 0 (0 = auto), got {self.max_in_flight}")
        _check(self.local_num_cpus is None or self.local_num_cpus >= 1,
               f"local_num_cpus must be >= 1 or None, got {self.local_num_cpus}")


def default() -> CurateConfig:
    """Production defaults: AdaptiveDetector, clips 2-60 s, 0.1 s trim, H.264 CRF 22 capped at 720p."""
    return CurateConfig()


def debug() -> CurateConfig:
    """Fast settings for tests and quick trials: short clips allowed, tiny ultrafast encodes."""
    return CurateConfig(min_clip_s=0.5, max_clip_s=20.0, trim_s=0.04,
                        encode=EncodeConfig(preset="ultrafast", crf=28, max_short_side_px=240, threads=1),
                        decode_threads=1)


PRESETS = {"default": default, "debug": debug}


def preset(name: str) -> CurateConfig:
    """The config of a named preset; raises naming the known presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown curate preset {name!r}; use one of {', '.join(PRESETS)}")
    return PRESETS[name]()
