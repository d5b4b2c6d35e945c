"""Selection helpers shared by the stages: which rows a stage should work on."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.compute as pc

from rushes.manifests import store


def kept_clips(run_dir: str | os.PathLike) -> pa.Table:
    """Clips with ``keep = true`` from the clips manifest of ``run_dir``."""
    clips = store.read(run_dir, "clips", missing_ok=False)
    return clips.filter(pc.equal(clips.column("keep"), True))


def ok_captions(run_dir: str | os.PathLike, captioner: str | None = None,
                prompt_version: str | None = None) -> pa.Table:
    """Captions with ``status = 'ok'``, optionally of one captioner and prompt version.

    When several versions exist for a clip and none is asked for, the newest row per clip wins.
    """
    caps = store.read(run_dir, "captions", missing_ok=False)
    mask = pc.equal(caps.column("status"), "ok")
    if captioner is not None:
        mask = pc.and_(mask, pc.equal(caps.column("captioner"), captioner))
    if prompt_version is not None:
        mask = pc.and_(mask, pc.equal(caps.column("prompt_version"), prompt_version))
    caps = caps.filter(mask)
    if caps.num_rows == 0:
        return caps
    order = pc.sort_indices(caps, sort_keys=[("clip_id", "ascending"), ("created_at", "descending")])
    caps = caps.take(order)
    clip_ids = caps.column("clip_id").to_pylist()
    first = [i for i, c in enumerate(clip_ids) if i == 0 or clip_ids[i - 1] != c]
    return caps.take(pa.array(first, type=pa.int64()))


def join_on(left: pa.Table, right: pa.Table, key: str, right_columns: list[str] | None = None) -> pa.Table:
    """Inner join of two manifests on ``key`` keeping the left's columns plus ``right_columns``."""
    right_columns = right_columns or [c for c in right.column_names if c not in left.column_names]
    right = right.select([key, *right_columns])
    return left.join(right, keys=key, join_type="inner")
