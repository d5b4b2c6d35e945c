"""Turn the command's INPUT arguments into a list of video paths.

An input may be a video file, a folder (searched recursively for video extensions), a glob pattern
(``'footage/**/*.mp4'``, quoted so the shell does not expand it), or a ``.txt`` file listing one input
per line (``#`` starts a comment). An explicit path that does not exist, or a glob that matches
nothing, is kept as given, so the run records it as a failed input instead of silently skipping it.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

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


def _expand_one(item: str, seen_lists: set[str]) -> Iterable[str]:
    if item.lower().endswith(".txt") and os.path.isfile(item):
        real = os.path.realpath(item)
        if real in seen_lists:  # a list that includes itself
            return []
        seen_lists.add(real)
        base = Path(item).parent
        out: list[str] = []
        for line in Path(item).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                entry = line if os.path.isabs(line) else str(base / line)
                out.extend(_expand_one(entry, seen_lists))
        return out
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
    when it lies inside an input folder) are left out so a rerun never curates its own clips. URLs such as
    ``s3://`` are kept as given (they become error rows saying how to fetch them), not made into local paths.
    """
    seen: dict[str, None] = {}
    lists: set[str] = set()
    skip = os.path.realpath(exclude_dir) + os.sep if exclude_dir else None
    for item in items:
        for path in _expand_one(os.path.expanduser(str(item)), lists):
            path = path if "://" in path else os.path.abspath(path)
            if skip and os.path.realpath(path).startswith(skip):
                continue
            seen.setdefault(path, None)
    paths = list(seen)
    return paths[:limit] if limit else paths
