"""Deterministic ids: the same inputs give the same id on every run and every machine."""

from __future__ import annotations

import hashlib
import json
import os

from rushes import storage

_CHUNK = 1 << 20


def make_id(*parts: object, length: int = 16) -> str:
    """Hex id from any JSON-serialisable parts (order matters). Floats are rounded to microseconds."""
    def norm(x):
        if hasattr(x, "item") and not isinstance(x, (str, bytes)):
            x = x.item()  # numpy scalars: the same value gives the same id as a Python number
        if isinstance(x, float):
            return round(x, 6)
        if isinstance(x, dict):
            return {str(k): norm(v) for k, v in sorted(x.items())}
        if isinstance(x, (list, tuple)):
            return [norm(v) for v in x]
        return x

    blob = json.dumps([norm(p) for p in parts], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(blob.encode(), digest_size=32).hexdigest()[:length]


def content_hasher():
    """A fresh hash object of the content-hash algorithm (blake2b-128): feed it bytes while streaming them."""
    return hashlib.blake2b(digest_size=16)


def content_hash(path: str | os.PathLike) -> str:
    """blake2b-128 hex digest of a file's or object's bytes (a path or URI; streamed, constant memory)."""
    h = content_hasher()
    with storage.open_input(path) as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def config_hash(config: object) -> str:
    """Short hash of a resolved config (a dataclass turned into a dict, or any JSON-serialisable value)."""
    return make_id("config", config, length=12)
