"""Training from curated sets: the clips of one or several runs, narrowed by a SQL condition, and its record.

``rushes train OUT1 OUT2 ... --where "motion_mean > 0.01 AND duration_s >= 3"`` trains on the kept clips with an
ok caption of every OUT whose clips-manifest row satisfies the condition. The condition is a DuckDB ``WHERE``
clause over a view ``clips`` of each run's kept clips (every column of the clips manifest, plus ``caption``, the
caption trained on); DuckDB runs with external access off, so the condition can read nothing else. A clip found
in several runs (ids are content hashes) is taken once. The set is sorted by clip id; validation clips are then
held out by a hash of their id (``rushes.train.data.split_validation``), so the split depends on the ids alone.

The selection is recorded in ``RUN_DIR/selection.json``: the runs, the condition, the clip count per run and in
all, and a hash of the sorted id list. A resumed run refuses a selection whose hash differs (its data position
would point into another set).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rushes.manifests import select
from rushes.manifests.clips import KeptClip, captioned_clips, clip_captions, example_order

log = logging.getLogger(__name__)


class SelectionError(ValueError):
    """The clip selection is unusable (bad SQL, nothing selected, changed since the run started)."""


@dataclass
class Selection:
    """The clips a run trains on and the record of how they were chosen."""

    clips: list[KeptClip]
    record: dict


def run_name(out: str | os.PathLike) -> str:
    """A run as recorded and handed to workers: a URI as given, a local folder as an absolute path."""
    text = str(out)
    return text if "://" in text else str(Path(text).resolve())


def matching_ids(out: str | os.PathLike, where: str, captions: dict[str, str]) -> set[str]:
    """Ids of the kept clips of ``out`` whose row satisfies ``where`` (SQL over the view ``clips``).

    ``where`` is one boolean expression: text that would make the query more than one statement (``x); COPY
    ... TO 'f'; SELECT (1``) is refused before anything runs."""
    import duckdb
    import pyarrow as pa

    clips = select.kept_clips(out)
    ids = clips.column("clip_id").to_pylist()
    clips = clips.append_column("caption", pa.array([captions.get(i) for i in ids], pa.string()))
    statement = f"SELECT clip_id FROM clips WHERE ({where})"
    con = duckdb.connect(":memory:")
    try:
        if len(duckdb.extract_statements(statement)) != 1:
            raise duckdb.ParserException("it would run more than one SQL statement (a ';' ends the condition)")
        con.register("clips", clips)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        rows = con.execute(statement).fetchall()
    except duckdb.Error as exc:
        detail = str(exc).strip().splitlines()[0]
        raise SelectionError(f"--where {where!r} is not a usable condition over the clips of {out}: {detail}. "
                             f"Write one SQL boolean expression over the clips manifest's columns (e.g. "
                             f"\"duration_s >= 3 AND motion_mean > 0.01\"); columns: "
                             f"{', '.join(clips.column_names)}") from None
    finally:
        con.close()
    return {r[0] for r in rows}


def ids_hash(clip_ids: Sequence[str]) -> str:
    """blake2b (16 bytes, hex) of the sorted ids, one per line: equal hashes, equal sets."""
    return hashlib.blake2b("\n".join(sorted(clip_ids)).encode(), digest_size=16).hexdigest()


def select_clips(out_dirs: Sequence[str | os.PathLike], data_cfg) -> Selection:
    """The kept, captioned clips of every run in ``out_dirs`` satisfying ``data_cfg.where``, at most
    ``data_cfg.limit`` of them (the first by clip id); raises :class:`SelectionError` when none is left."""
    chosen: dict[str, KeptClip] = {}
    per_run = []
    for out in out_dirs:
        clips = captioned_clips(out, data_cfg.captioner, data_cfg.prompt_version,
                                include_flagged=data_cfg.include_flagged_captions, level=data_cfg.caption_level)
        if data_cfg.where:  # a window example goes with its clip's row (and the clip's caption)
            keep = matching_ids(out, data_cfg.where, clip_captions(out, data_cfg.captioner, data_cfg.prompt_version,
                                                                   include_flagged=data_cfg.include_flagged_captions))
            clips = [c for c in clips if (c.parent or c.clip_id) in keep]
        per_run.append({"run": run_name(out), "clips": len(clips)})
        for c in clips:
            chosen.setdefault(c.clip_id, c)
    sources = sorted(chosen.values(), key=example_order)[:data_cfg.limit]
    if data_cfg.caption_level != "clip" and sources and not any(c.parent for c in sources):
        log.warning("--caption-level %s: no clip has window captions, so every clip trains by its clip-level "
                    "caption; `rushes caption OUT --window-s SECONDS` captions windows", data_cfg.caption_level)
    if not sources:
        raise SelectionError(f"no clip of {', '.join(str(o) for o in out_dirs)} satisfies --where "
                             f"{data_cfg.where!r}; loosen the condition (rushes inspect OUT --sql helps)")
    record = {"runs": per_run, "where": data_cfg.where, "limit": data_cfg.limit, "clips": len(sources),
              "ids_hash": ids_hash([c.clip_id for c in sources])}
    return Selection(sources, record)


def record_selection(run_dir: str | os.PathLike, record: dict) -> None:
    """Write ``RUN_DIR/selection.json``; a run that already has one must have selected the same clips."""
    path = Path(run_dir) / "selection.json"
    if path.exists():
        before = json.loads(path.read_text())
        if before.get("ids_hash") != record["ids_hash"]:
            raise SelectionError(
                f"the clips selected now ({record['clips']} from {[r['run'] for r in record['runs']]}, where "
                f"{record['where']!r}) differ from those {run_dir} started with ({before.get('clips')} from "
                f"{[r['run'] for r in before.get('runs', [])]}, where {before.get('where')!r}); resume with the "
                f"same OUTs and manifests, or train a new --run")
    tmp = path.with_name("_selection.json.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(tmp, path)
