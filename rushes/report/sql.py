"""DuckDB over a run's manifests: views ``videos``, ``clips`` and ``captions``.

Usage::

    from rushes.report.sql import query
    result = query("OUT", "SELECT reject_reason, count(*) FROM clips GROUP BY 1")
    result.columns, result.rows

Each view reads the part files in place (``read_parquet`` over the visible parts, so nothing is
copied); a manifest that does not exist yet becomes an empty view with the declared schema, so the
same query works before and after a stage has run. A run in a bucket (``s3://...``) is read through
:mod:`storage` as registered ``pyarrow.dataset`` views, so DuckDB needs no httpfs extension (no download).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import storage
from manifests import store
from manifests.schema import KINDS, schema_for


class QueryError(ValueError):
    """The SQL failed; the message names the views and their columns."""


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows (tuples of Python values) of one query."""

    columns: list[str]
    rows: list[tuple]


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(run_dir: str | os.PathLike):
    """An in-memory DuckDB connection with one view per manifest kind of ``run_dir``."""
    import duckdb

    run_dir = run_dir if storage.is_remote(run_dir) else Path(run_dir)
    if not storage.is_dir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir} does not exist; pass the OUT folder a stage wrote")
    con = duckdb.connect(":memory:")
    for kind in KINDS:
        if storage.is_remote(run_dir):
            con.register(f"_parts_{kind}", store.dataset(run_dir, kind))
            con.execute(f"CREATE VIEW {kind} AS SELECT * FROM _parts_{kind}")
            continue
        paths = store.part_paths(run_dir, kind)
        if paths:
            files = "[" + ", ".join(_sql_string(str(p)) for p in paths) + "]"
            con.execute(f"CREATE VIEW {kind} AS SELECT * FROM read_parquet({files}, union_by_name = true)")
        else:
            empty = schema_for(kind).empty_table()
            con.register(f"_empty_{kind}", empty)
            con.execute(f"CREATE VIEW {kind} AS SELECT * FROM _empty_{kind}")
    return con


def describe_views() -> str:
    """One line per view listing its columns, for error messages and --help."""
    return "\n".join(f"  {kind}: {', '.join(schema_for(kind).names)}" for kind in KINDS)


def query(run_dir: str | os.PathLike, sql: str) -> QueryResult:
    """Run ``sql`` against the run's views and return every row."""
    import duckdb

    con = connect(run_dir)
    try:
        rel = con.execute(sql)
        columns = [d[0] for d in rel.description] if rel.description else []
        rows = rel.fetchall() if rel.description else []
    except duckdb.Error as exc:
        raise QueryError(f"{exc}\nviews and columns:\n{describe_views()}") from exc
    finally:
        con.close()
    return QueryResult(columns, rows)
