"""DuckDB over a run's manifests: views ``videos``, ``clips`` and ``captions``.

Usage::

    from rushes.inspect.sql import query
    result = query("OUT", "SELECT reject_reason, count(*) FROM clips GROUP BY 1")
    result.columns, result.rows

Each view reads the part files in place (``read_parquet`` over the visible parts, so nothing is
copied); a manifest that does not exist yet becomes an empty view with the declared schema, so the
same query works before and after a stage has run. A run in a bucket (``s3://...``) is read through
:mod:`storage` as registered ``pyarrow.dataset`` views, so DuckDB needs no httpfs extension (no download).

A query reads the run's manifests and nothing else: once the views exist, DuckDB's external access is
switched off (no other file, no network, no extension install, no ``COPY ... TO`` or ``ATTACH``; only the
part files behind the views stay readable) and the configuration is locked, so the query cannot switch it
back on. ``allow_external_access=True`` (``rushes inspect --sql ... --allow-external-access``) leaves it on,
e.g. to ``COPY (SELECT ...) TO 'kept.parquet'``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rushes import storage
from rushes.manifests import store
from rushes.manifests.schema import KINDS, schema_for


class QueryError(ValueError):
    """The SQL failed; the message names the views and their columns."""


@dataclass(frozen=True)
class QueryResult:
    """Column names and rows (tuples of Python values) of one query."""

    columns: list[str]
    rows: list[tuple]


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(run_dir: str | os.PathLike, allow_external_access: bool = False):
    """An in-memory DuckDB connection with one view per manifest kind of ``run_dir``, locked down (see above)."""
    import duckdb

    run_dir = run_dir if storage.is_remote(run_dir) else Path(run_dir)
    if not storage.is_dir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir} does not exist; pass the OUT folder a stage wrote")
    con = duckdb.connect(":memory:")
    parts: list[str] = []
    for kind in KINDS:
        if storage.is_remote(run_dir):
            con.register(f"_parts_{kind}", store.dataset(run_dir, kind))
            con.execute(f"CREATE VIEW {kind} AS SELECT * FROM _parts_{kind}")
            continue
        paths = [str(p) for p in store.part_paths(run_dir, kind)]
        parts += paths
        if paths:
            files = "[" + ", ".join(_sql_string(p) for p in paths) + "]"
            con.execute(f"CREATE VIEW {kind} AS SELECT * FROM read_parquet({files}, union_by_name = true)")
        else:
            empty = schema_for(kind).empty_table()
            con.register(f"_empty_{kind}", empty)
            con.execute(f"CREATE VIEW {kind} AS SELECT * FROM _empty_{kind}")
    if not allow_external_access:
        # No spill folder: DuckDB allows its temp directory (the cwd's .tmp by default) even with external access
        # off, which would let a query read and write files there.
        con.execute("SET temp_directory = ''")
        con.execute(f"SET allowed_paths = [{', '.join(_sql_string(p) for p in parts)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con


def describe_views() -> str:
    """One line per view listing its columns, for error messages and --help."""
    return "\n".join(f"  {kind}: {', '.join(schema_for(kind).names)}" for kind in KINDS)


def query(run_dir: str | os.PathLike, sql: str, allow_external_access: bool = False) -> QueryResult:
    """Run ``sql`` against the run's views and return every row (external access off unless allowed)."""
    import duckdb

    con = connect(run_dir, allow_external_access)
    try:
        rel = con.execute(sql)
        columns = [d[0] for d in rel.description] if rel.description else []
        rows = rel.fetchall() if rel.description else []
    except duckdb.PermissionException as exc:
        raise QueryError(f"{exc}\nqueries read the run's manifests only; to read or write other files (e.g. COPY "
                         f"... TO a file), pass --allow-external-access") from exc
    except duckdb.Error as exc:
        raise QueryError(f"{exc}\nviews and columns:\n{describe_views()}") from exc
    finally:
        con.close()
    return QueryResult(columns, rows)
