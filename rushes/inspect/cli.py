"""``rushes inspect``: what a run kept, why, and what the captions say.

    rushes inspect OUT                              terminal summary
    rushes inspect OUT --html report.html           self-contained HTML report + report_files/
    rushes inspect OUT --sql "SELECT ..." [--format csv|json|table]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from rushes import exits, settings
from rushes.inspect.config import ReportConfig
from rushes.settings import check, setting

EPILOG = """\
SQL views (DuckDB, read straight from the Parquet parts; a manifest not written yet is an empty view).
A query reads these views only: other files, the network and COPY ... TO are refused unless
--allow-external-access is given.
  videos    one row per source video (status, error_stage, error_message, duration_s, ...)
  clips     one row per clip, kept and rejected (keep, reject_reason, scores, start_s, end_s, ...)
  captions  one row per caption attempt (caption, captioner, prompt_version, status, ...)

examples:
  rushes inspect OUT
  rushes inspect OUT --html OUT/report.html
  rushes inspect OUT --sql "SELECT reject_reason, count(*) n FROM clips GROUP BY 1 ORDER BY n DESC"
  rushes inspect OUT --sql "SELECT c.clip_id, k.caption FROM clips c JOIN captions k USING (clip_id)" --format csv
  rushes inspect OUT --allow-external-access --sql "COPY (SELECT * FROM clips WHERE keep) TO 'kept.parquet'"
"""


@dataclass(frozen=True)
class InspectRun:
    """How ``rushes inspect`` prints and what a query may reach (the report's settings are :class:`ReportConfig`)."""

    format: str = setting("table", "output of --sql; without --sql, json prints the summary as one JSON object for "
                          "scripts", choices=("table", "csv", "json"))
    allow_external_access: bool = setting(False, "let --sql read and write files other than the run's manifests and "
                                          "reach the network, e.g. COPY (SELECT ...) TO 'kept.parquet'; without it "
                                          "such a query fails")

    def __post_init__(self) -> None:
        check(self)


INSPECT = settings.Command("inspect", settings.Section("run", InspectRun),
                           settings.Section("report", ReportConfig, title="HTML report"))


def register(subparsers) -> None:
    """Add ``inspect`` to the ``rushes`` parser."""
    p = subparsers.add_parser(
        "inspect", help="summarise a run, write an HTML report, or query its manifests with SQL",
        description="Look into a run directory: a terminal summary by default, an HTML report with --html, "
                    "or a DuckDB query with --sql.",
        epilog=EPILOG, formatter_class=_Formatter)
    p.add_argument("run_dir", metavar="OUT", help="run directory written by `rushes curate` (holds videos/, clips/, "
                   "captions/, summary.json): a folder or s3://bucket/prefix")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--html", metavar="PATH", help="write a self-contained HTML report to PATH and its thumbnails "
                      "to PATH_files/ beside it, e.g. report.html -> report_files/ (default: no report)")
    what.add_argument("--sql", metavar="QUERY", help="run QUERY with DuckDB over the views videos, clips, captions and "
                      "print the result; '-' reads the query from stdin (default: no query)")
    INSPECT.add_arguments(p)
    p.set_defaults(func=run_inspect)


class _Formatter(settings.HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Flags state their defaults; the epilog keeps its lines."""


# What a stage writes into OUT; a folder with none of them is not a run.
RUN_MARKERS = ("videos/", "clips/", "captions/", "summary.json")


def is_run(run_dir) -> bool:
    """True when ``run_dir`` (a folder or ``s3://`` prefix) holds a manifest folder or the summary a stage writes."""
    from rushes import storage

    return any(storage.is_dir(storage.join(run_dir, m.rstrip("/"))) if m.endswith("/")
               else storage.is_file(storage.join(run_dir, m)) for m in RUN_MARKERS)


def _print_error(message: str) -> int:
    print(f"rushes inspect: {message}", file=sys.stderr)
    return exits.USAGE


def run_inspect(args) -> int:
    """Handler of ``rushes inspect``: returns 0 on success, 2 on a usage or query error."""
    from rushes import storage

    try:
        values = settings.resolve(args)
        run, report = values.build("run"), values.build("report")
    except settings.SettingError as exc:
        return settings.usage_error(args, exc)
    run_dir = args.run_dir if storage.is_remote(args.run_dir) else Path(args.run_dir)
    if not storage.is_dir(run_dir):
        return _print_error(f"run directory {run_dir} does not exist; pass the OUT folder a stage wrote")
    if not is_run(run_dir):
        return _print_error(f"{run_dir} is not a rushes run: it has none of {', '.join(RUN_MARKERS)}; pass the OUT "
                            f"folder of `rushes curate INPUT --out OUT`")
    from rushes.manifests.store import ManifestError

    try:
        if args.sql:
            return _run_sql(run_dir, args.sql, run)
        if args.html:
            return _run_html(run_dir, args.html, report)
        from rushes.inspect.summary import format_summary, summarize, summary_json

        summary = summarize(run_dir)
        print(summary_json(summary) if run.format == "json" else format_summary(summary), end="")
    except ManifestError as exc:  # a damaged or outdated manifest: say which, and how to fix it
        return _print_error(str(exc))
    return 0


def _run_sql(run_dir: Path, sql: str, run: InspectRun) -> int:
    from rushes.inspect.sql import QueryError, query
    from rushes.inspect.table import render

    sql = sys.stdin.read() if sql == "-" else sql
    if not sql.strip():
        return _print_error("no query: --sql - read nothing from stdin; pipe a query in, e.g. "
                            "echo 'SELECT count(*) FROM clips' | rushes inspect OUT --sql -")
    try:
        result = query(run_dir, sql, allow_external_access=run.allow_external_access)
    except QueryError as exc:
        return _print_error(f"query failed: {exc}")
    print(render(result.columns, result.rows, run.format))
    return 0


def _run_html(run_dir: Path, html: str, cfg: ReportConfig) -> int:
    from rushes.inspect.page import build_report

    from rushes.manifests.paths import check_output_path

    check_output_path(html, run_dir)  # an OutputPathError is a ManifestError: one line, exit 2
    result = build_report(run_dir, html, cfg)
    print(f"wrote {result.html_path} ({result.clips} clips; thumbnails in {result.files_dir}/: "
          f"{result.thumbs_ok} ok, {result.thumbs_failed} failed, {result.thumbs_s:.1f} s; "
          f"total {result.total_s:.1f} s)")
    return 0
