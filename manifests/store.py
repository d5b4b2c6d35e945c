"""Read, write and validate manifests: directories of Parquet part files.

A run directory is a local folder or a bucket prefix (``s3://bucket/run``): every call here goes through
:mod:`storage`, so both behave the same. Layout::

    OUT/videos/part-*.parquet   one row per source video
    OUT/clips/part-*.parquet    one row per clip (kept and rejected)
    OUT/captions/part-*.parquet one row per captioned clip and caption version
    OUT/media/                  encoded clip files
    OUT/summary.json            counts and throughput of the last run

Writers go through :func:`conform` so every part has exactly the declared schema (pyarrow would
otherwise infer ``null`` for a column that is empty in one batch, and DuckDB/Polars refuse to read
such parts together). A part is written to a temporary name starting with ``_tmp-`` and published when
complete (an atomic rename on disk; on object storage, which has no rename, a server-side copy to the
final key followed by deleting the temporary object), so readers listing ``*.parquet`` never see a
half-written part. Writers publish a video's videos row last: it is the completion marker a rerun trusts.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rushes import storage
from rushes.storage.names import display
from rushes.manifests.schema import PRIMARY_KEYS, SCHEMA_VERSIONS, optional_in, schema_for


class ManifestError(ValueError):
    """A manifest is missing, unreadable or does not match its declared schema."""


def conform(data: pa.Table | Sequence[Mapping] | Mapping[str, Sequence], kind: str) -> pa.Table:
    """Return ``data`` as a table with exactly the declared schema of ``kind``.

    Accepts a pyarrow Table, a list of row dicts or a dict of columns. Missing nullable columns are
    filled with nulls, columns are reordered and cast; unknown columns and missing required columns
    raise :class:`ManifestError` naming them.
    """
    schema = schema_for(kind)
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, Mapping):
        table = pa.table({k: _text_safe(list(v)) for k, v in data.items()})
    else:
        rows = list(data)
        names: dict[str, None] = {}
        for row in rows:
            names.update(dict.fromkeys(row))
        unknown = [n for n in names if schema.get_field_index(n) < 0]
        if unknown:
            raise ManifestError(f"{kind}: unknown column(s) {unknown}; declare them in manifests/schema.py")
        cols = {}
        for field in schema:
            values = [row.get(field.name) for row in rows]
            if pa.types.is_string(field.type):
                values = _text_safe(values)
            cols[field.name] = pa.array(values, type=field.type, from_pandas=True)
        return _check_required(pa.Table.from_pydict(cols, schema=schema), kind)
    unknown = [n for n in table.column_names if schema.get_field_index(n) < 0]
    if unknown:
        raise ManifestError(f"{kind}: unknown column(s) {unknown}; declare them in manifests/schema.py")
    arrays = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            try:
                col = col.cast(field.type) if col.type != field.type else col
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ManifestError(f"{kind}.{field.name}: cannot cast {col.type} to {field.type}: {exc}") from exc
            arrays.append(col)
        else:
            arrays.append(pa.nulls(table.num_rows, type=field.type))
    return _check_required(pa.Table.from_arrays(arrays, schema=schema), kind)


def _text_safe(values: list) -> list:
    """Text values as valid UTF-8: a file name of any bytes inside a path or a message (undecodable bytes arrive
    as surrogates, which Parquet cannot hold) is written in its escaped display form, never a crash."""
    return [display(v) if isinstance(v, str) else v for v in values]


def _check_required(table: pa.Table, kind: str) -> pa.Table:
    for field in table.schema:
        if not field.nullable and table.column(field.name).null_count:
            raise ManifestError(f"{kind}.{field.name} is required but has {table.column(field.name).null_count} "
                                f"null value(s); set it on every row")
    return table


def now_utc() -> datetime:
    """Timestamp for ``created_at`` columns."""
    return datetime.now(timezone.utc)


def manifest_dir(run_dir, kind: str):
    """Folder (prefix, for a bucket) holding the part files of ``kind`` inside a run directory."""
    schema_for(kind)  # validates kind
    return storage.join(run_dir, kind)


def part_location(run_dir, kind: str, part_name: str):
    """Where the part ``part_name`` (no extension) of ``kind`` lives: a ``Path``, or a URI for a bucket."""
    return storage.join(manifest_dir(run_dir, kind), f"{part_name}.parquet")


def write_part(run_dir, kind: str, data, part_name: str | None = None):
    """Atomically write one part file of ``kind`` into ``run_dir/kind/`` and return its location.

    ``part_name`` (without extension) makes the write idempotent: rewriting the same name replaces
    the part atomically, which is how resumable writers avoid duplicates. Without it a random name is used.
    The part is written under a ``_tmp-`` name and published when complete (:func:`storage.publish`:
    a rename on disk, a server-side copy on object storage), so no reader ever sees part of it.
    """
    table = conform(data, kind)
    name = part_name or f"part-{uuid.uuid4().hex}"
    if "/" in name or name.startswith(("_", ".")):
        raise ManifestError(f"part name {name!r} must be a plain file name not starting with '_' or '.'")
    final = part_location(run_dir, kind, name)
    storage.makedirs(storage.parent(final))
    tmp = storage.temp_sibling(final)
    try:
        with storage.open_output(tmp) as fh:
            pq.write_table(table, fh, compression="zstd")
        if not storage.is_remote(tmp):
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        storage.publish(tmp, final)
    except BaseException:
        storage.delete(tmp)  # a stream closed by an exception may have stored what was written so far
        raise
    return final


def _visible(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith(("_", "."))


def part_paths(run_dir, kind: str) -> list:
    """Visible part files of ``kind``, sorted by name (temporary and unpublished files are ignored).

    ``Path`` objects for a local run, URIs for a run in a bucket.
    """
    d = manifest_dir(run_dir, kind)
    found = [f for f in storage.list_files(d, recursive=False) if _visible(storage.name(f))]
    return found if storage.is_remote(d) else [Path(f) for f in found]


def delete_part(run_dir, kind: str, part_name: str) -> None:
    """Remove the part ``part_name`` of ``kind`` if it exists (a superseded or failed video's rows)."""
    storage.delete(part_location(run_dir, kind, part_name))


def read_part(path, kind: str, validate: bool = True, columns: list[str] | None = None) -> pa.Table:
    """Read one part file (a path or URI), validated against the schema of ``kind``.

    ``columns`` reads only those columns (validation is then skipped: the table is partial by design).
    """
    try:
        fs, inner = storage.resolve(path)
        table = pq.read_table(inner, filesystem=fs, columns=columns)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ManifestError(f"cannot read manifest part {path}: {exc}; delete it and rerun the stage") from exc
    if validate and columns is None:
        validate_table(table, kind, where=str(path))
    return table


def read(run_dir, kind: str, validate: bool = True, missing_ok: bool = True) -> pa.Table:
    """Read every part of ``kind`` in ``run_dir`` into one table with the declared schema.

    With ``missing_ok`` an absent manifest reads as an empty table; otherwise it raises
    :class:`ManifestError` saying which stage to run.
    """
    paths = part_paths(run_dir, kind)
    if not paths:
        if not missing_ok:
            raise ManifestError(f"no {kind} manifest in {run_dir}: expected {manifest_dir(run_dir, kind)}/*.parquet; "
                                f"run the stage that writes it first")
        return schema_for(kind).empty_table()
    tables = [read_part(p, kind, validate=validate) for p in paths]
    table = pa.concat_tables([conform(t, kind) for t in tables])
    if validate:
        validate_table(table, kind, where=str(manifest_dir(run_dir, kind)))
    return table


def dataset(run_dir, kind: str):
    """A ``pyarrow.dataset`` over the visible parts of ``kind`` with the declared schema (lazy, any location).

    What engines without object-store credentials of their own scan: ``duckdb`` registers it as a view
    (``con.register("clips", store.dataset(run, "clips"))``) and reads through this filesystem, so a run in
    a bucket needs no DuckDB extension. Unpublished parts are not in it.
    """
    import pyarrow.dataset as ds

    paths = part_paths(run_dir, kind)
    fs, _ = storage.resolve(run_dir)
    return ds.dataset([storage.resolve(p)[1] for p in paths], schema=schema_for(kind), format="parquet",
                      filesystem=fs)


def validate_table(table: pa.Table, kind: str, where: str = "") -> None:
    """Raise :class:`ManifestError` when ``table`` does not match the declared schema of ``kind``."""
    schema = schema_for(kind)
    loc = f" in {where}" if where else ""
    older = optional_in(kind, _version_of(table, kind))
    missing = [f.name for f in schema if f.name not in table.column_names and f.name not in older]
    extra = [n for n in table.column_names if schema.get_field_index(n) < 0]
    if missing or extra:
        raise ManifestError(f"{kind} manifest{loc} does not match schema v{SCHEMA_VERSIONS[kind]}: "
                            f"missing {missing}, unexpected {extra}; rewrite it with this version of rushes")
    for field in schema:
        if field.name not in table.column_names:
            continue  # a column added after this part's version: conform() fills it with nulls
        got = table.schema.field(field.name).type
        if got != field.type:
            raise ManifestError(f"{kind}.{field.name}{loc} has type {got}, expected {field.type}")
    _check_required(table, kind)
    keys = PRIMARY_KEYS[kind]
    if table.num_rows and len(keys) == 1:
        col = table.column(keys[0])
        if pc.count_distinct(col).as_py() != table.num_rows:
            raise ManifestError(f"{kind} manifest{loc} has duplicate {keys[0]} values")


def _version_of(table: pa.Table, kind: str) -> int:
    """The schema version a part was written with (its Parquet metadata), else the current one."""
    meta = table.schema.metadata or {}
    try:
        return int(meta.get(b"rushes.schema_version", b""))
    except ValueError:
        return SCHEMA_VERSIONS[kind]


def replace_rows(run_dir, kind: str, part, table: pa.Table):
    """Atomically replace an existing part with ``table`` (same name), e.g. after re-applying filters."""
    return write_part(run_dir, kind, table, part_name=storage.name(part).removesuffix(".parquet"))


def write_json_atomic(path, payload):
    """Write JSON to ``path`` (a path or URI) so readers see the old or the whole new document."""
    storage.write_bytes_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())
    return path if storage.is_remote(path) else Path(path)


def read_summary(run_dir) -> dict:
    """``OUT/summary.json`` as a dict keyed by stage (``{}`` when absent)."""
    path = storage.join(run_dir, "summary.json")
    if not storage.is_file(path):
        return {}
    try:
        return json.loads(storage.read_bytes(path))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}); delete it and rerun the last stage") from exc


def update_summary(run_dir, stage: str, payload: Mapping):
    """Set ``summary.json[stage] = payload`` atomically, keeping the other stages' entries.

    Each stage owns one key (``curate``, ``filter``, ``caption``, ``train``) holding its counts,
    counts per reason and throughput of its last run.
    """
    summary = read_summary(run_dir)
    summary[stage] = dict(payload)
    return write_json_atomic(storage.join(run_dir, "summary.json"), summary)


def remove_temp_files(run_dir, kind: str) -> int:
    """Delete temporary part files of ``kind`` left by a writer that was killed mid-write; returns the count.

    Call it only when no other writer of this kind is running on ``run_dir`` (a stage does, at its start).
    """
    stale = [f for f in storage.list_files(manifest_dir(run_dir, kind), recursive=False)
             if storage.name(f).startswith(storage.TEMP_PREFIX)]
    for f in stale:
        storage.delete(f)
    return len(stale)
