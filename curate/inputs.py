"""Turn the command's INPUT arguments into a list of video and still-image paths, accounting for every file seen.

An input may be a video or image file, a folder (searched recursively for video and image extensions: stills
such as ``.jpg``, ``.png``, ``.webp``, ``.bmp``, ``.tiff`` are curated as one-frame clips), a glob pattern
(``'footage/**/*.mp4'``, quoted so the shell does not expand it), or a ``.txt`` file listing one input
per line (``#`` starts a comment). An explicit path that does not exist, or a glob that matches nothing,
is kept as given, so the run records it as a failed input instead of silently skipping it; so is a file
named explicitly whatever its extension. Each of these may also be in a bucket (``s3://bucket/raw/``,
``'s3://bucket/raw/**/*.mp4'``, ``s3://bucket/lists/day1.txt``, whose relative lines resolve against the
list's own prefix); listing goes through :mod:`storage`, and keys are kept exactly as stored (spaces
included). Other URLs (``https://``), in a list too, stay as written: their row says how to fetch them.

Symbolic links are followed, folders too; a link that leads back into a folder being searched is not
followed again (a cycle). Each video is listed once by its resolved path (what the manifest records), so
two links to one file are one input. Every file a folder expanded to that is not listed is counted in
``Inputs.skipped`` by reason (``not_video`` for an extension that is neither a video's nor an image's, ``hidden``,
``run_output`` inside OUT, ``same_file`` for another name of a listed file, ``symlink_cycle``) and logged.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rushes import storage
from rushes.media.images import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv",
    ".flv", ".3gp", ".ogv", ".mxf", ".dv", ".y4m",
})
# What a folder, glob or bucket prefix contributes: videos, and stills (curated as one-frame clips).
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS


class NoVideoFound(ValueError):
    """The inputs name no video or image at all (an empty folder, a folder named like a file, only other files)."""


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
            elif Path(name).suffix.lower() not in MEDIA_EXTENSIONS:
                found.skip("not_video", path)
            else:
                videos.append(path)
    return sorted(videos)


def _is_video(location: str) -> bool:
    name = storage.name(location)
    return os.path.splitext(name)[1].lower() in MEDIA_EXTENSIONS and not name.startswith(".")


def _expand_remote(item: str, seen_lists: set[str], found: Inputs) -> list[str]:
    """The same rules as for local inputs, for an object-store URI; kept as given when the store cannot be
    reached (no network, no credentials), so the run records it as a failed input naming the cause."""
    try:
        return _list_remote(item, seen_lists, found)
    except OSError:
        return [item]


def _keep_videos(locations: list[str], found: Inputs) -> list[str]:
    videos = []
    for loc in locations:
        if _is_video(loc):
            videos.append(loc)
        else:
            found.skip("hidden" if storage.name(loc).startswith(".") else "not_video", loc)
    return videos


def _list_remote(item: str, seen_lists: set[str], found: Inputs) -> list[str]:
    if item.lower().endswith(".txt") and storage.is_file(item):
        if item in seen_lists:
            return []
        seen_lists.add(item)
        return _expand_list(storage.read_bytes(item).decode("utf-8"), storage.parent(item), seen_lists, found)
    if _is_glob(item):
        return _keep_videos(list(storage.glob(item)), found) or [item]
    if not storage.is_file(item) and storage.is_dir(item):
        return _keep_videos(list(storage.list_files(item)), found)
    return [item]


def _expand_list(text: str, base, seen_lists: set[str], found: Inputs) -> list[str]:
    """Entries of a ``.txt`` list: absolute paths and URIs as written, relative ones against ``base``."""
    out: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            entry = line if os.path.isabs(line) or storage.is_uri(line) else str(storage.join(base, line))
            out.extend(_expand_one(entry, seen_lists, found))
    return out


def _expand_one(item: str, seen_lists: set[str], found: Inputs) -> Iterable[str]:
    if storage.is_remote(item):
        return _expand_remote(item, seen_lists, found)
    if "://" in item:
        return [item]  # another URL: the run records it as an error row saying how to fetch it
    if item.lower().endswith(".txt") and os.path.isfile(item):
        real = os.path.realpath(item)
        if real in seen_lists:  # a list that includes itself
            return []
        seen_lists.add(real)
        return _expand_list(Path(item).read_text(), Path(item).parent, seen_lists, found)
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
    when it lies inside an input folder) are left out so a rerun never curates its own clips. Object-store
    URIs are expanded through :mod:`storage`; other URLs (``https://``) are kept as given and become error rows.
    """
    found = Inputs()
    listed: dict[str, None] = {}
    lists: set[str] = set()
    skip = None
    if exclude_dir:
        skip = (str(exclude_dir).rstrip("/") + "/" if storage.is_remote(exclude_dir)
                else os.path.realpath(exclude_dir) + os.sep)
    items = [os.path.expanduser(str(item)) for item in items]
    # A file the user named is always curated, even inside the run's own folder (``--out .``).
    named = {os.path.realpath(i) for i in items if "://" not in i and os.path.isfile(i)}
    for item in items:
        for path in _expand_one(item, lists, found):
            if "://" not in path:
                path = os.path.realpath(path) if os.path.exists(path) else os.path.abspath(path)
            if skip and path.startswith(skip) and path not in named:
                found.skip("run_output", path)
            elif path in listed:
                found.skip("same_file", path)
            else:
                listed[path] = None
    found.paths = list(listed)[:limit] if limit else list(listed)
    for reason, paths in sorted(found.skipped.items()):
        log.info("inputs: %d file(s) left out as %s, e.g. %s", len(paths), reason, ", ".join(paths[:3]))
    if not found.paths:
        left_out = ", ".join(f"{n} {reason}" for reason, n in found.skipped_counts().items())
        raise NoVideoFound(f"no video or image found under {', '.join(map(str, items))}"
                           f"{f' (left out: {left_out})' if left_out else ''}; pass video files "
                           f"({', '.join(sorted(VIDEO_EXTENSIONS)[:6])}, ...) or images "
                           f"({', '.join(sorted(IMAGE_EXTENSIONS))}), folders holding them, quoted globs or .txt "
                           f"lists of them")
    return found


def expand_inputs(items: Iterable[str], limit: int | None = None, exclude_dir: str | os.PathLike | None = None
                  ) -> list[str]:
    """The video paths of :func:`collect_inputs` (what a run processes)."""
    return collect_inputs(items, limit, exclude_dir).paths
