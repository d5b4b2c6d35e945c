"""The self-contained HTML report: summary, reasons, score histograms and a contact sheet.

Usage::

    from rushes.inspect.page import ReportConfig, build_report
    result = build_report("OUT", "report.html", ReportConfig())
    # report.html plus report_files/thumbs/*.jpg beside it; open the page offline in any browser

The page has no outside references (inline CSS, vanilla JS, inline SVG). Clip rows are not written as
HTML: they live in one embedded JSON document (column arrays) and the page renders one page of rows
at a time, with ``loading="lazy"`` thumbnails, so a 10,000-clip run opens about as fast as a small one.
"""

from __future__ import annotations

import html
import json
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np

from rushes import storage
from rushes.manifests import store
from rushes.inspect import assets
from rushes.inspect.summary import (NUMERIC_SCORES, PERCENTILES, UNSPECIFIED, Distribution, RunSummary, distribution,
                                   split_reasons, summarize, word_count)
from rushes.inspect.table import format_value
from rushes.inspect.config import ReportConfig, ThumbConfig
from rushes.inspect.thumbs import extract_thumbnails, thumb_tasks
from rushes.inspect.playback import clip_url
from rushes.inspect.thresholds import ActiveFilter, Threshold, active_filter, failing_scores


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and what making it cost."""

    html_path: Path
    files_dir: Path
    clips: int
    thumbs_ok: int
    thumbs_failed: int
    thumbs_s: float
    total_s: float


def files_dir_for(html_path: Path) -> Path:
    """The folder beside the page holding its thumbnails: ``report.html`` -> ``report_files/``."""
    return html_path.with_name(f"{html_path.stem}_files")


def _round(value, digits: int = 4):
    """Floats rounded to ``digits`` significant digits: keeps the embedded JSON small."""
    if value is None or not isinstance(value, float):
        return value
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _latest_captions(run_dir: Path) -> dict[str, dict]:
    """Per clip, its newest caption row (ok rows preferred over errors)."""
    caps = store.read(run_dir, "captions").select(
        ["clip_id", "caption", "captioner", "prompt_version", "status", "error_message", "created_at"]).to_pylist()
    best: dict[str, dict] = {}
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    for row in caps:
        key = (row["status"] == "ok", row["created_at"] or epoch)
        cur = best.get(row["clip_id"])
        if cur is None or key > (cur["status"] == "ok", cur["created_at"] or epoch):
            best[row["clip_id"]] = row
    return best


def _strip_width(row: dict, cfg: ThumbConfig) -> int | None:
    w, h = row.get("width_px"), row.get("height_px")
    if not w or not h:
        return None
    frame_w = 2 * round(cfg.height_px * w / h / 2)
    return cfg.frames_per_clip * frame_w + 2 * (cfg.frames_per_clip - 1)


def clip_records(run_dir: Path, clip_rows: list[dict], video_paths: dict[str, str], thumbs: dict, thumb_url: str,
                 cfg: ReportConfig) -> dict:
    """The contact sheet's data as column arrays (one entry per clip), ready to embed as JSON."""
    captions = _latest_captions(run_dir)
    cols: dict[str, list] = {k: [] for k in ("id", "video", "start", "end", "dur", "keep", "reason", "thumb",
                                              "thumb_w", "thumb_err", "caption", "caption_by", "caption_err",
                                              "words", "camera", "c2pa")}
    scores: dict[str, list] = {n: [] for n in NUMERIC_SCORES}
    for row in clip_rows:
        cap = captions.get(row["clip_id"]) or {}
        thumb = thumbs.get(row["clip_id"])
        ok_cap = cap.get("status") == "ok"
        cols["id"].append(row["clip_id"])
        cols["video"].append(video_paths.get(row["video_id"], row["video_id"]))
        cols["start"].append(_round(row.get("start_s"), 6))
        cols["end"].append(_round(row.get("end_s"), 6))
        cols["dur"].append(_round(row.get("duration_s")))
        cols["keep"].append(1 if row["keep"] else 0)
        reasons = ";".join(split_reasons(row.get("reject_reason"))) or UNSPECIFIED
        cols["reason"].append("" if row["keep"] else reasons)
        cols["thumb"].append(quote(f"{thumb_url}/{thumb.file}") if thumb and thumb.file else None)
        cols["thumb_w"].append(_strip_width(row, cfg.thumbs))
        cols["thumb_err"].append(thumb.error if thumb else None)
        cols["caption"].append(cap.get("caption") if ok_cap else None)
        cols["caption_by"].append(f"{cap.get('captioner')} · {cap.get('prompt_version')}" if cap else None)
        cols["caption_err"].append(cap.get("error_message") if cap and not ok_cap else None)
        cols["words"].append(word_count(cap.get("caption")) if ok_cap else None)
        cols["camera"].append(row.get("camera_motion"))
        cols["c2pa"].append(c2pa_label(row))
        for n in NUMERIC_SCORES:
            scores[n].append(_round(row.get(n)))
    # Columns that are null for every clip are dropped: the page shows only scores the run computed.
    cols["scores"] = {n: v for n, v in scores.items() if any(x is not None for x in v)}
    return cols


def c2pa_label(row: dict) -> str | None:
    """What a clip's source says of itself in C2PA, for its card: the digital source type (with "invalid" when the
    manifest does not validate), "manifest" without one; None when the file has no manifest or it was not read."""
    if not row.get("c2pa_present"):
        return None
    label = row.get("c2pa_source_type") or "manifest"
    return label if row.get("c2pa_valid") else f"{label} (invalid)"


def clip_extras(run_dir, clip_rows: list[dict], videos: dict[str, dict], html_dir: Path,
                active: ActiveFilter) -> dict:
    """More column arrays of the contact sheet: what each clip's ``<video>`` plays (``play``, or ``play_err``), the
    scores a rejected clip fails (``fails``) and its source video's index in :func:`video_list` (``vidx``)."""
    cols: dict[str, list] = {"play": [], "play_err": [], "fails": [], "vidx": []}
    index = {vid: i for i, vid in enumerate(sorted({r["video_id"] for r in clip_rows}))}
    for row in clip_rows:
        url, why = clip_url(run_dir, row, videos.get(row["video_id"]), html_dir)
        cols["play"].append(url)
        cols["play_err"].append(why)
        reasons = split_reasons(row.get("reject_reason"))
        cols["fails"].append([] if row["keep"] else failing_scores(row, reasons, active))
        cols["vidx"].append(index[row["video_id"]])
    return cols


def video_list(clip_rows: list[dict], videos: dict[str, dict]) -> list[dict]:
    """The source videos of the clips (in ``vidx`` order): path and duration, for the per-video timelines."""
    last_end: dict[str, float] = {}
    for r in clip_rows:
        end = r.get("end_s")
        ok = isinstance(end, float) and math.isfinite(end)
        last_end[r["video_id"]] = max(last_end.get(r["video_id"], 0.0), end if ok else 0.0)
    out = []
    for vid in sorted(last_end):
        v = videos.get(vid) or {}
        dur = v.get("duration_s") or last_end[vid]  # a video the videos manifest lacks: up to its last clip
        out.append({"path": v.get("path") or vid, "dur": _round(float(dur))})
    return out


def filter_meta(active: ActiveFilter) -> dict:
    """The active filter as the page's script reads it (preset, thresholds per score column)."""
    return {"preset": active.preset, "clips": active.clips, "others": active.others,
            "camera": list(active.camera_rejected),
            "thresholds": {c: {"min": t.min, "max": t.max, "min_field": t.min_field, "max_field": t.max_field}
                           for c, t in active.thresholds.items()}}


def _threshold_lines(t: Threshold, lo: float, hi: float, w: float, top: float, bottom: float) -> list[str]:
    """SVG of a score's thresholds: a line at each bound, the failing side shaded, labelled with the setting."""
    parts = []
    for side, value, name in (("min", t.min, t.min_field), ("max", t.max, t.max_field)):
        if value is None:
            continue
        x = (min(max(value, lo), hi) - lo) / (hi - lo) * w
        x0, x1 = (0.0, x) if side == "min" else (x, w)
        if x1 > x0:
            parts.append(f'<rect class="thr-zone" x="{x0:.1f}" y="{top:.1f}" width="{x1 - x0:.1f}" '
                         f'height="{bottom - top:.1f}"/>')
        off = " (off the chart)" if not lo <= value <= hi else ""
        tip = html.escape(f"{name} = {format_value(value)}: clips {'below' if side == 'min' else 'above'} it are "
                          f"rejected{off}")
        right = x > w / 2
        parts.append(f'<g class="thr" data-side="{side}" data-value="{value}"><title>{tip}</title>'
                     f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{bottom:.1f}"/>'
                     f'<text x="{x + (-3 if right else 3):.1f}" y="{top + 10:.1f}" '
                     f'text-anchor="{"end" if right else "start"}">{side} {html.escape(format_value(value))}</text></g>')
    return parts


def histogram_svg(d: Distribution, values: list, keep: list, bins: int, threshold: Threshold | None = None) -> str:
    """Inline SVG histogram of one score: kept clips stacked under rejected ones, p5/p50/p95 marked, and the
    active filter's ``threshold`` drawn as lines with the rejected side shaded.

    The range ends at p99 for larger runs (values above fall in the last bin) so one outlier does not
    squash the rest into a single bar.
    """
    pairs = [(float(v), bool(k)) for v, k in zip(values, keep) if v is not None and math.isfinite(v)]
    if not pairs:
        return ""
    arr = np.array([p[0] for p in pairs])
    kept = np.array([p[1] for p in pairs])
    lo = float(arr.min())
    hi = float(np.percentile(arr, 99)) if arr.size >= 200 else float(arr.max())
    if hi <= lo:
        hi = lo + (abs(lo) * 0.01 or 1.0)
    idx = np.clip(((arr - lo) / (hi - lo) * bins).astype(int), 0, bins - 1)
    n_kept = np.bincount(idx[kept], minlength=bins)
    n_rej = np.bincount(idx[~kept], minlength=bins)
    top = max(1, int((n_kept + n_rej).max()))
    w, h, pad = 280, 96, 14
    bw = w / bins
    parts = [f'<svg class="hist" viewBox="0 0 {w} {h + 2 * pad}" role="img" aria-label="histogram of {d.name}">']
    for b in range(bins):
        x0 = lo + (hi - lo) * b / bins
        x1 = lo + (hi - lo) * (b + 1) / bins
        hk, hr = h * n_kept[b] / top, h * n_rej[b] / top
        tip = f"{format_value(x0)} – {format_value(x1)}: {n_kept[b]} kept, {n_rej[b]} rejected"
        parts.append(f'<g><title>{html.escape(tip)}</title>'
                     f'<rect class="kept" x="{b * bw + 0.5:.1f}" y="{pad + h - hk:.1f}" width="{bw - 1:.1f}" '
                     f'height="{hk:.1f}"/>'
                     f'<rect class="rej" x="{b * bw + 0.5:.1f}" y="{pad + h - hk - hr:.1f}" width="{bw - 1:.1f}" '
                     f'height="{hr:.1f}"/></g>')
    last_label = -1e9
    for p in (5, 50, 95):
        v = d.percentiles.get(p)
        if v is None:
            continue
        x = (min(max(v, lo), hi) - lo) / (hi - lo) * w
        anchor = "start" if x < 30 else "end" if x > w - 30 else "middle"
        parts.append(f'<line class="pct" x1="{x:.1f}" x2="{x:.1f}" y1="{pad - 2}" y2="{pad + h}"/>')
        if x - last_label >= 26:  # labels closer than that would overprint each other
            parts.append(f'<text class="pct" x="{x:.1f}" y="{pad - 4}" text-anchor="{anchor}">p{p}</text>')
            last_label = x
    if threshold is not None:
        parts += _threshold_lines(threshold, lo, hi, w, pad, pad + h)
    parts.append(f'<text class="axis" x="0" y="{h + 2 * pad - 1}">{html.escape(format_value(lo))}</text>'
                 f'<text class="axis" x="{w}" y="{h + 2 * pad - 1}" text-anchor="end">'
                 f'{"≥ " if hi < arr.max() else ""}{html.escape(format_value(hi))}</text></svg>')
    return "".join(parts)


def _histograms(s: RunSummary, sheet: dict, bins: int, thresholds: dict[str, Threshold] | None = None) -> str:
    thresholds = thresholds or {}
    cards = []
    keep = sheet["keep"]
    dists = [d for d in s.scores if d.count]
    if any(w is not None for w in sheet["words"]):
        dists.append(distribution("caption_words", sheet["words"], "words", "words in the dense caption"))
    for d in dists:
        values = sheet["words"] if d.name == "caption_words" else sheet["scores"].get(d.name, [])
        svg = histogram_svg(d, values, keep, bins, thresholds.get(d.name))
        pct = " · ".join(f"p{p} {html.escape(format_value(d.percentiles[p]))}" for p in PERCENTILES)
        key = "words" if d.name == "caption_words" else d.name
        unit = f' <span class="unit">{html.escape(d.unit)}</span>' if d.unit else ""
        cards.append(
            f'<div class="card hcard"><div class="hhead"><b>{html.escape(d.name)}</b>{unit}'
            f'<span class="hbtns"><button data-sort="{key}" title="sort the contact sheet by this score">sort</button>'
            f'<button data-pct="{key}" title="show clips at p0, p10, ... p100 of this score">percentiles</button>'
            f'</span></div><div class="desc">{html.escape(d.description)}</div>{svg}'
            f'<div class="pcts">{pct}</div></div>')
    return "\n".join(cards)


def _filter_card(active: ActiveFilter, charted: set[str]) -> str:
    """The preset and thresholds the clips were judged by (``filter_preset``/``filter_params``, applied last);
    ``charted``: the score columns with a histogram (their settings are marked as drawn)."""
    if active.preset is None and not active.params:
        return ('<div class="filterbar"><b>Filter</b> <span class="muted">none recorded: the clips carry no '
                'filter_preset or filter_params (rushes filter OUT applies one)</span></div>')
    items = []
    for name, value in sorted(active.params.items()):
        if value is None or value is False or value == [] or isinstance(value, (dict, list)) and not value:
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list) else format_value(value) \
            if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
        drawn = any(name in (t.min_field, t.max_field) for c, t in active.thresholds.items() if c in charted)
        items.append(f'<span class="setting{" drawn" if drawn else ""}" title="{html.escape(name)}"><b>'
                     f'{html.escape(name)}</b> {html.escape(shown)}</span>')
    scope = f"all {active.clips:,} clips" if not active.others else \
        f"{active.clips:,} clips ({active.others:,} other clips were judged by another filter)"
    preset = html.escape(active.preset or "custom")
    return (f'<div class="filterbar"><b>Filter</b> <span class="preset" id="preset">{preset}</span>'
            f'<span class="muted small">applied last to {scope}; the settings drawn on the histograms are '
            f'underlined</span><div class="settings">{"".join(items)}</div></div>')


def _reason_rows(s: RunSummary) -> str:
    top = max([n for _, n in s.reasons] or [1])
    rows = []
    for reason, n in s.reasons:
        share = 100.0 * n / s.clips_total if s.clips_total else 0
        rows.append(f'<tr data-filter="r:{html.escape(reason)}" class="clickable"><td class="reason">'
                    f'{html.escape(reason)}</td><td class="num">{n}</td><td class="num">{share:.1f}%</td>'
                    f'<td class="barcell"><div class="bar" style="width:{100 * n / top:.1f}%"></div></td></tr>')
    combos = [f'<tr data-filter="c:{html.escape(c)}" class="clickable"><td class="reason">{html.escape(c)}</td>'
              f'<td class="num">{n}</td></tr>' for c, n in s.reason_combos if ";" in c]
    out = ('<table class="tbl"><thead><tr><th>reason</th><th>clips</th><th>share</th><th></th></tr></thead><tbody>'
           + "".join(rows) + "</tbody></table>")
    if combos:
        out += ('<h3>combinations</h3><table class="tbl"><thead><tr><th>reject_reason</th><th>clips</th></tr>'
                '</thead><tbody>' + "".join(combos) + "</tbody></table>")
    return out if rows else '<p class="muted">no rejected clips</p>'


def _failures(run_dir: Path, s: RunSummary, limit: int) -> str:
    if not s.video_errors:
        return '<p class="muted">no failed videos</p>'
    classes = "".join(f'<tr><td>{html.escape(e.stage)}</td><td class="num">{e.count}</td>'
                      f'<td title="{html.escape(e.example)}">{html.escape(e.message_class)}</td></tr>'
                      for e in s.video_errors)
    videos = store.read(run_dir, "videos").select(["path", "status", "error_stage", "error_message"]).to_pylist()
    failed = [v for v in videos if v["status"] == "error"][:limit]
    rows = "".join(f'<tr><td class="path" title="{html.escape(v["path"])}">{html.escape(os.path.basename(v["path"]))}'
                   f'</td><td>{html.escape(v["error_stage"] or "")}</td><td>{html.escape(v["error_message"] or "")}'
                   f'</td></tr>' for v in failed)
    return (f'<table class="tbl"><thead><tr><th>stage</th><th>videos</th><th>message</th></tr></thead><tbody>'
            f'{classes}</tbody></table><details><summary>failed files ({s.videos_error})</summary>'
            f'<table class="tbl"><tbody>{rows}</tbody></table></details>')


def _throughput(s: RunSummary) -> str:
    if not s.throughput:
        return '<p class="muted">no summary.json</p>'
    rows = []
    for t in s.throughput:
        rates = " · ".join(f"{html.escape(k)} {format_value(v)}" for k, v in t.rates.items())
        steps = " · ".join(f"{html.escape(k)} {format_value(v)} s" for k, v in t.step_s.items())
        wall = f"{format_value(t.wall_s)} s" if t.wall_s is not None else ""
        rows.append(f"<tr><td>{html.escape(t.stage)}</td><td class='num'>{wall}</td><td>{rates}</td>"
                    f"<td>{steps}</td></tr>")
    return ('<table class="tbl"><thead><tr><th>stage</th><th>wall</th><th>rates</th><th>time per step</th></tr>'
            '</thead><tbody>' + "".join(rows) + "</tbody></table>")


def _duration(seconds: float) -> str:
    """Hours for real runs, minutes or seconds for small ones."""
    if seconds >= 3600:
        return f"{seconds / 3600:,.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _stat_cards(s: RunSummary) -> str:
    cap_ok = sum(c.ok for c in s.captions)
    items = [("videos in", f"{s.videos_total:,}", f"{s.videos_ok:,} ok · {s.videos_error:,} failed"),
             ("footage in", _duration(s.footage_s), f"{_duration(s.footage_ok_s)} in videos that are ok"),
             ("kept", _duration(s.kept_s),
              f"{100 * s.kept_s / s.footage_s:.1f}% of footage" if s.footage_s else ""),
             ("clips", f"{s.clips_total:,}", f"{s.clips_kept:,} kept · {s.clips_rejected:,} rejected"),
             ("captions", f"{cap_ok:,}", f"{s.captioned_clips:,} of {s.clips_kept:,} kept clips")]
    return "".join(f'<div class="stat"><div class="k">{k}</div><div class="v">{v}</div><div class="sub">{sub}</div>'
                   f'</div>' for k, v, sub in items)


def _json_for_script(payload) -> str:
    # '</' would end the <script> element early; '\u2028' breaks old parsers. Both are escaped.
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_page(run_dir: Path, s: RunSummary, sheet: dict, cfg: ReportConfig, active: ActiveFilter | None = None,
                videos: list[dict] | None = None) -> str:
    """The whole HTML document as a string (``active``: the filter drawn; ``videos``: :func:`video_list`)."""
    active = active or ActiveFilter(None)
    # One column width for every strip (frames at 16:9, plus gaps and the keep/reject border) so captions line
    # up; wider strips (scope, 2.35:1) scale down to fit it, narrower ones (portrait) leave space.
    n = cfg.thumbs.frames_per_clip
    thumb_col = n * round(cfg.thumbs.height_px * 16 / 9) + 2 * (n - 1) + 4
    meta = {"page_size": cfg.page_size, "thumb_h": cfg.thumbs.height_px, "thumb_col": thumb_col,
            "units": {d.name: d.unit for d in s.scores}, "descriptions": {d.name: d.description for d in s.scores},
            "filter": filter_meta(active), "videos": videos or []}
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return assets.page().format(
        title=html.escape(f"rushes · {storage.name(run_dir)}"),
        run_dir=html.escape(str(run_dir)),
        generated=generated,
        css=assets.css(),
        stats=_stat_cards(s),
        reasons=_reason_rows(s),
        failures=_failures(run_dir, s, cfg.max_failures_listed),
        throughput=_throughput(s),
        filter=_filter_card(active, {d.name for d in s.scores if d.count}),
        histograms=_histograms(s, sheet, cfg.histogram_bins, active.thresholds) or '<p class="muted">no scores yet</p>',
        data=_json_for_script({"clips": sheet, "meta": meta}),
        js=assets.js(),
    )


def _download_clips(run_dir: str, clip_rows: list[dict], staging: Path) -> Path:
    for row in clip_rows:
        rel = row.get("clip_path")
        if rel and not rel.startswith("/") and ".." not in rel.split("/"):  # never follow a path out of OUT
            try:
                storage.copy_file(storage.join(run_dir, rel), staging / rel)
            except OSError:
                continue  # thumb_tasks reports the clip file as missing
    return staging


def build_report(run_dir: str | os.PathLike, html_path: str | os.PathLike, cfg: ReportConfig | None = None,
                 summary: RunSummary | None = None) -> ReportResult:
    """Write the HTML report of ``run_dir`` to ``html_path`` and its thumbnails beside it."""
    cfg = cfg or ReportConfig()
    t0 = time.perf_counter()
    run_dir, html_path = run_dir if storage.is_remote(run_dir) else Path(run_dir), Path(html_path)
    s = summary or summarize(run_dir)
    videos = store.read(run_dir, "videos").select(["video_id", "path", "path_bytes", "duration_s", "width_px",
                                                   "height_px"]).to_pylist()
    video_paths = {v["video_id"]: v["path"] for v in videos}
    videos_by_id = {v["video_id"]: v for v in videos}
    clip_rows = store.read(run_dir, "clips").to_pylist()
    files_dir = files_dir_for(html_path)
    thumbs: dict = {}
    t1 = time.perf_counter()
    if cfg.make_thumbs and clip_rows:
        with storage.staging_dir() as staging:
            # A run in a bucket: thumbnails decode local copies of its clip files (removed afterwards).
            local_run = _download_clips(run_dir, clip_rows, staging) if storage.is_remote(run_dir) else run_dir
            tasks, thumbs = thumb_tasks(local_run, clip_rows, videos_by_id, cfg.thumbs)
            thumbs.update(extract_thumbnails(tasks, files_dir / "thumbs", cfg.thumbs))
    thumbs_s = time.perf_counter() - t1
    sheet = clip_records(run_dir, clip_rows, video_paths, thumbs, f"{files_dir.name}/thumbs", cfg)
    active = active_filter(clip_rows)
    sheet.update(clip_extras(run_dir, clip_rows, videos_by_id, html_path.parent.absolute(), active))
    page = render_page(run_dir, s, sheet, cfg, active, video_list(clip_rows, videos_by_id))
    html_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = html_path.with_name(f".{html_path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, html_path)
    ok = sum(1 for t in thumbs.values() if t.file)
    return ReportResult(html_path, files_dir, len(clip_rows), ok, len(thumbs) - ok, thumbs_s,
                        time.perf_counter() - t0)
