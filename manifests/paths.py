"""Paths written into manifests (``clip_path``, thumbnails, encodings) are relative to the run directory and must
resolve inside it; a row that points elsewhere is refused, never followed.

Usage::

    from rushes.manifests.paths import UnsafePathError, resolve_inside
    try:
        path = resolve_inside(out, row["clip_path"], column="clip_path", row=f"clip {row['clip_id']}")
    except UnsafePathError as exc:
        ...  # record an error row with str(exc): it names the row, the path and the fix

Refused: an absolute path, any ``..`` component, and a path that resolves (through symlinks, in OUT or in the
path itself) outside the run directory. A symlink whose target stays inside OUT is followed. For a run in a
bucket (``s3://...``, no symlinks) the same textual rules hold and the result is the object's URI.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from rushes import storage
from rushes.manifests.store import ManifestError


class UnsafePathError(ManifestError):
    """A manifest path that is absolute, climbs out with ``..`` or resolves outside the run directory."""


def resolve_inside(run_dir: str | os.PathLike, rel: str, column: str = "path", row: str = "a row") -> Path | str:
    """The absolute path of ``rel`` inside ``run_dir`` (symlinks resolved), or :class:`UnsafePathError`.

    ``column`` and ``row`` name what is refused in the message (e.g. ``"clip_path"``, ``"clip 3f2a..."``).
    A ``run_dir`` in a bucket gives the object's URI (a ``str``).
    """
    remote = storage.is_remote(run_dir)
    root = str(run_dir).rstrip("/") if remote else Path(run_dir).resolve()
    text = os.fspath(rel) if rel is not None else ""
    why = None
    if not text.strip():
        why = "is empty"
    elif PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        why = "is absolute"
    elif ".." in PurePosixPath(text.replace("\\", "/")).parts:
        why = "climbs out with '..'"
    elif remote:
        return storage.join(root, text)
    else:
        target = (root / text).resolve()
        if root in target.parents:
            return target
        why = "names the run directory itself" if target == root else \
            f"resolves outside the run directory (to {target})"
    raise UnsafePathError(f"{row}: {column} {text!r} {why}; manifest paths are relative to the run directory "
                          f"{root} and stay inside it. Rerun the stage that wrote the row, or fix the row")
