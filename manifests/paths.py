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


# What stages write inside a run directory (OUT of curate/caption/encode, RUN of train): never an output path.
RUN_FOLDERS = ("videos", "clips", "captions", "encodings", "media", "config", "checkpoints", "thumbs")


class OutputPathError(ManifestError):
    """An output path that would overwrite a run's own files or folders."""


def check_output_path(path: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> None:
    """Raise :class:`OutputPathError` when writing a file at ``path`` would destroy data: ``path`` is an existing
    folder, a Parquet file (a manifest part), or lies in one of ``run_dir``'s own folders (:data:`RUN_FOLDERS`)."""
    if storage.is_remote(path):
        return  # a report or sample written to a bucket: object names cannot be folders, parts are checked below
    target = Path(path).expanduser().resolve()
    why = None
    if target.is_dir():
        why = "is a folder"
    elif target.suffix == ".parquet" or (target.is_file() and _starts_with(target, b"PAR1")):
        why = "is a Parquet file (a manifest part)"
    elif run_dir is not None and not storage.is_remote(run_dir):
        root = Path(run_dir).resolve()
        inside = [f for f in RUN_FOLDERS if root / f == target or root / f in target.parents]
        if inside:
            why = f"lies in the run's own {inside[0]}/ folder"
    if why:
        raise OutputPathError(f"output path {path} {why}: writing there would destroy data; name a new file "
                              f"outside the run's folders (e.g. {Path(run_dir or '.') / 'report.html'})")


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as fh:
        return fh.read(len(magic)) == magic
