"""Bounded local copies of remote inputs, for tools that need a file (ffprobe, PyAV seeking, ffmpeg).

Usage::

    scratch = Scratch("/mnt/scratch", max_bytes=50 * 2**30)
    with local_copy("s3://bucket/raw/a.mp4", scratch, hasher=hashlib.blake2b(digest_size=16)) as copy:
        probe(copy.path); copy.digest   # the content hash, computed while the bytes streamed in

A local input is read in place (hashed by streaming it once); a remote one is streamed into a private
folder under ``scratch.root`` and removed when the ``with`` block ends, also after an exception. The
cap holds across every process on the machine that shares the folder: each copy first reserves its
object's size under a file lock, waits while the reservations of live processes would exceed
``max_bytes``, and fails with :class:`ScratchError` (a per-video error, not a crash) when one object is
larger than the cap or no room came free in ``wait_s``. Folders and reservations of processes that died
(kill -9, out of memory) are reclaimed by the next reservation.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rushes.storage.fs import is_remote, name, open_input, size

_CHUNK = 1 << 20
DEFAULT_MAX_BYTES = 20 * 2**30


class ScratchError(OSError):
    """No room in the scratch folder for a copy. Carries the facts: ``what`` (the object), ``nbytes`` (its size),
    ``cap_bytes`` (the cap), ``root`` (the folder) and ``reason``: ``too_large`` (bigger than the cap) or ``no_room``
    (other copies held the cap for the whole wait). The message names the settings to change as the
    :class:`Scratch` names them."""

    def __init__(self, message: str, *, what: str = "", nbytes: int = 0, cap_bytes: int = 0, root: Path | None = None,
                 reason: str = ""):
        super().__init__(message)
        self.what, self.nbytes, self.cap_bytes, self.root, self.reason = what, nbytes, cap_bytes, root, reason


@dataclass(frozen=True)
class Scratch:
    """A local folder for copies of remote inputs and outputs being staged, and its size cap in bytes.

    ``cap_name`` and ``root_name`` are how error messages (recorded per video or clip) name the two settings a
    user changes to make room; a command line passes its flags (``rushes.settings.ScratchSettings``), as this
    module knows no flag names."""

    root: Path = Path(tempfile.gettempdir()) / "rushes-scratch"
    max_bytes: int = DEFAULT_MAX_BYTES
    wait_s: float = 600.0
    cap_name: str = "the scratch cap (Scratch.max_bytes)"
    root_name: str = "the scratch folder (Scratch.root)"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser())
        if self.max_bytes <= 0:
            raise ValueError(f"scratch size cap must be positive, got {self.max_bytes} bytes; set {self.cap_name} "
                             f"above 0")
        if not self.wait_s >= 0:
            raise ValueError(f"scratch wait must be >= 0 s, got {self.wait_s}")


@dataclass(frozen=True)
class LocalCopy:
    """A readable local file for one input, and what streaming it gave."""

    path: str  # local file to hand to ffprobe/PyAV/ffmpeg
    size_bytes: int
    digest: str | None  # hexdigest of the hasher passed in (None without one)
    workdir: Path | None  # private scratch folder (None for a local input): stage outputs here


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# Entries this module makes under the scratch root: private folders and size reservations, named by pid.
_ENTRY = re.compile(r"^(?:\.rushes-reserve|rushes)-(\d+)-[0-9a-f]{8}(?:-(\d+))?$")


def _reclaim(root: Path) -> None:
    """Delete the private folders and reservations of processes of this machine that are gone (killed mid-copy,
    mid-staging, or while training in a working copy); call it holding ``root/.lock``."""
    for entry in root.iterdir():
        m = _ENTRY.match(entry.name)
        if m and not _alive(int(m.group(1))):  # an entry not named by this module may be anything: left alone
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _reserved(root: Path) -> int:
    """Bytes reserved by live processes (after reclaiming the reservations and folders of dead ones)."""
    _reclaim(root)
    return sum(int(m.group(2)) for m in map(_ENTRY.match, (e.name for e in root.iterdir())) if m and m.group(2))


def _reserve(scratch: Scratch, nbytes: int, what: str) -> Path:
    gib = 2**30
    facts = {"what": what, "nbytes": nbytes, "cap_bytes": scratch.max_bytes, "root": scratch.root}
    if nbytes > scratch.max_bytes:
        raise ScratchError(f"{what} is {nbytes / gib:.2f} GiB, more than the scratch cap of "
                           f"{scratch.max_bytes / gib:.2f} GiB; raise {scratch.cap_name}, or point "
                           f"{scratch.root_name} at a larger disk", reason="too_large", **facts)
    scratch.root.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + scratch.wait_s
    while True:
        with open(scratch.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _reserved(scratch.root) + nbytes <= scratch.max_bytes:
                token = scratch.root / f".rushes-reserve-{os.getpid()}-{uuid.uuid4().hex[:8]}-{nbytes}"
                token.touch()
                return token
        if time.monotonic() >= deadline:
            raise ScratchError(f"no room in scratch folder {scratch.root} for {what} ({nbytes / gib:.2f} GiB) "
                               f"after {scratch.wait_s:.0f} s: other copies hold the {scratch.max_bytes / gib:.2f} "
                               f"GiB cap; raise {scratch.cap_name} or run fewer tasks per machine",
                               reason="no_room", **facts)
        time.sleep(0.5)


def _stream(src, dst, hasher) -> None:
    while chunk := src.read(_CHUNK):
        if hasher is not None:
            hasher.update(chunk)
        if dst is not None:
            dst.write(chunk)


def _private_dir(scratch: Scratch) -> Path:
    return scratch.root / f"rushes-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def local_copy(where, scratch: Scratch | None = None, hasher=None) -> Iterator[LocalCopy]:
    """A local file with the content of ``where`` for the duration of the block (see module doc)."""
    if not is_remote(where):
        path = os.path.abspath(os.fspath(where))
        if hasher is not None:
            with open(path, "rb") as src:
                _stream(src, None, hasher)
        yield LocalCopy(path, os.path.getsize(path), hasher.hexdigest() if hasher else None, None)
        return
    scratch = scratch or Scratch()
    nbytes = size(where)
    token = _reserve(scratch, nbytes, str(where))
    workdir = _private_dir(scratch)
    try:
        workdir.mkdir(parents=True)
        suffix = Path(name(where)).suffix.lower()
        dest = workdir / f"input{suffix if suffix.isascii() and len(suffix) < 10 else ''}"
        with open_input(where) as src, open(dest, "wb") as dst:
            _stream(src, dst, hasher)
        yield LocalCopy(str(dest), nbytes, hasher.hexdigest() if hasher else None, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        token.unlink(missing_ok=True)


@contextmanager
def readable(where, scratch: Scratch | None = None) -> Iterator[str]:
    """A local path to read ``where`` from: the path itself when local, a scratch copy of an object otherwise.

    For decoders that need a seekable file (PyAV, ffmpeg); the copy is removed when the block ends.
    """
    if not is_remote(where):
        yield os.fspath(where)
        return
    with local_copy(where, scratch) as copy:
        yield copy.path


@contextmanager
def staging_dir(scratch: Scratch | None = None) -> Iterator[Path]:
    """A private local folder under the scratch root (outputs made locally before upload, a training run's
    working copy), removed after; the folders of this machine's processes that died are removed first."""
    scratch = scratch or Scratch()
    workdir = _private_dir(scratch)
    scratch.root.mkdir(parents=True, exist_ok=True)
    with open(scratch.root / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _reclaim(scratch.root)
        workdir.mkdir()
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
