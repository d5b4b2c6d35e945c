"""The destination of an export: a local folder or a bucket prefix, written atomically and resumable.

Usage::

    dest = Destination("s3://bucket/exports/a")
    dest.begin(plan)                         # refuses a DEST that holds another export, clears stale temporaries
    if not dest.has("videos/x.mp4"):
        dest.put_file("/tmp/x.mp4", "videos/x.mp4")
    dest.put_text("prompts.txt", "...")
    dest.finish(record)

Every file is written under a ``_tmp-`` name beside its final one and becomes visible by an atomic rename (on a
bucket, a server-side copy then a delete, :func:`rushes.storage.publish`): a reader, or a rerun, never sees half a
file under a final name. ``export.json`` is the plan, written first with ``"complete": false`` and rewritten with
``"complete": true`` last; a rerun with the same plan continues (files already there are kept), a rerun with
another plan (other clips, format or settings) is refused, so two exports never mix in one DEST.
"""

from __future__ import annotations

import json
import os
import shutil

from rushes import storage
from rushes.manifests.store import write_json_atomic

PLAN = "export.json"
# What a rerun must match to continue an export (the rest of the record is counts and provenance).
PLAN_KEYS = ("format", "run", "samples_hash", "caption_field", "shard_size", "spans_only")


class ExportError(ValueError):
    """The export cannot start (bad source, a DEST holding something else); the message says how to fix it."""


class Destination:
    """Files of one export under ``root`` (a folder or ``s3://bucket/prefix``)."""

    def __init__(self, root):
        self.root = str(root).rstrip("/") if storage.is_remote(root) else os.path.abspath(os.fspath(root))
        self._listed: dict[str, bool] | None = None  # rel path -> published, listed once by begin()

    def path(self, rel: str):
        return storage.join(self.root, *rel.split("/"))

    def has(self, rel: str) -> bool:
        """True when ``rel`` was published (a file under its final name is always whole). After :meth:`begin`, from
        its one listing of DEST (this command is DEST's only writer): no request per file on a bucket."""
        if self._listed is not None:
            return self._listed.get(rel, False)
        return storage.is_file(self.path(rel)) and storage.size(self.path(rel)) > 0

    def put_file(self, local: str, rel: str) -> None:
        """Copy the local file ``local`` to ``rel`` under a temporary name, then publish it."""
        final = self.path(rel)
        tmp = storage.temp_sibling(final)
        try:
            if storage.is_remote(final):
                storage.copy_file(local, tmp)
            else:
                os.makedirs(os.path.dirname(tmp), exist_ok=True)
                shutil.copyfile(local, tmp)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
            storage.publish(tmp, final)
        finally:
            storage.delete(tmp)

    def put_text(self, rel: str, text: str) -> None:
        storage.write_bytes_atomic(self.path(rel), text.encode("utf-8"))

    def read_plan(self) -> dict | None:
        path = self.path(PLAN)
        if not storage.is_file(path):
            return None
        try:
            plan = json.loads(storage.read_bytes(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ExportError(f"{path} is not a valid export record ({exc}); delete {self.root} or export into "
                              f"another DEST") from None
        if not isinstance(plan, dict):
            raise ExportError(f"{path} is not a valid export record; delete {self.root} or export into another DEST")
        return plan

    def begin(self, plan: dict) -> bool:
        """Start (or continue) the export ``plan``; returns True when it continues an earlier one."""
        before = self.read_plan()
        if before is None and any(not storage.name(f).startswith(".") for f in storage.list_files(self.root)):
            raise ExportError(f"{self.root} is not empty and holds no rushes export ({PLAN}); export into a new or "
                              f"empty DEST")
        if before is not None:
            differs = [f"{k}={before.get(k)!r} (now {plan.get(k)!r})" for k in PLAN_KEYS if before.get(k) != plan.get(k)]
            if differs:
                raise ExportError(f"{self.root} holds another export: {'; '.join(differs)}. Export into a new DEST, "
                                  f"or delete {self.root} first")
        self._clear_temporaries()
        write_json_atomic(self.path(PLAN), {**plan, "complete": False})
        return before is not None

    def finish(self, record: dict) -> None:
        write_json_atomic(self.path(PLAN), {**record, "complete": True})

    def _clear_temporaries(self) -> None:
        # One writer per DEST (the command holds its lock): a _tmp- file now is a crashed run's, never read.
        self._listed = {}
        for f in storage.list_files(self.root):
            if storage.name(f).startswith(storage.TEMP_PREFIX):
                storage.delete(f)
                continue
            rel = str(f)[len(self.root):].lstrip("/") if storage.is_remote(self.root) else \
                os.path.relpath(f, self.root).replace(os.sep, "/")
            self._listed[rel] = True  # a file under its final name was published whole
