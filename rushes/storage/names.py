"""File names of any bytes: how a local path that is not valid UTF-8 is shown, stored and found again.

A Linux file name is any bytes but ``/`` and NUL; Python hands the undecodable ones over as lone surrogates
(``os.fsdecode``), which cannot be written to Parquet, JSON or most terminals. Manifests keep such a path twice:
``path`` holds a display form with each odd byte escaped as ``\\xNN`` (readable, valid UTF-8, stable), and
``path_bytes`` the exact bytes, from which :func:`from_stored` gives back the name to open. A valid UTF-8 name is
its own display form and has no bytes column (null).

Usage::

    row = {"path": display(path), "path_bytes": exact_bytes(path)}
    log.info("done %s", display(path))
    open(from_stored(row["path"], row["path_bytes"]), "rb")
"""

from __future__ import annotations

import os


def display(path: str | os.PathLike) -> str:
    """``path`` as valid UTF-8 text: the bytes that are not UTF-8 escaped as ``\\xNN``; URIs unchanged."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:  # the file system's bytes (undecodable ones arrive as surrogates): escape those bytes
            return os.fsencode(text).decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a lone surrogate that stands for no byte: escape the code point
            return text.encode("utf-8", "backslashreplace").decode("utf-8")


def exact_bytes(path: str | os.PathLike) -> bytes | None:
    """The file system's bytes of ``path`` when they are not valid UTF-8 (its display form then differs), else
    None."""
    raw = os.fsencode(path)
    try:
        raw.decode("utf-8")
        return None
    except UnicodeDecodeError:
        return raw


def from_stored(path: str, path_bytes: bytes | None) -> str:
    """The name to open for a manifest row's ``path`` and ``path_bytes`` (see the module doc)."""
    return os.fsdecode(path_bytes) if path_bytes else path
