"""Thresholds applied to raw clip scores: ``rushes filter OUT`` re-decides ``keep`` without touching video.

Usage (the ``rushes filter`` command of :mod:`rushes.curate.cli` calls :func:`filter_run`)::

    from rushes.curate.filter import apply_filter, filter_run, PRESETS
    counts = filter_run("OUT", preset="strict", overrides={"min_motion": 0.01})
    table = apply_filter(clips_table, PRESETS["default"]())   # pure, vectorised

Every rule a clip fails is named in ``reject_reason`` (';'-joined, in a fixed order), e.g.
``motion<0.001;dark``. Rules (a threshold set to None is off):

==================  ======================================================  ========================
reason              fails when                                              config field(s)
==================  ======================================================  ========================
bad_span            start_s/end_s not finite, start_s < 0 or end_s <=       (always on)
                    start_s (an edited or damaged row)
too_short           duration_s < min length (per clip: ``min_clip_s`` of    min_duration_s
                    its ``detector_params``, unless the preset sets one)
too_long            duration_s > max                                        max_duration_s
small               min(width_px, height_px) < min                          min_short_side_px
aspect              aspect_ratio (or width/height) outside [min, max]       min_aspect, max_aspect
motion<X            motion_mean < X (frozen, slideshow)                     min_motion
motion>X            motion_mean > X (chaotic)                               max_motion
dark                black_frame_frac > max or brightness_mean < min         max_black_frame_frac,
                                                                            min_brightness
bright              brightness_mean > max (blown out)                       max_brightness
flat                flat_frame_frac > max                                   max_flat_frame_frac
blurry              sharpness < min                                         min_sharpness
low_contrast        contrast_std < min                                      min_contrast
grey                colourfulness < min                                     min_colourfulness
text>X              text_area_frac > X (burned-in text)                     max_text_area
shake>X             camera_shake > X (a moving camera that keeps changing   max_camera_shake
                    direction; the label ``shaky`` is camera_shake > 0.4;
                    a row without camera_shake, curated before it was
                    stored, is judged by its ``shaky`` label)
camera=LABEL        camera_motion is one of the listed labels               reject_camera_motion
nsfw                nsfw (highest open_nsfw probability) > max              max_nsfw (on: 0.8)
faces               face_area_frac > max (0: any face)                      max_face_area (off)
watermark           watermark_text > max or watermark_static > max          max_watermark_text,
                                                                            max_watermark_static
ai_generated        c2pa_source_type is trainedAlgorithmicMedia or          reject_ai_generated (on),
                    compositeWithTrainedAlgorithmicMedia, or an invisible   min_invisible_mark_match
                    mark decodes (invisible_mark_match >= min)
blocklisted         >= block_min_match of the clip's pdq hashes are within  reject_blocklisted (on),
                    block_max_distance bits of a hash of the run's list     block_max_distance,
                    (``rushes curate/filter --block-hashes FILE``)          block_min_match
near_duplicate      duplicate_of is set: the same shot (re-encoded,         reject_near_duplicate
                    rescaled, cropped, trimmed) is kept as another clip     (on in every preset but
                    of this run or of a --dedup-against run                 none)
missing_scores      a score an active rule needs is null (scoring failed)   reject_missing
==================  ======================================================  ========================

Images (``kind = 'image'``, a still curated as a one-frame clip with no duration) are judged by every rule
above except ``too_short``, ``motion<X``, ``motion>X`` and ``camera=LABEL``: those measure time, which a still
has none of, so they never fail an image and its null motion scores are not ``missing_scores``.

The guardrail rules (nsfw, faces, watermark) count a null score as missing only when the clip's
``guard_models`` says its detector ran (a run curated without guardrails, or by an older rushes, is not
rejected for lacking them). ``blocklisted`` compares the stored hashes with the list kept in
``OUT/config/block_hashes.txt`` (:class:`RunFilter`), so a new list never needs a decode.

Null scores are never silently passed: with ``reject_missing`` (default) the clip is rejected as
``missing_scores``; with ``reject_missing=False`` the rules that need the missing score are not judged.
Reasons written by other steps that are not filter rules (e.g. an encode failure) are kept as they are,
so re-filtering cannot resurrect such a clip. ``duplicate_of`` is found by the near-duplicate search at the
end of ``rushes curate`` (:mod:`rushes.curate.dedup`); ``rushes filter`` re-applies the rule to it, it does not search again. ``too_short`` is judged with each clip's own
``min_clip_s`` and a ``too_short`` set by the split always stays (the split does not encode those
clips), unless ``min_duration_s`` is set explicitly: then only that value decides.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from rushes import manifests
from rushes import storage
from rushes.manifests.clips import valid_span_mask
from rushes.manifests.store import ManifestError
from rushes.media.provenance import AI_SOURCE_TYPES
from rushes.settings import check, invalid, setting

# Fields that are on/off switches rather than thresholds.
_SWITCHES = ("reject_camera_motion", "reject_near_duplicate", "reject_missing", "reject_ai_generated",
             "reject_blocklisted")
BLOCKLIST_FILE = ("config", "block_hashes.txt")  # the run's hash list, under OUT
CAMERA_LABELS = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out", "shaky", "complex")

# Reasons this module owns (recomputed on every run); anything else in reject_reason is preserved.
_OWNED = re.compile(r"^(bad_span|too_short|too_long|small|aspect|dark|bright|flat|blurry|low_contrast|grey"
                    r"|missing_scores"
                    r"|near_duplicate|nsfw|faces|watermark|ai_generated|blocklisted|motion[<>].*|text>.*|shake>.*|camera=.*)$")


def _rule(default, text: str, **kw):
    """A threshold: a finite number >= 0, or None (the rule is off)."""
    return setting(default, text, ge=0, metavar="X", hint="or none to switch the rule off", **kw)


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the clip filter; None switches a rule off. See the module docstring for the rules."""

    min_duration_s: float | None = _rule(None, "reject clips shorter than this (s); none: each clip's min_clip_s "
                                         "recorded by the split")
    max_duration_s: float | None = _rule(None, "reject clips longer than this (s)")
    min_short_side_px: int | None = _rule(240, "reject clips whose short side is below this (px)")
    min_aspect: float | None = _rule(0.4, "reject clips narrower than this width/height")
    max_aspect: float | None = _rule(2.5, "reject clips wider than this width/height")
    min_motion: float | None = _rule(0.001, "reject clips whose motion_mean (frame diagonals per second) is below "
                                     "this: frozen frames, slideshows")
    max_motion: float | None = _rule(None, "reject clips whose motion_mean is above this")
    max_black_frame_frac: float | None = _rule(0.5, "reject as dark when more than this share of frames is black")
    min_brightness: float | None = _rule(0.03, "reject as dark when mean luma (0..1) is below this")
    max_brightness: float | None = _rule(0.97, "reject as bright when mean luma (0..1) is above this")
    max_flat_frame_frac: float | None = _rule(0.5, "reject as flat when more than this share of frames has no detail")
    min_sharpness: float | None = _rule(30.0, "reject as blurry when the median variance of the Laplacian is below "
                                        "this")
    min_contrast: float | None = _rule(0.02, "reject when the mean luma std (0..0.5) is below this")
    min_colourfulness: float | None = _rule(None, "reject as grey when colourfulness is below this (off: "
                                            "black-and-white film is fine)")
    max_text_area: float | None = _rule(0.015, "reject when burned-in text covers more than this share of the frame "
                                        "on average")
    max_camera_shake: float | None = _rule(None, "reject a moving camera whose camera_shake (0 steady .. 1 no net "
                                           "direction) is above this; the camera_motion label says shaky above 0.4",
                                           le=1)
    max_nsfw: float | None = _rule(0.8, "reject as nsfw when the highest open_nsfw probability of the clip's samples "
                                   "is above this (0..1)")
    max_face_area: float | None = _rule(None, "reject as faces when the largest face covers more than this share of "
                                        "the frame (0: any face; off by default)")
    max_watermark_text: float | None = _rule(0.05, "reject as watermark when corner text covers more than this "
                                             "share of the most covered corner on average")
    max_watermark_static: float | None = _rule(None, "reject as watermark when the static corner-edge score is "
                                               "above this (logos; off by default)")
    reject_ai_generated: bool | None = setting(True, "reject as ai_generated clips whose source's C2PA manifest says "
                                               "trainedAlgorithmicMedia or compositeWithTrainedAlgorithmicMedia, "
                                               "or whose frames carry a known invisible mark", switch=False,
                                               metavar="BOOL")
    min_invisible_mark_match: float = setting(0.85, "share of an invisible mark's bits that must decode for "
                                              "ai_generated (0.5 is chance)", gt=0.5, le=1)
    reject_blocklisted: bool | None = setting(True, "reject as blocklisted clips whose PDQ hashes match the run's hash "
                                              "list (--block-hashes)", switch=False, metavar="BOOL")
    block_max_distance: int = setting(31, "PDQ hashes within this many bits (of 256) match (ThreatExchange's "
                                      "recommended 31)", ge=0, le=128)
    block_min_match: float = setting(0.5, "share of a clip's PDQ hashes that must match for blocklisted", gt=0, le=1)
    reject_camera_motion: tuple[str, ...] = setting((), "comma-separated camera_motion labels to reject, e.g. "
                                                    "complex (shaky has a score to threshold instead: "
                                                    "--max-camera-shake)", metavar="LABELS")
    reject_near_duplicate: bool | None = setting(True, "reject clips whose duplicate_of is set (near-duplicates of a "
                                                 "clip kept elsewhere in the run or in a --dedup-against run)",
                                                 switch=False, metavar="BOOL")
    reject_missing: bool = setting(True, "reject clips with a null score an active rule needs (true), or skip those "
                                   "rules (false)", switch=False, metavar="BOOL")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # a threshold is a number (check() lets bools and text pass)
            value = getattr(self, f.name)
            if f.name not in _SWITCHES and value is not None and (
                    isinstance(value, bool) or not isinstance(value, (int, float))):
                raise invalid(self, f.name, f"must be a finite number >= 0, or none to switch the rule off; got "
                              f"{value!r}")
        check(self)
        if self.min_aspect is not None and self.max_aspect is not None and self.min_aspect > self.max_aspect:
            raise invalid(self, "min_aspect", f"({self.min_aspect}) must be <= max_aspect ({self.max_aspect}): "
                          f"swap them")
        for name in ("reject_near_duplicate", "reject_ai_generated", "reject_blocklisted"):
            if not isinstance(getattr(self, name), (bool, type(None))):
                raise invalid(self, name, f"must be true or false, got {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))  # none(): None = off
        if isinstance(self.reject_camera_motion, str):
            object.__setattr__(self, "reject_camera_motion", tuple(
                s.strip() for s in self.reject_camera_motion.split(",") if s.strip()))
        object.__setattr__(self, "reject_camera_motion", tuple(self.reject_camera_motion))
        bad = [s for s in self.reject_camera_motion if s not in CAMERA_LABELS]
        if bad:
            raise invalid(self, "reject_camera_motion", f"has unknown label(s) {bad}; use {', '.join(CAMERA_LABELS)}")

    def to_json(self) -> str:
        """Thresholds as a JSON object string (what ``filter_params`` and ``filter.json`` record)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def default() -> FilterConfig:
    """Drop what is plainly unusable: frozen, mostly black or flat, blown out, very blurry, tiny, text-heavy."""
    return FilterConfig()


def strict() -> FilterConfig:
    """Training-grade: visible motion, sharp, >= 360 px, little text, no shaky (camera_shake > 0.4) or unexplained
    camera motion."""
    return FilterConfig(min_short_side_px=360, min_aspect=0.5, max_aspect=2.4, min_motion=0.01, max_motion=0.5,
                        max_black_frame_frac=0.1, min_brightness=0.08, max_brightness=0.9, max_flat_frame_frac=0.1,
                        min_sharpness=150.0, min_contrast=0.05, max_text_area=0.005, max_camera_shake=0.4,
                        reject_camera_motion=("complex",))


def permissive() -> FilterConfig:
    """Only the unusable: all-black or flat, frozen still, absurd size or shape."""
    return FilterConfig(min_short_side_px=64, min_aspect=0.2, max_aspect=5.0, min_motion=0.0003,
                        max_black_frame_frac=0.9, min_brightness=0.01, max_brightness=0.99,
                        max_flat_frame_frac=0.9, min_sharpness=5.0, min_contrast=0.005, max_text_area=0.1)


def none() -> FilterConfig:
    """No score rules and no near_duplicate rule; the split's too_short rule still holds (pass min_duration_s=0
    to drop it too)."""
    return FilterConfig(**{f.name: None for f in dataclasses.fields(FilterConfig)
                           if f.name not in ("reject_camera_motion", "reject_missing", "min_duration_s",
                                             "min_invisible_mark_match", "block_max_distance", "block_min_match")})


PRESETS = {"default": default, "strict": strict, "permissive": permissive, "none": none}


def resolve_config(preset: str = "default", overrides: dict | None = None) -> FilterConfig:
    """A preset's config with ``overrides`` (field name -> value) applied; errors name the bad key."""
    if preset not in PRESETS:
        raise ValueError(f"unknown filter preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = PRESETS[preset]()
    overrides = dict(overrides or {})
    names = {f.name for f in dataclasses.fields(FilterConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown filter setting(s) {unknown}; valid: {', '.join(sorted(names))}")
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def _per_clip_min_clip_s(detector_params: pa.ChunkedArray) -> pa.Array:
    """``min_clip_s`` from each clip's detector_params JSON (null where absent); parsed once per distinct value."""
    def parse(text):
        try:
            value = json.loads(text).get("min_clip_s") if text else None
        except (json.JSONDecodeError, AttributeError):
            return None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return _map_distinct(detector_params, parse, pa.float64())


def _map_distinct(col: pa.ChunkedArray, fn, typ: pa.DataType) -> pa.Array:
    """Apply a Python function to each distinct value of ``col`` and spread the results back (vectorised
    for columns with few distinct values, such as detector_params or reject_reason)."""
    enc = pc.dictionary_encode(_flat(col))
    mapped = pa.array([fn(v) for v in enc.dictionary.to_pylist()], type=typ)
    return mapped.take(enc.indices)


def _rules(t: pa.Table, cfg: FilterConfig) -> list[tuple[str, pa.Array, bool]]:
    """(reason, fail mask with null where a needed value is null, is-score-rule) for every active rule."""
    out: list[tuple[str, pa.Array, bool]] = []

    def below(col, thr):
        return pc.less(t[col], thr)

    def above(col, thr):
        return pc.greater(t[col], thr)

    def in_time(mask):  # a rule about time never fails a still (not null either: not missing_scores)
        return pc.if_else(_images(t), False, mask)

    # Always on, in every preset: a span that is not a time (NaN, infinite, negative, ending before it starts: an
    # edited or damaged row) is never kept; every stage after the filter refuses it too (rushes.manifests.clips).
    out.append(("bad_span", pc.invert(valid_span_mask(t)), False))
    if cfg.max_duration_s is not None:
        out.append(("too_long", above("duration_s", cfg.max_duration_s), False))
    if cfg.min_short_side_px is not None:
        out.append(("small", pc.less(pc.min_element_wise(t["width_px"], t["height_px"]), cfg.min_short_side_px), False))
    if cfg.min_aspect is not None or cfg.max_aspect is not None:
        ratio = pc.coalesce(pc.cast(t["aspect_ratio"], pa.float64()),
                            pc.divide(pc.cast(t["width_px"], pa.float64()), pc.cast(t["height_px"], pa.float64())))
        lo = pc.less(ratio, cfg.min_aspect) if cfg.min_aspect is not None else None
        hi = pc.greater(ratio, cfg.max_aspect) if cfg.max_aspect is not None else None
        out.append(("aspect", pc.or_kleene(lo, hi) if lo is not None and hi is not None else (lo or hi), False))
    if cfg.min_motion is not None:
        out.append((f"motion<{cfg.min_motion:g}", in_time(below("motion_mean", cfg.min_motion)), True))
    if cfg.max_motion is not None:
        out.append((f"motion>{cfg.max_motion:g}", in_time(above("motion_mean", cfg.max_motion)), True))
    dark = [m for m in (above("black_frame_frac", cfg.max_black_frame_frac) if cfg.max_black_frame_frac is not None
                        else None, below("brightness_mean", cfg.min_brightness) if cfg.min_brightness is not None
                        else None) if m is not None]
    if dark:
        out.append(("dark", pc.or_kleene(*dark) if len(dark) == 2 else dark[0], True))
    for reason, col, thr, test in (("bright", "brightness_mean", cfg.max_brightness, above),
                                   ("flat", "flat_frame_frac", cfg.max_flat_frame_frac, above),
                                   ("blurry", "sharpness", cfg.min_sharpness, below),
                                   ("low_contrast", "contrast_std", cfg.min_contrast, below),
                                   ("grey", "colourfulness", cfg.min_colourfulness, below)):
        if thr is not None:
            out.append((reason, test(col, thr), True))
    if cfg.max_text_area is not None:
        out.append((f"text>{cfg.max_text_area:g}", above("text_area_frac", cfg.max_text_area), True))
    if cfg.max_camera_shake is not None:
        # A row curated before camera_shake was stored (null) is judged by its label, as before.
        out.append((f"shake>{cfg.max_camera_shake:g}", pc.coalesce(above("camera_shake", cfg.max_camera_shake),
                                                                    pc.equal(t["camera_motion"], "shaky")), True))
    for label in cfg.reject_camera_motion:
        out.append((f"camera={label}", in_time(pc.equal(t["camera_motion"], label)), True))
    out += _guard_rules(t, cfg)
    if cfg.reject_near_duplicate:
        out.append(("near_duplicate", pc.is_valid(t["duplicate_of"]), False))
    return out


def _ran(t: pa.Table, detector: str) -> pa.Array:
    """True where the clip's ``guard_models`` says ``detector`` ran: only there is its null score missing."""
    return pc.match_substring(t["guard_models"], f'"{detector}": {{').fill_null(False)  # null: it did not run


def _guard_rules(t: pa.Table, cfg: FilterConfig) -> list[tuple[str, pa.Array, object]]:
    """The nsfw, faces, watermark and ai_generated rules (blocklisted is :class:`RunFilter`'s: it needs the list)."""
    out: list[tuple[str, pa.Array, object]] = []
    if cfg.max_nsfw is not None:
        out.append(("nsfw", pc.greater(t["nsfw"], cfg.max_nsfw), _ran(t, "nsfw")))
    if cfg.max_face_area is not None:
        out.append(("faces", pc.greater(t["face_area_frac"], cfg.max_face_area), _ran(t, "faces")))
    if cfg.max_watermark_text is not None or cfg.max_watermark_static is not None:
        # watermark_static is null for a clip with fewer than 3 samples: never a missing score on its own.
        static = (pc.greater(t["watermark_static"], cfg.max_watermark_static).fill_null(False)
                  if cfg.max_watermark_static is not None else pa.repeat(pa.scalar(False), t.num_rows))
        if cfg.max_watermark_text is not None:
            out.append(("watermark", pc.or_kleene(pc.greater(t["watermark_text"], cfg.max_watermark_text), static),
                        _ran(t, "watermark")))
        else:
            out.append(("watermark", static, False))
    if cfg.reject_ai_generated:
        c2pa = pc.is_in(t["c2pa_source_type"], pa.array(AI_SOURCE_TYPES)).fill_null(False)
        mark = pc.greater_equal(t["invisible_mark_match"], cfg.min_invisible_mark_match).fill_null(False)
        out.append(("ai_generated", pc.or_(c2pa, mark), False))
    return out


def apply_filter(clips: pa.Table, cfg: FilterConfig, preset: str | None = None, blocklist=None) -> pa.Table:
    """Return ``clips`` with ``keep``, ``reject_reason``, ``filter_preset`` and ``filter_params`` set.

    Pure and vectorised (pyarrow.compute); the same input and config always give the same output, so
    re-running is idempotent. ``preset`` is recorded in ``filter_preset`` (default ``"custom"``). ``blocklist``
    (:class:`rushes.curate.pdq.Blocklist`): the hash list the ``blocklisted`` rule matches ``pdq`` against.
    """
    t = manifests.conform(clips, "clips")
    n = t.num_rows
    t = t.combine_chunks()  # one chunk per column: element-wise kernels then line up row for row
    old = t["reject_reason"]
    # too_short: a preset value wins; otherwise each clip's own min_clip_s, and a too_short written
    # earlier (by the split, which did not encode the clip) always stays, so re-filtering never
    # resurrects it.
    if cfg.min_duration_s is not None:
        short = pc.less(t["duration_s"], cfg.min_duration_s).fill_null(False)
    else:
        had_short = _map_distinct(old, lambda r: bool(r) and "too_short" in r.split(";"), pa.bool_())
        computed = pc.less(t["duration_s"], _per_clip_min_clip_s(t["detector_params"]))
        short = pc.or_kleene(computed, had_short).fill_null(False)
    short = pc.and_(short, pc.invert(_images(t)))  # a still has no duration to be short of
    names, fails = ["too_short"], [short]
    missing = pa.repeat(pa.scalar(False), n)
    rules = _rules(t, cfg)
    if cfg.reject_blocklisted and blocklist is not None and len(blocklist):
        rules.append(("blocklisted", _blocked(t, blocklist, cfg), False))
    for reason, fail, is_score in rules:
        if is_score is True:
            missing = pc.or_(missing, pc.is_null(fail))
        elif is_score is not False:  # a mask: missing only where the score was measured (guardrails)
            missing = pc.or_(missing, pc.and_(pc.is_null(fail), is_score))
        names.append(reason)
        fails.append(fail.fill_null(False))
    if cfg.reject_missing:
        names.append("missing_scores")
        fails.append(missing)
    reason = _join_reasons(names, fails, old)
    keep = pc.is_null(reason)
    sets = {"keep": keep, "reject_reason": reason,
            "filter_preset": pa.repeat(pa.scalar(preset or "custom", pa.string()), n),
            "filter_params": pa.repeat(pa.scalar(cfg.to_json(), pa.string()), n)}
    for name, values in sets.items():
        t = t.set_column(t.schema.get_field_index(name), t.schema.field(name), values)
    return t


def _images(t: pa.Table) -> pa.Array:
    """True for the rows of stills (``kind = 'image'``); a null kind (parts written before stills) is a video."""
    return pc.fill_null(pc.equal(t["kind"], "image"), False)


def _blocked(t: pa.Table, blocklist, cfg: FilterConfig) -> pa.Array:
    """True where at least ``block_min_match`` of a clip's PDQ hashes lie within ``block_max_distance`` of the list."""
    import numpy as np

    col = _flat(t["pdq"])
    counts = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(col).to_pylist()
    hits = (blocklist.min_distances(flat) <= cfg.block_max_distance) if flat else np.zeros(0, bool)
    ends = np.cumsum(counts)
    csum = np.concatenate([[0], np.cumsum(hits, dtype=np.int64)])
    matched = csum[ends] - csum[ends - counts]
    share = np.divide(matched, counts, out=np.zeros(len(counts)), where=counts > 0)
    return pa.array((counts > 0) & (share >= cfg.block_min_match))


def _flat(values) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _join_reasons(names: list[str], fails: list[pa.Array], old: pa.ChunkedArray) -> pa.Array:
    """';'-joined names of the failed rules, then the reasons of other steps kept from ``old``; null if none.

    Vectorised through a code per row: bit i set when rule i failed, times the index of the row's
    foreign reasons. Only distinct codes are turned into text (there are few), then spread with take.
    (pyarrow's binary_join_element_wise with null_handling="skip" drops all-null rows in pyarrow 26,
    so it is not used.)
    """
    code = pa.repeat(pa.scalar(0, pa.int64()), len(old))
    for bit, fail in enumerate(fails):
        code = pc.add(code, pc.if_else(_flat(fail), 1 << bit, 0))
    foreign = pc.dictionary_encode(_map_distinct(
        old, lambda r: ";".join(x for x in r.split(";") if x and not _OWNED.match(x)) if r else "", pa.string()
    ).fill_null(""))
    key = pc.add(pc.multiply(code, len(foreign.dictionary)), pc.cast(foreign.indices, pa.int64()))
    distinct = pc.dictionary_encode(_flat(key))
    texts = []
    for k in distinct.dictionary.to_pylist():
        bits, extra = divmod(k, len(foreign.dictionary))
        parts = [name for i, name in enumerate(names) if bits >> i & 1]
        parts += [foreign.dictionary[extra].as_py()] if foreign.dictionary[extra].as_py() else []
        texts.append(";".join(parts) or None)
    return pa.array(texts, pa.string()).take(distinct.indices)


def reason_counts(table: pa.Table) -> Counter:
    """Rejected clips per reason (a clip failing two rules counts under both)."""
    counts: Counter = Counter()
    vc = pc.value_counts(table["reject_reason"].combine_chunks())
    for item in vc.to_pylist():
        if item["values"]:
            for r in item["values"].split(";"):
                counts[r] += item["counts"]
    return counts


@dataclass(frozen=True)
class RunFilter:
    """A run's thresholds, resolved once: the one thing that applies them (``rushes filter``, and ``rushes curate`` to
    each video's clips before its part is written, to the parts the near-duplicate search rewrites, and to the
    whole run at its end)."""

    preset: str  # recorded in every clip's filter_preset
    config: FilterConfig
    chosen_by: str = "rushes curate"  # who chose these thresholds (filter.json says; a curate rerun keeps "rushes filter")
    blocklist: object = None  # rushes.curate.pdq.Blocklist of the blocklisted rule; None: no list

    def with_blocklist(self, run_dir) -> RunFilter:
        """This filter with the hash list kept in ``run_dir`` (``OUT/config/block_hashes.txt``), if any."""
        return dataclasses.replace(self, blocklist=load_blocklist(run_dir))

    @classmethod
    def resolve(cls, preset: str = "default", overrides: dict | None = None,
                chosen_by: str = "rushes curate") -> RunFilter:
        """A preset with ``overrides`` (field name -> value); errors name the bad key or preset."""
        return cls(preset, resolve_config(preset, overrides), chosen_by)

    @classmethod
    def for_curate(cls, cfg) -> RunFilter:
        """The filter of a curate run (:class:`rushes.curate.config.CurateConfig`): the thresholds ``rushes filter``
        applied last when the run keeps them (``cfg.filter_params``), else its preset; a cuts-only run (no scores)
        judges no clip as missing them."""
        missing = None if cfg.scores_preset else {"reject_missing": False}
        if cfg.filter_params:
            return cls.resolve(cfg.filter_preset, {**json.loads(cfg.filter_params), **(missing or {})},
                               "rushes filter")
        return cls.resolve(cfg.filter_preset, missing)

    def apply(self, clips: pa.Table) -> pa.Table:
        """``clips`` with ``keep``, ``reject_reason``, ``filter_preset`` and ``filter_params`` decided."""
        return apply_filter(clips, self.config, preset=self.preset, blocklist=self.blocklist)

    def run(self, run_dir, dry_run: bool = False) -> dict:
        """Re-decide every clips part of ``run_dir``; see :func:`filter_run`."""
        started = time.perf_counter()
        paths = manifests.part_paths(run_dir, "clips")
        if not paths and not manifests.part_paths(run_dir, "videos"):
            raise ManifestError(f"no clips manifest in {run_dir}: expected "
                                f"{manifests.manifest_dir(run_dir, 'clips')}/*.parquet; run `rushes curate` first")
        # A curated run whose every video failed has videos rows but no clips: nothing to filter, not an error.
        total = kept = rewritten = 0
        reasons: Counter = Counter()
        faced = 0  # clips whose faces detector ran: the faces rule judges only those
        decided = ("keep", "reject_reason", "filter_preset", "filter_params")
        seen: dict[str, str] = {}  # clip_id -> the part it was read from: an id twice is a damaged manifest
        for path in paths:
            before = manifests.read_part(path, "clips")
            ids = before.column("clip_id").to_pylist()
            clash = seen.keys() & set(ids)  # set operations in C: 100,000 ids cost milliseconds
            if clash:
                clip_id = min(clash)
                raise ManifestError(f"clips manifest in {run_dir} has duplicate clip_id {clip_id} (in "
                                    f"{seen[clip_id]} and {storage.name(path)}); delete the copied part and rerun")
            seen.update(dict.fromkeys(ids, storage.name(path)))
            after = self.apply(before)
            total += after.num_rows
            kept += pc.sum(after["keep"]).as_py() or 0
            reasons.update(reason_counts(after))
            if "guard_models" in after.column_names:
                faced += pc.sum(_ran(after, "faces")).as_py() or 0
            if not dry_run and not all(before[c].equals(after[c]) for c in decided):
                manifests.write_part(run_dir, "clips", after, part_name=Path(path).stem)  # a Path, or a URI
                rewritten += 1
        result = {"preset": self.preset, "params": json.loads(self.config.to_json()), "chosen_by": self.chosen_by,
                  "dry_run": dry_run, "clips": total, "kept": kept,
                  "rejected": total - kept,
                  "reasons": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
                  "parts_rewritten": rewritten, "filter_s": round(time.perf_counter() - started, 3)}
        if self.config.max_face_area is not None and total and not faced:
            result["notes"] = ["the faces rule judged no clip: the run was curated without face scores (they are "
                               "opt-in); rerun rushes curate with --face-scores to judge faces"]
        if not dry_run:
            manifests.write_json_atomic(storage.join(run_dir, "filter.json"),
                                        {**result, "created_at": manifests.now_utc().isoformat()})
            manifests.update_summary(run_dir, "filter", result)
        return result


def blocklist_location(run_dir):
    """Where a run keeps its PDQ hash list (one hash per line, normalised)."""
    return storage.join(run_dir, *BLOCKLIST_FILE)


def store_blocklist(run_dir, path) -> int:
    """Check the hash list at ``path`` (raises ValueError naming the bad line) and keep it as the run's list;
    returns its number of distinct hashes."""
    from rushes.curate.pdq import Blocklist

    found = Blocklist.read(path)
    storage.write_bytes_atomic(blocklist_location(run_dir), found.to_text().encode())
    return len(found)


def load_blocklist(run_dir):
    """The run's hash list (:class:`rushes.curate.pdq.Blocklist`), or None when it has none."""
    from rushes.curate.pdq import Blocklist

    where = blocklist_location(run_dir)
    if not storage.is_file(where):
        return None
    try:
        return Blocklist.parse(storage.read_bytes(where).decode("utf-8"), str(where))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not a text hash list ({exc}); give it again with --block-hashes") from exc


def filter_run(run_dir, preset: str = "default", overrides: dict | None = None, dry_run: bool = False,
               block_hashes=None) -> dict:
    """Re-apply thresholds to the clips manifest of ``run_dir`` and return the counts.

    Each part file is replaced atomically under its own name (only when its decisions changed), then
    ``OUT/filter.json`` records the thresholds, then ``summary.json["filter"]`` the counts. With
    ``dry_run`` nothing is written. ``block_hashes``: a new PDQ hash list for the blocklisted rule (kept as the
    run's list unless ``dry_run``); without it the run's own list (if any) is used. Returns ``{"preset",
    "params", "clips", "kept", "rejected", "reasons": {reason: count}, "parts_rewritten", "filter_s"}``.
    """
    run_filter = RunFilter.resolve(preset, overrides, "rushes filter")
    if block_hashes is not None and dry_run:
        from rushes.curate.pdq import Blocklist

        run_filter = dataclasses.replace(run_filter, blocklist=Blocklist.read(block_hashes))
    else:
        if block_hashes is not None and storage.is_dir(run_dir):
            store_blocklist(run_dir, block_hashes)
        run_filter = run_filter.with_blocklist(run_dir)
    return run_filter.run(run_dir, dry_run)


def last_chosen(run_dir) -> RunFilter | None:
    """The filter ``rushes filter`` applied last to ``run_dir`` (its ``filter.json``), or None when it never ran
    there (or curate's own filter was applied since). A ``filter.json`` that cannot be read back is a
    :class:`ManifestError` naming it and the fix."""
    path = storage.join(run_dir, "filter.json")
    if not storage.is_file(path):
        return None
    try:
        record = json.loads(storage.read_bytes(path))
        if record.get("chosen_by") != "rushes filter":
            return None
        params = record["params"]
        known = {f.name for f in dataclasses.fields(FilterConfig)}
        return RunFilter.resolve(record["preset"], {k: v for k, v in params.items() if k in known}, "rushes filter")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON, a missing key, a refused value
        raise ManifestError(f"{path} cannot be read back ({type(exc).__name__}: {exc}): run `rushes filter "
                            f"{run_dir}` again with the thresholds you want, or delete it") from None


def format_counts(result: dict) -> str:
    """Counts per reason as aligned text lines (what ``rushes filter`` prints); a dry run says it is one."""
    written = "dry run, nothing written" if result.get("dry_run") else f"{result['parts_rewritten']} part(s) rewritten"
    lines = [f"preset {result['preset']}: {result['kept']} kept, {result['rejected']} rejected "
             f"of {result['clips']} clips ({written}, {result['filter_s']:.2f} s)"]
    if result["reasons"]:
        width = max(len(r) for r in result["reasons"])
        lines.append("rejected per reason (a clip failing several rules counts under each):")
        lines += [f"  {r.ljust(width)}  {c}" for r, c in result["reasons"].items()]
    lines += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(lines)
