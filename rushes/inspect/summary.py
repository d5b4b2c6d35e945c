"""What a run kept and why, computed from its manifests and ``summary.json``.

Usage::

    from rushes.inspect.summary import summarize, format_summary
    s = summarize("OUT")          # RunSummary: counts, reasons, score percentiles, caption lengths
    print(format_summary(s))      # the text ``rushes inspect OUT`` prints

Counts come from the manifests (the truth after any re-filtering); throughput comes from
``summary.json``, which each stage writes under its own key. Missing manifests or stages are
reported as absent, never as errors: a run may not have been captioned yet.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rushes import storage
from rushes.manifests import store
from rushes.manifests.schema import CLIP_SCORES, GUARD_SCORES
from rushes.inspect.table import format_table, format_value, strict_json

PERCENTILES = (5, 25, 50, 75, 95)
# Score columns with numbers (camera_motion is a label and is counted instead).
# The guardrail scores are among them: a clip rejected as nsfw, faces, watermark or ai_generated shows the number
# behind it on its card (docs/guardrails.md).
NUMERIC_SCORES = tuple(f.name for f in (*CLIP_SCORES, *GUARD_SCORES)
                       if pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
LABEL_SCORES = tuple(f.name for f in CLIP_SCORES if pa.types.is_string(f.type))
UNSPECIFIED = "(unspecified)"
STAGE_ORDER = ("curate", "filter", "caption", "train")  # pipeline order for the throughput table


@dataclass(frozen=True)
class ErrorClass:
    """Failed rows sharing a stage and a message shape (paths and numbers masked)."""

    stage: str
    message_class: str
    count: int
    example: str


@dataclass(frozen=True)
class Distribution:
    """Percentiles (linear interpolation, as numpy) of one numeric column over its non-null values."""

    name: str
    unit: str
    description: str
    count: int
    percentiles: dict[int, float]
    mean: float | None
    min: float | None
    max: float | None


@dataclass(frozen=True)
class CaptionStats:
    """Captions of one captioner and prompt version: ok/error counts and caption length in words."""

    captioner: str
    prompt_version: str
    ok: int
    error: int
    errors: list[ErrorClass]
    words: Distribution
    output_tokens_mean: float | None


@dataclass(frozen=True)
class CaptionBudget:
    """Captions a training stage (``train``, ``encode``) cut to its text-token budget, from summary.json."""

    stage: str
    budget: int | None  # max_text_tokens
    over: int  # captions longer than it
    captions: int | None  # captions the stage embedded


@dataclass(frozen=True)
class StageThroughput:
    """One stage's entry of summary.json: wall time, rates (``*_per_s``) and time per step."""

    stage: str
    wall_s: float | None
    rates: dict[str, float]
    step_s: dict[str, float]


@dataclass(frozen=True)
class RunSummary:
    """Everything ``rushes inspect OUT`` prints."""

    run_dir: str
    videos_total: int
    videos_ok: int
    videos_error: int
    video_errors: list[ErrorClass]
    footage_s: float  # duration of every video whose duration is known
    footage_ok_s: float  # duration of videos with status ok
    clips_total: int
    clips_kept: int
    clips_rejected: int
    clips_s: float
    kept_s: float
    reasons: list[tuple[str, int]]  # each ';'-separated reason counted on its own, most common first
    reason_combos: list[tuple[str, int]]  # the full reject_reason strings
    scores: list[Distribution]
    labels: dict[str, list[tuple[str, int]]]  # label score column -> counts per label
    captions: list[CaptionStats]
    captioned_clips: int  # distinct clips with at least one ok caption
    throughput: list[StageThroughput] = field(default_factory=list)
    caption_budgets: list[CaptionBudget] = field(default_factory=list)  # train/encode: captions cut to the budget


def split_reasons(reason: str | None) -> list[str]:
    """The individual rules in a ';'-joined ``reject_reason`` ('motion<0.02;dark' -> ['motion<0.02', 'dark'])."""
    if not reason:
        return []
    return [r.strip() for r in reason.split(";") if r.strip()]


def message_class(message: str | None) -> str:
    """A message with paths, quoted values and numbers masked, so the same failure groups together.

    Only the part before the first ';' is kept: by house style what follows is the suggested fix.
    """
    if not message:
        return "(no message)"
    text = message.strip().splitlines()[0].split(";")[0]
    text = re.sub(r"\[[^\]]*@ 0x[0-9a-fA-F]+\]\s*", "", text)  # ffmpeg's log prefix: [mov,mp4 @ 0x55d0...]
    text = re.sub(r"(['\"]).*?\1", "<...>", text)
    text = re.sub(r"\S*[/\\][^\s:;,]*", "<path>", text)
    text = re.sub(r"\b0x[0-9a-fA-F]+\b|\b\d+(\.\d+)?\b", "N", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text[:100]


def error_classes(stages: list, messages: list) -> list[ErrorClass]:
    """Group failed rows by (error stage, message class), most common first."""
    counts: Counter = Counter()
    examples: dict[tuple[str, str], str] = {}
    for stage, msg in zip(stages, messages):
        key = (stage or "(unknown)", message_class(msg))
        counts[key] += 1
        examples.setdefault(key, msg or "")
    return [ErrorClass(k[0], k[1], n, examples[k]) for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def distribution(name: str, values: list, unit: str = "", description: str = "") -> Distribution:
    """Percentiles p5..p95, mean, min and max of the non-null, finite ``values``."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return Distribution(name, unit, description, 0, {}, None, None, None)
    pct = np.percentile(arr, PERCENTILES)
    return Distribution(name, unit, description, int(arr.size), {p: float(v) for p, v in zip(PERCENTILES, pct)},
                        float(arr.mean()), float(arr.min()), float(arr.max()))


def _meta(schema: pa.Schema, name: str, key: str) -> str:
    meta = schema.field(name).metadata or {}
    return meta.get(key.encode(), b"").decode()


def _sum(values: list) -> float:
    return float(sum(v for v in values if v is not None))


def _reason_counts(keep: list, reasons: list) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    single: Counter = Counter()
    combos: Counter = Counter()
    for k, r in zip(keep, reasons):
        if k:
            continue
        parts = split_reasons(r) or [UNSPECIFIED]
        single.update(parts)
        combos[";".join(parts)] += 1
    order = lambda kv: (-kv[1], kv[0])  # noqa: E731 - most common first, ties by name
    return sorted(single.items(), key=order), sorted(combos.items(), key=order)


def word_count(text: str | None) -> int:
    """Words in a caption: whitespace-separated tokens."""
    return len(text.split()) if text else 0


def caption_stats(captions: pa.Table) -> list[CaptionStats]:
    """Per (captioner, prompt_version): ok and error counts and the length of ok captions in words."""
    cols = captions.select(["captioner", "prompt_version", "status", "caption", "error_stage", "error_message",
                            "output_tokens"]).to_pydict()
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(cols["captioner"], cols["prompt_version"])):
        groups.setdefault((key[0] or "(unknown)", key[1] or "(unknown)"), []).append(i)
    out = []
    for (captioner, prompt), idx in sorted(groups.items()):
        ok = [i for i in idx if cols["status"][i] == "ok"]
        bad = [i for i in idx if cols["status"][i] != "ok"]
        words = distribution("caption_words", [word_count(cols["caption"][i]) for i in ok], "words",
                             "words in the dense caption")
        tokens = [cols["output_tokens"][i] for i in ok if cols["output_tokens"][i] is not None]
        errors = error_classes([cols["error_stage"][i] for i in bad], [cols["error_message"][i] for i in bad])
        out.append(CaptionStats(captioner, prompt, len(ok), len(bad), errors, words,
                                float(np.mean(tokens)) if tokens else None))
    return out


def _numeric_leaves(payload, prefix: str = ""):
    if isinstance(payload, dict):
        for key, value in payload.items():
            yield from _numeric_leaves(value, f"{prefix}{key}.")
    elif isinstance(payload, (int, float)) and not isinstance(payload, bool):
        yield prefix[:-1], float(payload)


def caption_budgets(summary: dict) -> list[CaptionBudget]:
    """The ``captions_over_budget`` counts that ``rushes train`` and ``rushes encode`` wrote to summary.json."""
    out = []
    for stage in ("encode", "train"):
        payload = summary.get(stage)
        if isinstance(payload, dict) and isinstance(payload.get("captions_over_budget"), int):
            captions = payload.get("clips", payload.get("ok"))
            out.append(CaptionBudget(stage, payload.get("caption_token_budget"), payload["captions_over_budget"],
                                     captions if isinstance(captions, int) else None))
    return out


def stage_throughput(summary: dict) -> list[StageThroughput]:
    """Wall time, every ``*_per_s`` rate and the ``stage_s`` step times of each stage in summary.json."""
    out = []
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    for stage, payload in sorted(summary.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])):
        if not isinstance(payload, dict):
            continue
        leaves = dict(_numeric_leaves(payload))
        rates = {k.split(".")[-1]: v for k, v in leaves.items() if k.split(".")[-1].endswith("_per_s")}
        steps = {k.split(".")[-1]: v for k, v in leaves.items() if ".stage_s." in f".{k}"}
        wall = payload.get("wall_s", payload.get(f"{stage}_s"))  # filter writes filter_s
        out.append(StageThroughput(stage, float(wall) if isinstance(wall, (int, float)) else None, rates, steps))
    return out


def summarize(run_dir: str | os.PathLike) -> RunSummary:
    """Read a run directory's manifests and summary.json into a :class:`RunSummary`."""
    run_dir = run_dir if storage.is_remote(run_dir) else Path(run_dir)
    if not storage.is_dir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir} does not exist; pass the OUT folder a stage wrote")
    videos = store.read(run_dir, "videos")
    clips = store.read(run_dir, "clips")
    captions = store.read(run_dir, "captions")
    v = videos.select(["status", "duration_s", "error_stage", "error_message"]).to_pydict()
    failed = [i for i, s in enumerate(v["status"]) if s == "error"]  # a duplicate is not a failure
    c = clips.select(["keep", "reject_reason", "duration_s", *LABEL_SCORES]).to_pydict()
    reasons, combos = _reason_counts(c["keep"], c["reject_reason"])
    scores = [distribution(n, clips.column(n).to_pylist(), _meta(clips.schema, n, "unit"),
                           _meta(clips.schema, n, "description")) for n in NUMERIC_SCORES]
    labels = {n: sorted(Counter(x for x in c[n] if x is not None).items(), key=lambda kv: (-kv[1], kv[0]))
              for n in LABEL_SCORES}
    ok_caps = captions.filter(pc.equal(captions.column("status"), "ok"))
    stages = store.read_summary(run_dir)
    return RunSummary(
        run_dir=str(run_dir),
        videos_total=videos.num_rows,
        videos_ok=sum(s == "ok" for s in v["status"]),
        videos_error=len(failed),
        video_errors=error_classes([v["error_stage"][i] for i in failed], [v["error_message"][i] for i in failed]),
        footage_s=_sum(v["duration_s"]),
        footage_ok_s=_sum([d for d, s in zip(v["duration_s"], v["status"]) if s == "ok"]),
        clips_total=clips.num_rows,
        clips_kept=sum(1 for k in c["keep"] if k),
        clips_rejected=sum(1 for k in c["keep"] if not k),
        clips_s=_sum(c["duration_s"]),
        kept_s=_sum([d for d, k in zip(c["duration_s"], c["keep"]) if k]),
        reasons=reasons,
        reason_combos=combos,
        scores=scores,
        labels=labels,
        captions=caption_stats(captions),
        captioned_clips=len(set(ok_caps.column("clip_id").to_pylist())),
        throughput=stage_throughput(stages),
        caption_budgets=caption_budgets(stages),
    )


def hours(seconds: float) -> str:
    """'2.51 h (9,036 s)': hours for scale, seconds for small runs."""
    return f"{seconds / 3600:.2f} h ({seconds:,.1f} s)"


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _section(title: str) -> str:
    return f"\n{title}\n{'=' * len(title)}"


def _format_videos(s: RunSummary) -> list[str]:
    lines = [_section("Videos"),
             format_table(["", "count", "share"], [["in", s.videos_total, ""],
                                                    ["ok", s.videos_ok, _pct(s.videos_ok, s.videos_total)],
                                                    ["failed", s.videos_error, _pct(s.videos_error, s.videos_total)]]),
             "",
             f"footage in   {hours(s.footage_s)}",
             f"footage ok   {hours(s.footage_ok_s)}",
             f"in clips     {hours(s.clips_s)}",
             f"kept         {hours(s.kept_s)}  ({_pct_float(s.kept_s, s.footage_s)} of footage in)"]
    if s.video_errors:
        lines += ["", "Failures by stage and message:",
                  format_table(["stage", "count", "message"], [[e.stage, e.count, e.message_class]
                                                               for e in s.video_errors], max_cell=90)]
    return lines


def _pct_float(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _format_clips(s: RunSummary) -> list[str]:
    counts = [["total", s.clips_total, ""], ["kept", s.clips_kept, _pct(s.clips_kept, s.clips_total)],
              ["rejected", s.clips_rejected, _pct(s.clips_rejected, s.clips_total)]]
    lines = [_section("Clips"), format_table(["", "count", "share"], counts)]
    if s.reasons:
        lines += ["", "Rejected, per reason (a clip with several reasons counts once in each):",
                  format_table(["reason", "clips", "share of all"],
                               [[r, n, _pct(n, s.clips_total)] for r, n in s.reasons])]
        lines += ["", "Rejected, per combination of reasons:",
                  format_table(["reject_reason", "clips"], [[r, n] for r, n in s.reason_combos])]
    return lines


def _format_scores(s: RunSummary) -> list[str]:
    rows = []
    for d in s.scores:
        if d.count:
            rows.append([d.name, d.unit, d.count, *[d.percentiles[p] for p in PERCENTILES], d.mean])
    if not rows:
        return []
    lines = [_section("Scores (all clips)"),
             format_table(["score", "unit", "n", *[f"p{p}" for p in PERCENTILES], "mean"], rows)]
    for name, counts in s.labels.items():
        if counts:
            lines += ["", f"{name}: " + ", ".join(f"{label} {n}" for label, n in counts)]
    return lines


def _format_captions(s: RunSummary) -> list[str]:
    if not s.captions:
        return [_section("Captions"), "no captions manifest yet (run `rushes caption`)"]
    rows = []
    for c in s.captions:
        w = c.words
        rows.append([c.captioner, c.prompt_version, c.ok, c.error, w.min, *[w.percentiles.get(p) for p in PERCENTILES],
                     w.max, w.mean, c.output_tokens_mean])
    lines = [_section("Captions"),
             f"clips with an ok caption: {s.captioned_clips} of {s.clips_kept} kept",
             "caption length in words:",
             format_table(["captioner", "prompt", "ok", "error", "min", *[f"p{p}" for p in PERCENTILES], "max",
                           "mean", "out tokens"], rows)]
    for b in s.caption_budgets:
        of = f" of {b.captions}" if b.captions is not None else ""
        fix = "; raise --max-text-tokens to train on all of them" if b.over else ""
        lines.append(f"captions cut to the {b.budget}-token budget ({b.stage}): {b.over}{of}{fix}")
    errors = [[c.captioner, e.stage, e.count, e.message_class] for c in s.captions for e in c.errors]
    if errors:
        lines += ["", "Caption failures:",
                  format_table(["captioner", "stage", "count", "message"], errors, max_cell=90)]
    return lines


def _format_throughput(s: RunSummary) -> list[str]:
    if not s.throughput:
        return [_section("Throughput"), "no summary.json in the run directory"]
    rows = []
    for t in s.throughput:
        rates = "  ".join(f"{k} {format_value(v)}" for k, v in t.rates.items())
        steps = "  ".join(f"{k} {format_value(v)}s" for k, v in t.step_s.items())
        rows.append([t.stage, t.wall_s, rates, steps])
    return [_section("Throughput (summary.json)"), format_table(["stage", "wall_s", "rates", "time per step"], rows,
                                                                max_cell=100)]


def summary_json(s: RunSummary) -> str:
    """The summary as JSON (``rushes inspect OUT --format json``): the dataclass fields, nested."""
    return strict_json(dataclasses.asdict(s)) + "\n"


def format_summary(s: RunSummary) -> str:
    """The terminal report: videos, footage hours, clips and reasons, scores, captions, throughput."""
    lines = [f"rushes inspect {s.run_dir}"]
    lines += _format_videos(s) + _format_clips(s) + _format_scores(s) + _format_captions(s) + _format_throughput(s)
    return "\n".join(lines) + "\n"
