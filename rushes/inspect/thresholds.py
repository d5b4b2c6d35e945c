"""The filter a run's clips were judged by, read back from the clips manifest: the preset, its thresholds per score
column (drawn on the report's histograms), and which scores of a rejected clip fail them (highlighted).

Usage::

    active = active_filter(clip_rows)      # rows of the clips manifest (filter_preset, filter_params, scores)
    active.preset, active.thresholds       # 'strict', {'sharpness': Threshold(min=150.0, min_field='min_sharpness')}
    failing_scores(row, active)            # ['sharpness', 'camera'] for a clip rejected as blurry;camera=shaky

``filter_params`` is the JSON of the thresholds ``rushes filter`` (or curate) applied last. A field ``min_X`` or
``max_X`` bounds the score column :data:`COLUMN_OF` names; a field not listed there bounds the column ``X`` (or
``X_score``) when the clips manifest has one, so a rule added to the filter later is drawn without a change here.
Nothing read back is trusted: a ``filter_params`` that is not a JSON object, or a threshold that is not a finite
number, is left out (the page says the filter is unknown rather than failing).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from rushes.media.provenance import AI_SOURCE_TYPES

# Filter fields whose score column is not the field's name without min_/max_ (rushes.curate.filter.FilterConfig).
COLUMN_OF = {
    "min_motion": "motion_mean", "max_motion": "motion_mean", "max_black_frame_frac": "black_frame_frac",
    "min_brightness": "brightness_mean", "max_brightness": "brightness_mean",
    "max_flat_frame_frac": "flat_frame_frac", "min_contrast": "contrast_std", "max_text_area": "text_area_frac",
    "min_aspect": "aspect_ratio", "max_aspect": "aspect_ratio", "min_duration_s": "duration_s",
    "max_duration_s": "duration_s", "max_face_area": "face_area_frac",
}
# Fields named min_ that reject clips at or above them (the share of a mark's bits that makes a clip
# ai_generated): drawn and judged as an upper bound of the kept clips.
REJECT_AT_OR_ABOVE = {"min_invisible_mark_match": "invisible_mark_match"}
_BOUND = re.compile(r"^(min|max)_(\w+)$")
# Reasons that name a clip's span or its camera label rather than a numeric score.
SPAN_REASONS = ("too_short", "too_long")


@dataclass(frozen=True)
class Threshold:
    """The bounds one score column was judged by (None: no bound on that side)."""

    min: float | None = None
    max: float | None = None
    min_field: str | None = None  # the filter setting that set it, e.g. min_sharpness (rushes filter --min-sharpness)
    max_field: str | None = None
    max_inclusive: bool = False  # a value equal to max fails too (REJECT_AT_OR_ABOVE)

    def fails(self, value) -> bool:
        if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        over = self.max is not None and (value >= self.max if self.max_inclusive else value > self.max)
        return (self.min is not None and value < self.min) or over


@dataclass(frozen=True)
class ActiveFilter:
    """The preset and thresholds most clips were judged by; ``others``: clips judged by another filter."""

    preset: str | None
    params: dict = field(default_factory=dict)
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    camera_rejected: tuple[str, ...] = ()
    clips: int = 0
    others: int = 0


def _column(name: str, columns: set[str]) -> str | None:
    if name in COLUMN_OF:
        return COLUMN_OF[name]
    if name in REJECT_AT_OR_ABOVE:
        return REJECT_AT_OR_ABOVE[name]
    m = _BOUND.match(name)
    if not m:
        return None
    stem = m.group(2)
    return next((c for c in (stem, f"{stem}_score") if c in columns), None)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def thresholds_of(params: dict, columns: set[str]) -> dict[str, Threshold]:
    """Score column -> :class:`Threshold` from a ``filter_params`` object (``columns``: the clips manifest's)."""
    bounds: dict[str, dict] = {}
    for name, value in params.items():
        column, number = _column(name, columns), _number(value)
        if column is None or number is None:
            continue
        if name in REJECT_AT_OR_ABOVE:
            if params.get("reject_ai_generated") is not False:
                bounds.setdefault(column, {}).update(max=number, max_field=name, max_inclusive=True)
            continue
        side = "min" if name.startswith("min_") else "max"
        bounds.setdefault(column, {})[side] = number
        bounds[column][f"{side}_field"] = name
    return {c: Threshold(**b) for c, b in bounds.items()}


def _params(text) -> dict | None:
    try:
        params = json.loads(text) if text else None
    except (TypeError, json.JSONDecodeError):
        return None
    return params if isinstance(params, dict) else None


def active_filter(clip_rows: list[dict]) -> ActiveFilter:
    """The filter the most clips of ``clip_rows`` were judged by (see the module doc)."""
    counts = Counter((r.get("filter_preset"), r.get("filter_params")) for r in clip_rows)
    if not counts:
        return ActiveFilter(None)
    (preset, text), n = counts.most_common(1)[0]
    params = _params(text)
    if params is None:
        return ActiveFilter(preset if isinstance(preset, str) else None, clips=n, others=len(clip_rows) - n)
    columns = set().union(*(r.keys() for r in clip_rows[:1]))
    camera = params.get("reject_camera_motion")
    camera = tuple(str(x) for x in camera) if isinstance(camera, (list, tuple)) else ()
    return ActiveFilter(preset if isinstance(preset, str) else None, params, thresholds_of(params, columns), camera,
                        n, len(clip_rows) - n)


def failing_scores(row: dict, reasons: list[str], active: ActiveFilter) -> list[str]:
    """The scores a rejected clip fails: score columns past a threshold, ``dur`` for a span rule, ``camera`` for a
    camera label the filter rejects (``reasons``: the clip's reject reasons)."""
    fails = [c for c, t in active.thresholds.items() if c != "duration_s" and t.fails(row.get(c))]
    if any(r in SPAN_REASONS for r in reasons) or active.thresholds.get("duration_s", Threshold()).fails(
            row.get("duration_s")):
        fails.append("dur")
    if any(r.startswith("camera=") for r in reasons):
        fails.append("camera")
    if "ai_generated" in reasons and row.get("c2pa_source_type") in AI_SOURCE_TYPES:
        fails.append("c2pa")  # what the source's own C2PA manifest says it is
    return fails
