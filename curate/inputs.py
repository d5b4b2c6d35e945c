"""Turn the command's INPUT arguments into a list of video paths.

An input may be a video file, a folder (searched recursively for video extensions), a glob pattern
(``'footage/**/*.mp4'``, quoted so the shell does not expand it), or a ``.txt`` file listing one input
per line (``#`` starts a comment). An explicit path that does not exist, or a glob that matches
nothing, is kept as given, so the run records it as a failed input instead of silently skipping it.
Each of these may also be in a bucket (``s3://bucket/raw/``, ``'s3://bucket/raw/**/*.mp4'``,
``s3://bucket/lists/day1.txt``, whose relative lines resolve against the list's own prefix); listing goes
through :mod:`storage`, and keys are kept exactly as stored (spaces included).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

import storage

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv",
    ".flv", ".3gp", ".ogv", ".mxf", ".dv", ".y4m",
})


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _from_folder(folder: Path) -> list[str]:
    found = [str(p) for p in folder.rglob("*")
             if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")]
    return sorted(found)


def _is_video(location: str) -> bool:
    name = storage.name(location)
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS and not name.startswith(".")


def _expand_remote(item: str, seen_lists: set[str]) -> list[str]:
    """The same rules as for local inputs, for an object-store URI; kept as given when the store cannot be
    reached (no network, no credentials), so the run records it as a failed input naming the cause."""
    try:
        return _list_remote(item, seen_lists)
    except OSError:
        return [item]


def _list_remote(item: str, seen_lists: set[str]) -> list[str]:
    if item.lower().endswith(".txt") and storage.is_file(item):
        if item in seen_lists:
            return []
        seen_lists.add(item)
        return _expand_list(storage.read_bytes(item).decode("utf-8"), storage.parent(item), seen_lists)
    if _is_glob(item):
        return [m for m in storage.glob(item) if _is_video(m)] or [item]
    if not storage.is_file(item) and storage.is_dir(item):
        return [f for f in storage.list_files(item) if _is_video(f)]
    return [item]


def _expand_list(text: str, base, seen_lists: set[str]) -> list[str]:
    """Entries of a ``.txt`` list: absolute paths and URIs as written, relative ones against ``base``."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            entry = line if os.path.isabs(line) or storage.is_uri(line) else str(storage.join(base, line))
            out.extend(_expand_one(entry, seen_lists))
    return out


def _expand_one(item: str, seen_lists: set[str]) -> Iterable[str]:
    if storage.is_remote(item):
        return _expand_remote(item, seen_lists)
    if item.lower().endswith(".txt") and os.path.isfile(item):
        real = os.path.realpath(item)
        if real in seen_lists:  # a list that includes itself
            return []
        seen_lists.add(real)
        return _expand_list(Path(item).read_text(), Path(item).parent, seen_lists)
    if os.path.isdir(item):
        return _from_folder(Path(item))
    if _is_glob(item) and not os.path.exists(item):
        matches = sorted(glob.glob(item, recursive=True))
        files = [m for m in matches if os.path.isfile(m)]
        dirs = [m for m in matches if os.path.isdir(m)]
        for d in dirs:
            files.extend(_from_folder(Path(d)))
        return files or [item]
    return [item]


def expand_inputs(items: Iterable[str], limit: int | None = None, exclude_dir: str | os.PathLike | None = None
                  ) -> list[str]:
    """Absolute video paths from files, folders, globs and .txt lists, deduplicated, in order.

    ``limit`` keeps the first N (for a quick trial run). Paths under ``exclude_dir`` (the run's own output,
    when it lies inside an input folder) are left out so a rerun never curates its own clips. Object-store
    URIs are expanded through :mod:`storage`; other URLs (``https://``) are kept as given and become error rows.
    """
    seen: dict[str, None] = {}
    lists: set[str] = set()
    skip = None
    if exclude_dir:
        skip = (str(exclude_dir).rstrip("/") + "/" if storage.is_remote(exclude_dir)
                else os.path.realpath(exclude_dir) + os.sep)
    for item in items:
        for path in _expand_one(os.path.expanduser(str(item)), lists):
            path = path if "://" in path else os.path.abspath(path)
            if skip and (path if "://" in path else os.path.realpath(path)).startswith(skip):
                continue
            seen.setdefault(path, None)
    paths = list(seen)
    return paths[:limit] if limit else paths
