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


def ok_captions(run_dir: str | os.PathLike, captioner: str | None = None, prompt_version: str | None = None,
                include_flagged: bool = True, windows: bool = False) -> pa.Table:
    """Captions with ``status = 'ok'``, optionally of one captioner and prompt version.

    Clip-level captions (no window bounds) unless ``windows``, then the window captions only (a row with one
    bound is a window row).
    ``include_flagged=False`` drops captions a check flagged (``caption_flags`` not null: truncated, repetition,
    refusal, language). When several versions exist for a clip (or a window) and none is asked for, the newest
    row wins.
    """
    caps = store.read(run_dir, "captions", missing_ok=False)
    mask = pc.equal(caps.column("status"), "ok")
    # A clip-level row has neither window bound; a row with one of them (a damaged window) is a window row, so
    # that its window is checked (and refused) rather than read as the clip's caption.
    level = pc.and_(pc.is_null(caps.column("window_start_s")), pc.is_null(caps.column("window_end_s")))
    mask = pc.and_(mask, pc.invert(level) if windows else level)
    if not include_flagged:
        mask = pc.and_(mask, pc.is_null(caps.column("caption_flags")))
    if captioner is not None:
        mask = pc.and_(mask, pc.equal(caps.column("captioner"), captioner))
    if prompt_version is not None:
        mask = pc.and_(mask, pc.equal(caps.column("prompt_version"), prompt_version))
    caps = caps.filter(mask)
    if caps.num_rows == 0:
        return caps
    keys = ["clip_id", "window_start_s", "window_end_s"] if windows else ["clip_id"]
    order = pc.sort_indices(caps, sort_keys=[*((k, "ascending") for k in keys), ("created_at", "descending")])
    caps = caps.take(order)
    ids = list(zip(*(caps.column(k).to_pylist() for k in keys)))
    first = [i for i, key in enumerate(ids) if i == 0 or ids[i - 1] != key]
    return caps.take(pa.array(first, type=pa.int64()))


def join_on(left: pa.Table, right: pa.Table, key: str, right_columns: list[str] | None = None) -> pa.Table:
    """Inner join of two manifests on ``key`` keeping the left's columns plus ``right_columns``."""
    right_columns = right_columns or [c for c in right.column_names if c not in left.column_names]
    right = right.select([key, *right_columns])
    return left.join(right, keys=key, join_type="inner")
