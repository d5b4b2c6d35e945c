"""Read, write and validate manifests: directories of Parquet part files.

Layout of a run directory::

    OUT/videos/part-*.parquet   one row per source video
    OUT/clips/part-*.parquet    one row per clip (kept and rejected)
    OUT/captions/part-*.parquet one row per captioned clip and caption version
    OUT/media/                  encoded clip files
    OUT/summary.json            counts and throughput of the last run

Writers go through :func:`conform` so every part has exactly the declared schema (pyarrow would
otherwise infer ``null`` for a column that is empty in one batch, and DuckDB/Polars refuse to read
such parts together). A part is written to a temporary name starting with ``_`` and made visible by
an atomic rename, so readers globbing ``*.parquet`` never see a half-written file.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests.schema import PRIMARY_KEYS, SCHEMA_VERSIONS, schema_for


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
        table = pa.table({k: list(v) for k, v in data.items()})
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


def _check_required(table: pa.Table, kind: str) -> pa.Table:
    for field in table.schema:
        if not field.nullable and table.column(field.name).null_count:
            raise ManifestError(f"{kind}.{field.name} is required but has {table.column(field.name).null_count} "
                                f"null value(s); set it on every row")
    return table


def now_utc() -> datetime:
    """Timestamp for ``created_at`` columns."""
    return datetime.now(timezone.utc)


def manifest_dir(run_dir: str | os.PathLike, kind: str) -> Path:
    """Directory holding the part files of ``kind`` inside a run directory."""
    schema_for(kind)  # validates kind
    return Path(run_dir) / kind


def write_part(run_dir: str | os.PathLike, kind: str, data, part_name: str | None = None) -> Path:
    """Atomically write one part file of ``kind`` into ``run_dir/kind/`` and return its path.

    ``part_name`` (without extension) makes the write idempotent: rewriting the same name replaces
    the part atomically, which is how resumable writers avoid duplicates. Without it a random name is used.
    """
    table = conform(data, kind)
    out_dir = manifest_dir(run_dir, kind)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = part_name or f"part-{uuid.uuid4().hex}"
    if "/" in name or name.startswith(("_", ".")):
        raise ManifestError(f"part name {name!r} must be a plain file name not starting with '_' or '.'")
    final = out_dir / f"{name}.parquet"
    tmp = out_dir / f"_tmp-{name}-{uuid.uuid4().hex[:8]}"
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final


def part_paths(run_dir: str | os.PathLike, kind: str) -> list[Path]:
    """Visible part files of ``kind``, sorted by name (temporary files are ignored)."""
    d = manifest_dir(run_dir, kind)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if p.suffix == ".parquet" and not p.name.startswith(("_", ".")))


def read_part(path: str | os.PathLike, kind: str, validate: bool = True) -> pa.Table:
    """Read one part file, validated against the schema of ``kind``."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ManifestError(f"cannot read manifest part {path}: {exc}; delete it and rerun the stage") from exc
    if validate:
        validate_table(table, kind, where=str(path))
    return table


def read(run_dir: str | os.PathLike, kind: str, validate: bool = True, missing_ok: bool = True) -> pa.Table:
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


def validate_table(table: pa.Table, kind: str, where: str = "") -> None:
    """Raise :class:`ManifestError` when ``table`` does not match the declared schema of ``kind``."""
    schema = schema_for(kind)
    loc = f" in {where}" if where else ""
    missing = [f.name for f in schema if f.name not in table.column_names]
    extra = [n for n in table.column_names if schema.get_field_index(n) < 0]
    if missing or extra:
        raise ManifestError(f"{kind} manifest{loc} does not match schema v{SCHEMA_VERSIONS[kind]}: "
                            f"missing {missing}, unexpected {extra}; rewrite it with this version of rushes")
    for field in schema:
        got = table.schema.field(field.name).type
        if got != field.type:
            raise ManifestError(f"{kind}.{field.name}{loc} has type {got}, expected {field.type}")
    _check_required(table, kind)
    keys = PRIMARY_KEYS[kind]
    if table.num_rows and len(keys) == 1:
        col = table.column(keys[0])
        if pc.count_distinct(col).as_py() != table.num_rows:
            raise ManifestError(f"{kind} manifest{loc} has duplicate {keys[0]} values")


def replace_rows(run_dir: str | os.PathLike, kind: str, part: Path, table: pa.Table) -> Path:
    """Atomically replace an existing part with ``table`` (same name), e.g. after re-applying filters."""
    return write_part(run_dir, kind, table, part_name=Path(part).stem)


def write_json_atomic(path: str | os.PathLike, payload) -> Path:
    """Write JSON to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(json.dumps(payload, indent=2, sort_keys=True, default=str))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def rows(table: pa.Table) -> Iterable[dict]:
    """Iterate a table as row dicts (convenience for small manifests)."""
    return table.to_pylist()


def read_summary(run_dir: str | os.PathLike) -> dict:
    """``OUT/summary.json`` as a dict keyed by stage (``{}`` when absent)."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON ({exc}); delete it and rerun the last stage") from exc


def update_summary(run_dir: str | os.PathLike, stage: str, payload: Mapping) -> Path:
    """Set ``summary.json[stage] = payload`` atomically, keeping the other stages' entries.

    Each stage owns one key (``curate``, ``filter``, ``caption``, ``train``) holding its counts,
    counts per reason and throughput of its last run.
    """
    summary = read_summary(run_dir)
    summary[stage] = dict(payload)
    return write_json_atomic(Path(run_dir) / "summary.json", summary)


def remove_temp_files(run_dir: str | os.PathLike, kind: str) -> int:
    """Delete temporary part files of ``kind`` left by a writer that was killed mid-write; returns the count.

    Call it only when no other writer of this kind is running on ``run_dir`` (a stage does, at its start).
    """
    d = manifest_dir(run_dir, kind)
    if not d.is_dir():
        return 0
    stale = [p for p in d.iterdir() if p.name.startswith("_tmp-") and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)
