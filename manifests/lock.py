"""One writer per run directory: ``OUT/.lock`` names its owner; a second writer refuses at once.

Usage (``rushes curate``, ``filter``, ``caption`` and ``encode`` do this; readers such as ``inspect`` never need
it)::

    with writer_lock("runs/a", "rushes curate"):     # or "s3://bucket/runs/a"
        ...  # write manifests, clips, summary.json

A folder gets :func:`acquire`, described here; a bucket prefix gets :func:`lease`, a renewed lease object (object
stores have no file locks).

The lock file holds JSON ``{"pid", "host", "started_at", "command"}`` and an exclusive ``flock`` while the
writer runs, so a writer that died (kill -9, a crash) leaves a lock the next writer takes over: the kernel
released its ``flock``, and on the same host its pid is checked too. A lock naming another host is never
taken over (its pid cannot be checked from here): the message says to delete the file if that job is gone.
On file systems without ``flock`` the pid check alone decides. Stdlib and :mod:`storage` only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from rushes import storage

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class LockError(RuntimeError):
    """The run directory cannot be written: another writer holds it, or it is not a usable folder.

    Carries the facts: ``run_dir``, ``reason`` (``busy``: another writer holds it; ``foreign``: a writer of another
    host holds it; ``lost``: another writer took this job's lease; ``not_a_folder``; ``unwritable``), ``owner`` (the
    other writer's pid, host, command and start, when known), ``problem`` (the message without its fix), ``fix``
    and ``more`` (advice after the fix). This module knows no flag names: a command line words the fix with its own
    (``rushes.settings.explain``).
    """

    def __init__(self, problem: str = "", fix: str = "", *, run_dir=None, reason: str = "", owner: dict | None = None,
                 more: str = ""):
        super().__init__("; ".join(filter(None, (problem, fix))) + (f". {more}" if more else ""))
        self.problem, self.fix, self.more = problem, fix, more
        self.run_dir, self.reason, self.owner = run_dir, reason, owner


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


_BUSY_FIX = "wait for it to finish or stop it, or use another run directory"
_UNWRITABLE_FIX = "use a folder you can write (a read-only or system folder such as /proc cannot hold a run)"


def _busy(out, owner: dict, problem: str = "") -> LockError:
    return LockError(problem or f"{out} is being written by {describe(owner)}", _BUSY_FIX, run_dir=out, reason="busy",
                     owner=owner)


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LockError(f"{out} is a file, not a folder", "use a folder path (new or an earlier run)", run_dir=out,
                        reason="not_a_folder") from None
    except OSError as exc:
        raise LockError(f"cannot create the run folder {out}: {exc.strerror}", _UNWRITABLE_FIX, run_dir=out,
                        reason="unwritable") from None


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except IsADirectoryError:
        raise LockError(f"{path} is a folder", "remove it (rushes keeps its lock file there)", run_dir=path.parent,
                        reason="lock_is_folder") from None
    except OSError as exc:
        raise LockError(f"cannot write in {path.parent}: {exc.strerror}", _UNWRITABLE_FIX, run_dir=path.parent,
                        reason="unwritable") from None


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
        raise LockError(f"{path.parent} is locked by {describe(previous)}", f"if that job is no longer running, "
                        f"delete {path} and rerun", run_dir=path.parent, reason="foreign", owner=previous)
    pid = previous.get("pid")
    if flocked is None and isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
        raise _busy(path.parent, previous)
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
            raise _busy(out, owner)
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


# A bucket OUT: a lease object, renewed while the writer runs (see :func:`lease`).
LEASE_S = 120.0  # a lease not renewed for this long is expired: its writer is gone
SETTLE_S = 2.0  # wait between writing the lease and reading it back, to see a writer that raced us


def _read_lease(path: str) -> dict:
    try:
        text = storage.read_bytes(path).decode(errors="replace")
    except FileNotFoundError:
        return {}
    try:
        owner = json.loads(text)
    except json.JSONDecodeError:
        return {"command": f"unreadable lease: {text[:80]!r}", "renewed_at": None}
    return owner if isinstance(owner, dict) else {}


def _expired(owner: dict, now: float) -> bool:
    """True when nobody holds ``owner``'s lease any more: not renewed in time, or its writer on this host died."""
    renewed, lease_s = owner.get("renewed_at"), owner.get("lease_s")
    if not isinstance(renewed, (int, float)) or not isinstance(lease_s, (int, float)):
        return True  # unreadable or not ours: nothing renews it
    pid = owner.get("pid")
    if owner.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() \
            and not _pid_alive(pid):
        return True  # killed (kill -9) on this machine: a rerun here resumes at once, as on disk
    return now > renewed + lease_s


def _write_lease(path: str, owner: dict, lease_s: float) -> None:
    owner.update(renewed_at=time.time(), lease_s=lease_s)
    storage.write_bytes_atomic(path, json.dumps(owner).encode())


class _Renewer(threading.Thread):
    """Rewrites the lease every third of its length while the writer runs; notes when another writer took it."""

    def __init__(self, path: str, owner: dict, lease_s: float):
        super().__init__(name="rushes-lease", daemon=True)
        self.path, self.owner, self.lease_s = path, owner, lease_s
        self.stop = threading.Event()
        self.lost: dict | None = None

    def run(self) -> None:
        while not self.stop.wait(self.lease_s / 3):
            try:
                current = _read_lease(self.path)
                if current.get("token") != self.owner["token"]:
                    self.lost = current
                    log.error("the lease of %s was taken by %s while this job wrote; stop one of them",
                              storage.parent(self.path), describe(current))
                    return
                _write_lease(self.path, self.owner, self.lease_s)
            except OSError as exc:  # a network hiccup: the lease lasts 3 periods, try again at the next
                log.warning("cannot renew the lease %s: %s", self.path, exc)


@contextlib.contextmanager
def lease(out: str, command: str, lease_s: float = LEASE_S, settle_s: float = SETTLE_S) -> Iterator[str]:
    """Hold ``OUT/.lock`` on object storage for the block; :class:`LockError` at once when another writer holds it.

    The object names its owner (pid, host, command, start) and when it was last renewed; a thread renews it every
    ``lease_s / 3`` seconds, and a lease not renewed for ``lease_s`` (a writer killed with -9, a lost machine) is
    taken over; so is, at once, the lease of a process of this host that is no longer running. pyarrow.fs has no create-if-absent write (S3's ``If-None-Match``), so this is best effort: the
    writer reads the lease, writes its own, waits ``settle_s`` and reads it back, refusing when another writer's
    token is there. Two writers both pass only when one takes longer than ``settle_s`` between its read and its
    write. The expiry compares clocks of different machines: keep them in sync (NTP).
    """
    path = storage.join(out, LOCK_NAME)
    previous = _read_lease(path)
    if previous and not _expired(previous, time.time()):
        raise LockError(f"{out} is being written by {describe(previous)} (its lease is renewed every "
                        f"{previous['lease_s'] / 3:.0f} s)", _BUSY_FIX, run_dir=out, reason="busy", owner=previous,
                        more=f"If that job is gone, its lease expires {previous['lease_s']:.0f} s after its last "
                             f"renewal, or delete {path}")
    if previous:
        log.warning("taking over the expired lease of %s: %s", out, describe(previous))
    owner = {**_owner(command), "token": uuid.uuid4().hex}
    _write_lease(path, owner, lease_s)
    time.sleep(settle_s)
    current = _read_lease(path)
    if current.get("token") != owner["token"]:
        raise _busy(out, current, f"{out} was claimed at the same time by {describe(current)}")
    renewer = _Renewer(path, owner, lease_s)
    renewer.start()
    try:
        yield path
    finally:
        renewer.stop.set()
        renewer.join()
        current = _read_lease(path)
        if current.get("token") == owner["token"]:
            storage.delete(path)
    lost = renewer.lost or (current if current.get("token") != owner["token"] else None)
    if lost is not None:  # the renewer saw it, or it happened after its last look
        raise LockError(f"{out}: another writer ({describe(lost)}) took this job's lease while it ran "
                        f"(it was not renewed for {lease_s:.0f} s)", "check the outputs and rerun one writer only",
                        run_dir=out, reason="lost", owner=lost)


def writer_lock(out: str | os.PathLike, command: str) -> contextlib.AbstractContextManager:
    """The one-writer lock of OUT (or of a training RUN): :func:`acquire` (a locked file) for a folder,
    :func:`lease` (a renewed lease object) for a bucket prefix. Raises :class:`LockError` naming the other
    writer."""
    if storage.is_remote(out):
        return lease(str(out), command)
    return acquire(out, command)
