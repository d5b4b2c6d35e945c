"""Turn the command's INPUT arguments into a list of video paths, accounting for every file seen.

An input may be a video file, a folder (searched recursively for video extensions), a glob pattern
(``'footage/**/*.mp4'``, quoted so the shell does not expand it), or a ``.txt`` file listing one input
per line (``#`` starts a comment; a URL line such as ``s3://bucket/a.mp4`` stays a URL). An explicit path
that does not exist, or a glob that matches nothing, is kept as given, so the run records it as a failed
input instead of silently skipping it; so is a file named explicitly whatever its extension.

Symbolic links are followed, folders too; a link that leads back into a folder being searched is not
followed again (a cycle). Each video is listed once by its resolved path (what the manifest records), so
two links to one file are one input. Every file a folder expanded to that is not listed is counted in
``Inputs.skipped`` by reason (``not_video`` for an extension that is not a video's, ``hidden``,
``run_output`` inside OUT, ``same_file`` for another name of a listed file, ``symlink_cycle``) and logged.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv",
    ".flv", ".3gp", ".ogv", ".mxf", ".dv", ".y4m",
})


@dataclass
class Inputs:
    """The videos to curate (resolved absolute paths or URLs, in order) and what was left out, by reason."""

    paths: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, path: str) -> None:
        self.skipped.setdefault(reason, []).append(path)

    def skipped_counts(self) -> dict[str, int]:
        """Files left out per reason (what ``summary.json`` records)."""
        return {reason: len(paths) for reason, paths in sorted(self.skipped.items())}


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _from_folder(folder: Path, found: Inputs) -> list[str]:
    """Video files under ``folder`` (links followed, cycles cut), sorted; the rest is recorded as skipped."""
    videos: list[str] = []
    seen_dirs: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen_dirs:
            found.skip("symlink_cycle", root)
            dirs[:] = []
            continue
        seen_dirs.add(real)
        for d in [d for d in dirs if d.startswith(".")]:
            found.skip("hidden", os.path.join(root, d))
            dirs.remove(d)
        dirs.sort()
        for name in files:
            path = os.path.join(root, name)
            if name.startswith("."):
                found.skip("hidden", path)
            elif Path(name).suffix.lower() not in VIDEO_EXTENSIONS:
                found.skip("not_video", path)
            else:
                videos.append(path)
    return sorted(videos)


def _from_list(item: str, seen_lists: set[str], found: Inputs) -> list[str]:
    real = os.path.realpath(item)
    if real in seen_lists:  # a list that includes itself
        return []
    seen_lists.add(real)
    base = Path(item).parent
    out: list[str] = []
    for line in Path(item).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            entry = line if os.path.isabs(line) or "://" in line else str(base / line)
            out.extend(_expand_one(entry, seen_lists, found))
    return out


def _expand_one(item: str, seen_lists: set[str], found: Inputs) -> Iterable[str]:
    if "://" in item:
        return [item]  # a URL: the run records it as an error row saying how to fetch it
    if item.lower().endswith(".txt") and os.path.isfile(item):
        return _from_list(item, seen_lists, found)
    if os.path.isdir(item):
        return _from_folder(Path(item), found)
    if _is_glob(item) and not os.path.exists(item):
        matches = sorted(glob.glob(item, recursive=True))
        files = [m for m in matches if os.path.isfile(m)]
        for d in (m for m in matches if os.path.isdir(m)):
            files.extend(_from_folder(Path(d), found))
        return files or [item]
    return [item]


def collect_inputs(items: Iterable[str], limit: int | None = None, exclude_dir: str | os.PathLike | None = None
                   ) -> Inputs:
    """Videos from files, folders, globs and .txt lists, deduplicated by resolved path, in order.

    ``limit`` keeps the first N (for a quick trial run). Paths under ``exclude_dir`` (the run's own output,
    when it lies inside an input folder) are left out so a rerun never curates its own clips. URLs such as
    ``s3://`` are kept as given (they become error rows saying how to fetch them), not made into local paths.
    """
    found = Inputs()
    listed: dict[str, None] = {}
    lists: set[str] = set()
    skip = os.path.realpath(exclude_dir) + os.sep if exclude_dir else None
    for item in items:
        for path in _expand_one(os.path.expanduser(str(item)), lists, found):
            if "://" not in path:
                path = os.path.realpath(path) if os.path.exists(path) else os.path.abspath(path)
            if skip and path.startswith(skip):
                found.skip("run_output", path)
            elif path in listed:
                found.skip("same_file", path)
            else:
                listed[path] = None
    found.paths = list(listed)[:limit] if limit else list(listed)
    for reason, paths in sorted(found.skipped.items()):
        log.info("inputs: %d file(s) left out as %s, e.g. %s", len(paths), reason, ", ".join(paths[:3]))
    return found


def expand_inputs(items: Iterable[str], limit: int | None = None, exclude_dir: str | os.PathLike | None = None
                  ) -> list[str]:
    """The video paths of :func:`collect_inputs` (what a run processes)."""
    return collect_inputs(items, limit, exclude_dir).paths
