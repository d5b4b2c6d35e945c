"""One writer per run directory: ``OUT/.lock`` names its owner; a second writer refuses at once.

Usage (``rushes curate`` and ``rushes filter`` do this; readers such as ``inspect`` never need it)::

    with acquire("runs/a", "rushes curate"):
        ...  # write manifests, clips, summary.json

The lock file holds JSON ``{"pid", "host", "started_at", "command"}`` and an exclusive ``flock`` while the
writer runs, so a writer that died (kill -9, a crash) leaves a lock the next writer takes over: the kernel
released its ``flock``, and on the same host its pid is checked too. A lock naming another host is never
taken over (its pid cannot be checked from here): the message says to delete the file if that job is gone.
On file systems without ``flock`` the pid check alone decides. Stdlib only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import storage

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class LockError(RuntimeError):
    """The run directory cannot be written: another writer holds it, or it is not a usable folder."""


def _owner(command: str) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def describe(owner: dict) -> str:
    """``pid 123 on host h since 2026-...Z (rushes curate)``."""
    return (f"pid {owner.get('pid')} on host {owner.get('host')} since {owner.get('started_at')} "
            f"({owner.get('command')})")


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LockError(f"{out} is a file, not a folder; give --out a folder path (new or an earlier run)") from None
    except OSError as exc:
        raise LockError(f"cannot create the run folder {out}: {exc.strerror}; give --out a folder you can "
                        f"write (e.g. under your home or project folder)") from None


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except IsADirectoryError:
        raise LockError(f"{path} is a folder; remove it (rushes keeps its lock file there)") from None
    except OSError as exc:
        raise LockError(f"cannot write in {path.parent}: {exc.strerror}; give --out a folder you can write "
                        f"(a read-only or system folder such as /proc cannot hold a run)") from None


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 65536).decode(errors="replace").strip()
    try:
        owner = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"pid": None, "host": None, "started_at": None, "command": f"unreadable lock: {text[:80]!r}"}
    return owner if isinstance(owner, dict) else {}


def _try_flock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: the file system has no flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK, EOPNOTSUPP, ...: some network file systems
        return None
    return True


def _check_previous(path: Path, previous: dict, flocked: bool | None) -> None:
    """Refuse when the previous owner may still run; log a takeover when it is gone."""
    if not previous:
        return
    here = socket.gethostname()
    if previous.get("host") not in (None, here):
        raise LockError(f"{path.parent} is locked by {describe(previous)}; if that job is no longer running, "
                        f"delete {path} and rerun")
    pid = previous.get("pid")
    if flocked is None and isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
        raise LockError(f"{path.parent} is being written by {describe(previous)}; wait for it to finish or "
                        f"stop it, or use another --out")
    log.warning("taking over the stale lock of %s: %s is gone", path.parent, describe(previous))


@contextlib.contextmanager
def acquire(out: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold ``OUT/.lock`` for the block (creating OUT); :class:`LockError` at once when another writer holds
    it or OUT cannot be written, naming the owner or the path and the fix. Yields the lock file path."""
    out = Path(out).absolute()
    _make_dir(out)
    path = out / LOCK_NAME
    while True:
        fd = _open(path)
        flocked = _try_flock(fd)
        if flocked is False:
            owner = _read(fd)
            os.close(fd)
            raise LockError(f"{out} is being written by {describe(owner)}; wait for it to finish or stop it, "
                            f"or use another --out")
        # A writer that finished between our open and flock unlinked the file we hold: start again.
        if flocked is None or os.fstat(fd).st_ino == _inode(path):
            break
        os.close(fd)
    try:
        _check_previous(path, _read(fd), flocked)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(_owner(command)).encode())
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def writer_lock(out: str | os.PathLike, command: str) -> contextlib.AbstractContextManager:
    """:func:`acquire` for a local OUT. A bucket OUT has no lease object yet: one writer per ``s3://`` OUT is the
    user's to ensure, so this holds nothing there."""
    if storage.is_remote(out):
        return contextlib.nullcontext()
    return acquire(out, command)
