"""A training run's directory in a local folder or in a bucket (``s3://``, ``gs://``: see storage/).

The trainer always works in a local folder. With a bucket RUN that folder is a working copy (a private folder
of each worker in rushes' scratch folder, ``$TMPDIR/rushes-scratch``, ``storage.staging_dir``: a later run on
the machine removes the copy of a worker killed with -9; it holds the records and at most two checkpoints):

- at start, :func:`working_copy` downloads the run's records (``config.json``, ``selection.json``,
  ``skipped.jsonl``, ``log.jsonl``) and its newest complete checkpoint (the one ``checkpoints/latest`` names),
  so a rerun resumes exactly as from a local folder; every worker does (each loads the checkpoint);
- after each checkpoint, worker 0 uploads it (:class:`Uploads`, in a background thread while training goes
  on): the checkpoint's files first, then the records, then ``checkpoints/latest`` (one object: a reader sees
  the old name or the new one), then deletes the bucket's checkpoints that the working copy no longer keeps. A run killed mid-upload leaves ``latest`` on the
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
import re
from collections.abc import Iterator
from pathlib import Path

from rushes import storage
from rushes.manifests.store import ManifestError

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


class CheckpointMarkerError(ManifestError):
    """``checkpoints/latest`` names no complete checkpoint inside RUN: resuming or sampling would start over or
    read something else."""


# What a complete checkpoint folder holds (train/checkpoint.py writes them, then renames the folder into place).
CHECKPOINT_FILES = ("model.safetensors", "ema.safetensors", "optimizer.pt", "state.json", "rng.safetensors")
_NAME = re.compile(r"step-\d{7}")


def latest_name(run_dir, need: tuple[str, ...] = CHECKPOINT_FILES) -> str | None:
    """The name of the newest complete checkpoint (``step-0000100``) of a folder or bucket run; None for a run
    without a marker (nothing trained yet). A marker that names anything but a complete checkpoint folder inside
    RUN (a missing folder, ``../elsewhere/step-9``, ``/etc``, a folder missing one of the files ``need``s) raises
    :class:`CheckpointMarkerError` naming it and the checkpoints that exist: never a silent restart."""
    root = storage.join(run_dir, CHECKPOINTS)
    marker = storage.join(root, MARKER)
    if not storage.is_file(marker):
        return None
    name = storage.read_bytes(marker)[:200].decode(errors="replace").strip()
    folder = storage.join(root, name)
    missing = [f for f in need if not storage.is_file(storage.join(folder, f))] if _NAME.fullmatch(name) else [""]
    if missing:
        found = sorted({storage.name(storage.parent(f)) for f in storage.list_files(root)
                        if storage.name(f) == "state.json" and _NAME.fullmatch(storage.name(storage.parent(f)))})
        why = ("is not a checkpoint name (step-NNNNNNN)" if not _NAME.fullmatch(name) else "does not exist"
               if not storage.is_dir(folder) else f"is missing {', '.join(missing)}")
        raise CheckpointMarkerError(
            f"{marker} names {name!r}, which {why}; checkpoints in {root}: {', '.join(found) or 'none'}. Write the "
            f"name of a complete one into the marker to resume from it, or delete the marker to train from step 0")
    return name


def latest_step(run_dir) -> int:
    """The step a rerun of ``run_dir`` resumes at (0 for a new run)."""
    name = latest_name(run_dir)
    return int(name.split("-")[1]) if name else 0


@contextlib.contextmanager
def working_copy(run_dir, files: tuple[str, ...] | None = None) -> Iterator[Path]:
    """The local folder to train (or sample) in: ``run_dir`` itself when it is a folder; for a bucket RUN a
    fresh private folder (removed at exit) holding the run's records and its newest complete checkpoint
    (only its ``files`` when given: sampling needs one weights file, not the optimizer state)."""
    if not is_remote(run_dir):
        yield Path(run_dir)
        return
    with storage.staging_dir() as local:  # in rushes' scratch folder, which drops the copies of killed workers
        _pull(run_dir, local, files)
        yield local


def _pull(run_dir: str, local: Path, files: tuple[str, ...] | None) -> None:
    for name in RECORDS:
        if storage.is_file(storage.join(run_dir, name)):
            storage.copy_file(storage.join(run_dir, name), local / name)
    name = latest_name(run_dir, need=files or CHECKPOINT_FILES)
    if name is None:
        return
    folder = storage.join(run_dir, CHECKPOINTS, name)
    for src in storage.list_files(folder):
        if files is None or src[len(folder) + 1:] in files:
            storage.copy_file(src, local / CHECKPOINTS / name / src[len(folder) + 1:])
    (local / CHECKPOINTS / MARKER).write_text(name)


class Uploads:
    """Worker 0's uploads of a bucket run's checkpoints, in a background thread, one at a time and in order:
    training goes on while a checkpoint (GBs for a large model: weights, EMA, AdamW state) is uploaded.
    :meth:`push` waits for the previous upload first (its error, if any, is raised there), so at most one
    checkpoint is in flight, and the newest local checkpoint, the one being uploaded, is never the one the next
    save prunes. The records are read when the checkpoint is pushed, so the upload holds the log as of that
    step. A folder run, or ``active=False`` (a worker other than 0): nothing to do."""

    def __init__(self, local: Path, run_dir, active: bool = True):
        from concurrent.futures import ThreadPoolExecutor

        self.local, self.run_dir, self.pending = local, run_dir, None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="rushes-upload") if active and is_remote(run_dir) \
            else None

    def push(self, checkpoint: str) -> None:
        """Start uploading checkpoint ``checkpoint`` and the records (after the previous upload ended)."""
        if self.pool is None:
            return
        self.wait()
        records = {name: (self.local / name).read_bytes() for name in RECORDS if (self.local / name).is_file()}
        self.pending = self.pool.submit(_upload, self.local, self.run_dir, checkpoint, records)

    def wait(self) -> None:
        """Wait for the upload in flight; raises its error."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the last upload (a run's end), then stop the thread."""
        try:
            self.wait()
        finally:
            if self.pool is not None:
                self.pool.shutdown()


def _upload(local: Path, run_dir: str, checkpoint: str, records: dict[str, bytes]) -> None:
    """The checkpoint's files, then the records, then the marker that names it, then the removal of the
    bucket's checkpoints the working copy dropped."""
    folder = local / CHECKPOINTS / checkpoint
    for src in sorted(p for p in folder.rglob("*") if p.is_file()):
        storage.copy_file(src, storage.join(run_dir, CHECKPOINTS, checkpoint, *src.relative_to(folder).parts))
    for name, data in records.items():
        storage.write_bytes_atomic(storage.join(run_dir, name), data)
    storage.write_bytes_atomic(storage.join(run_dir, CHECKPOINTS, MARKER), checkpoint.encode())
    kept = {p.name for p in (local / CHECKPOINTS).glob("step-*")}
    prefix = storage.join(run_dir, CHECKPOINTS)
    for obj in storage.list_files(prefix):
        folder_name = obj[len(prefix) + 1:].split("/")[0]
        if folder_name.startswith("step-") and folder_name <= checkpoint and folder_name not in kept:
            storage.delete(obj)
