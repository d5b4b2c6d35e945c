"""A training run's directory in a local folder or in a bucket (``s3://``, ``gs://``: see storage/).

The trainer always works in a local folder. With a bucket RUN that folder is a working copy (a temporary
folder of each worker, under ``TMPDIR`` when set; it holds the records and at most two checkpoints):

- at start, :func:`working_copy` downloads the run's records (``config.json``, ``selection.json``,
  ``skipped.jsonl``, ``log.jsonl``) and its newest complete checkpoint (the one ``checkpoints/latest`` names),
  so a rerun resumes exactly as from a local folder; every worker does (each loads the checkpoint);
- after each checkpoint, worker 0 uploads it with :func:`push`: the checkpoint's files first, then the
  records, then ``checkpoints/latest`` (one object: a reader sees the old name or the new one), then deletes the
  bucket's checkpoints that the working copy no longer keeps. A run killed mid-upload leaves ``latest`` on the
  previous complete checkpoint; the half-uploaded folder is never read and is overwritten when the rerun gets
  there, as a later folder on disk is.

So nothing of a run needs a disk that every node sees: Ray Train workers on several machines each keep their
own working copy. The log in the bucket lags the run by up to one checkpoint (a rerun drops the lines after
its checkpoint anyway); the live log of a bucket run is what worker 0 prints. On-the-fly training (no
encodings) caches its prepared clips in the working copy, so a rerun of a bucket RUN prepares them again:
encode once (``rushes encode``) for runs at scale.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import storage

RECORDS = ("config.json", "selection.json", "skipped.jsonl", "log.jsonl")
CHECKPOINTS = "checkpoints"
MARKER = "latest"


def is_remote(run_dir) -> bool:
    """True when ``run_dir`` is a bucket URI (then training works in a local copy of it)."""
    return storage.is_remote(run_dir)


def location(run_dir):
    """``run_dir`` as the trainer keeps it: a URI string for a bucket, a ``Path`` for a folder."""
    return str(run_dir).rstrip("/") if is_remote(run_dir) else Path(run_dir)


def read_config(run_dir) -> dict | None:
    """The run's saved ``config.json`` (a resumed run keeps it), or None for a new run."""
    path = storage.join(run_dir, "config.json")
    return json.loads(storage.read_bytes(path)) if storage.is_file(path) else None


def latest_name(run_dir) -> str | None:
    """The name of the newest complete checkpoint (``step-0000100``) of a folder or bucket run, or None."""
    marker = storage.join(run_dir, CHECKPOINTS, MARKER)
    if not storage.is_file(marker):
        return None
    name = storage.read_bytes(marker).decode().strip()
    return name if storage.is_dir(storage.join(run_dir, CHECKPOINTS, name)) else None


def latest_step(run_dir) -> int:
    """The step a rerun of ``run_dir`` resumes at (0 for a new run)."""
    name = latest_name(run_dir)
    return int(name.split("-")[1]) if name else 0


@contextlib.contextmanager
def working_copy(run_dir, checkpoint: bool = True) -> Iterator[Path]:
    """The local folder to train (or sample) in: ``run_dir`` itself when it is a folder; for a bucket RUN a
    fresh temporary folder (removed at exit) holding the run's records and, with ``checkpoint``, its newest
    complete checkpoint."""
    if not is_remote(run_dir):
        yield Path(run_dir)
        return
    with tempfile.TemporaryDirectory(prefix="rushes-run-") as tmp:
        local = Path(tmp)
        _pull(run_dir, local, checkpoint)
        yield local


def _pull(run_dir: str, local: Path, checkpoint: bool) -> None:
    for name in RECORDS:
        if storage.is_file(storage.join(run_dir, name)):
            storage.copy_file(storage.join(run_dir, name), local / name)
    name = latest_name(run_dir) if checkpoint else None
    if name is None:
        return
    folder = storage.join(run_dir, CHECKPOINTS, name)
    for src in storage.list_files(folder):
        storage.copy_file(src, local / CHECKPOINTS / name / src[len(folder) + 1:])
    (local / CHECKPOINTS / MARKER).write_text(name)


def push(local: Path, run_dir, checkpoint: str | None = None) -> None:
    """Upload the working copy's records and, when given, its checkpoint ``checkpoint`` (then the marker that
    names it, then the removal of the bucket's checkpoints the working copy dropped); a folder run: nothing."""
    if not is_remote(run_dir):
        return
    if checkpoint is not None:
        folder = local / CHECKPOINTS / checkpoint
        for src in sorted(p for p in folder.rglob("*") if p.is_file()):
            storage.copy_file(src, storage.join(run_dir, CHECKPOINTS, checkpoint, *src.relative_to(folder).parts))
    for name in RECORDS:
        if (local / name).is_file():
            storage.write_bytes_atomic(storage.join(run_dir, name), (local / name).read_bytes())
    if checkpoint is None:
        return
    storage.write_bytes_atomic(storage.join(run_dir, CHECKPOINTS, MARKER), checkpoint.encode())
    kept = {p.name for p in (local / CHECKPOINTS).glob("step-*")}
    prefix = storage.join(run_dir, CHECKPOINTS)
    for obj in storage.list_files(prefix):
        folder = obj[len(prefix) + 1:].split("/")[0]
        if folder.startswith("step-") and folder <= checkpoint and folder not in kept:
            storage.delete(obj)
