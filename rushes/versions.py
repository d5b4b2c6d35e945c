"""Provenance: the versions of the tools that shaped an output, recorded on manifest rows and run configs.

Every stage asks for the same shape, ``{"rushes": ..., "<package>": ..., "ffmpeg": ...}``, so rows written by
different stages (and the train run's ``config.json``) can be compared key by key.
"""

from __future__ import annotations

from importlib import metadata
from typing import Iterable


def package_version(name: str) -> str | None:
    """Installed version of distribution ``name``, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def tool_versions(packages: Iterable[str], ffmpeg: bool = False) -> dict:
    """``{"rushes": v, package: v, ...}`` for ``packages`` (PyPI distribution names), plus the ffmpeg
    executable's version when ``ffmpeg`` is set. A package that is not installed maps to None."""
    found = {"rushes": package_version("rushes")}
    for name in packages:
        found[name] = package_version(name)
    if ffmpeg:
        from rushes.media.ffmpeg import ffmpeg_version

        found["ffmpeg"] = ffmpeg_version()
    return found
