"""Connecting to Ray: the one module that starts a local Ray instance or joins a cluster.

Usage (what a stage's ``pipeline.py`` does)::

    from rushes.cluster import connect
    session = connect(address, num_cpus=4)     # address: --address, else $RAY_ADDRESS, else None
    try:
        ...                                    # ray.remote / ray.data work
    finally:
        session.close()                        # shuts Ray down if this call started it

Rules:

- **No address means a fresh local instance** (``ray.init(address="local")``), never the cluster an earlier
  ``ray start`` recorded in Ray's temp folder (``$RAY_TMPDIR/ray/ray_current_cluster``): that record outlives
  the cluster, and attaching to a dead one hangs.
- **Joining is explicit**: ``--address`` or ``$RAY_ADDRESS``, as ``host:port`` (the head's GCS),
  ``ray://host:10001`` (Ray Client), or ``auto`` (the cluster ``ray start`` recorded on this machine);
  ``local`` is the same as no address.
- **Bounded wait**: before joining, the head is reached with a TCP connect retried for ``connect_timeout_s``;
  an unreachable head raises :class:`RayConnectError` naming the address, where it came from, and the fix.
- **Interruptible**: while a session is open, SIGINT and SIGTERM raise :class:`JobInterrupted` (a
  ``KeyboardInterrupt``) in the driver, so the pipeline's ``finally`` blocks run and ``close()`` stops the local
  instance and its workers. Finished work stays on disk; temporary files are cleared by the next run. A second
  signal acts at once (the default handlers are back after the first).
- **A lost cluster ends the job**: while joined, a watchdog thread reaches the head every 2 s; when it has not
  answered for ``connect_timeout_s``, the process prints one line naming the address (and that a rerun resumes)
  and exits with status 3 at once (Ray's own calls would block on a dead head). Finished videos and caption parts
  are on disk, complete; a rerun skips them and clears what the lost job left half-written.
- A Ray already initialised in this process (a test fixture, a notebook) is reused and left running.
- **Quiet unless asked**: :func:`configure_output` (called by ``rushes.cli`` before any command) keeps Ray's own
  output off the terminal: its token-authentication notice and "Started a local Ray instance" (the ``ray``
  loggers at ERROR), its C++ log lines (``RAY_BACKEND_LOG_LEVEL``), Ray Data's execution log lines (the
  ``ray.data`` logger at ERROR) and Ray Data's progress bars (``DataContext.enable_progress_bars``, always off:
  rushes.progress draws the one bar of a command). With ``verbose`` (``rushes -v``) Ray logs as it would alone.
  Workers never print to the driver (``log_to_driver=False``); their logs stay in Ray's session folder.

``ray`` is imported inside the functions, so importing this module (the CLI does, for the error types) stays
cheap.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rushes.exits import LOST_CLUSTER

DEFAULT_CONNECT_TIMEOUT_S = 15.0  # $RUSHES_RAY_CONNECT_TIMEOUT_S overrides it
_received: list[int] = []  # signals that interrupted a job in this process (Ray may re-raise a plain KeyboardInterrupt)


class RayConnectError(ConnectionError):
    """Ray could not be reached at the address the user gave; the message says which and how to fix it."""


class ResourceShortage(RayConnectError):
    """A task or actor asks for more of a resource than any node of the cluster has: Ray would wait forever.

    ``setting`` is the config field that sets the request (the CLI turns it into its flag)."""

    def __init__(self, message: str, setting: str):
        super().__init__(message)
        self.setting = setting


class JobInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived while a job ran; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class RaySession:
    """An open connection: ``started`` when this process started Ray (``close`` then shuts it down)."""

    started: bool
    address: str | None  # what was joined; None for a local instance
    _handlers: dict = field(default_factory=dict, repr=False)
    _watching: threading.Event | None = field(default=None, repr=False)  # set: the head watchdog stops

    def close(self) -> None:
        """Restore the signal handlers, and shut Ray down if this session started or joined it."""
        if self._watching is not None:
            self._watching.set()
        for signum, handler in self._handlers.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._handlers = {}
        if self.started:
            import ray

            ray.shutdown()


def requested_address(address: str | None) -> tuple[str | None, str]:
    """The address to join and where it came from: the argument, else ``$RAY_ADDRESS``, else (None, "");
    ``local`` (either way) asks for a fresh local instance, as no address does."""
    if address:
        target, source = address.strip(), "--address"
    else:
        target, source = os.environ.get("RAY_ADDRESS", "").strip(), "RAY_ADDRESS"
    return (target, source) if target and target != "local" else (None, "")


def _record_file() -> Path:
    """Where ``ray start`` records the address of the cluster it started: Ray's temp folder, chosen as Ray does
    (``$RAY_TMPDIR``, else ``$TMPDIR`` on Linux, else ``/tmp``)."""
    base = os.environ.get("RAY_TMPDIR") or (sys.platform.startswith("linux") and os.environ.get("TMPDIR")) or "/tmp"
    return Path(base) / "ray" / "ray_current_cluster"


def head_endpoint(address: str, source: str) -> tuple[str, int, str]:
    """(host, port, where they came from) to reach for ``address``; ``auto`` reads the record ``ray start`` left
    on this machine."""
    target = address
    if address == "auto":
        record = _record_file()
        try:
            target = record.read_text().strip()
        except OSError:
            raise RayConnectError(
                f"{source} 'auto': no Ray cluster is recorded on this machine ({record} is missing). Start one with "
                f"`ray start --head`, pass its address (host:6379 or ray://host:10001), or leave --address and "
                f"RAY_ADDRESS unset to run on a fresh local Ray instance") from None
        source = f"{source} 'auto' (recorded in {record})"
    hostport = target.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RayConnectError(f"{source} {target!r} is not a Ray address: use host:port (the head's GCS, e.g. "
                              f"10.0.0.5:6379), ray://host:10001, or auto")
    return host.strip("[]"), int(port), source


def wait_for_head(address: str, source: str, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
    """Return once the head of ``address`` accepts a TCP connection; raise :class:`RayConnectError` after
    ``timeout_s`` (retrying meanwhile, so a head that is still starting is waited for)."""
    host, port, source = head_endpoint(address, source)
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(left, 5.0))):
                return
        except OSError as exc:
            if time.monotonic() + 0.5 >= deadline:
                raise RayConnectError(
                    f"cannot reach the Ray cluster at {address} (from {source}; {host}:{port}: {exc}) within "
                    f"{timeout_s:g} s. Check that the cluster is up (`ray status` on the head), fix the address, "
                    f"or unset --address and RAY_ADDRESS to run on a fresh local Ray instance") from None
            time.sleep(0.5)


LOST_EXIT_STATUS = LOST_CLUSTER  # the process's exit status when the cluster's head stops answering mid-job


def _head_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False


def _watch_head(address: str, source: str, timeout_s: float, stop: threading.Event, poll_s: float = 2.0) -> None:
    """Exit the process with :data:`LOST_EXIT_STATUS` and a one-line message once the head of ``address`` has not
    answered for ``timeout_s`` (unless ``stop`` is set first)."""
    host, port, source = head_endpoint(address, source)
    last_ok = time.monotonic()
    while not stop.wait(poll_s):
        if _head_answers(host, port):
            last_ok = time.monotonic()
        elif time.monotonic() - last_ok > timeout_s and not stop.is_set():
            os.write(2, (f"rushes: lost the Ray cluster at {address} (from {source}): its head ({host}:{port}) has "
                         f"not answered for {timeout_s:g} s. Finished work is saved: rerun the same command once the "
                         f"cluster is back, or with --address and RAY_ADDRESS unset to resume on a fresh local Ray "
                         f"instance\n").encode())
            os._exit(LOST_EXIT_STATUS)  # Ray's calls block on a dead head: no cleanup would finish


def interrupting_signal() -> int | None:
    """The signal that interrupted a job in this process, if one did (``ray.get`` re-raises a plain
    ``KeyboardInterrupt`` that no longer says which)."""
    return _received[-1] if _received else None


def _interrupt(signum, _frame):
    # First signal: stop the job through the driver's finally blocks. A second one acts at once.
    _received.append(signum)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise JobInterrupted(signum)


def _install_handlers(previous: dict) -> dict:
    """Route SIGINT and SIGTERM to :func:`_interrupt`; returns the handlers ``close()`` puts back."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # signals are delivered to the main thread only; its owner handles them
    for s in previous:
        signal.signal(s, _interrupt)
    return previous


def _current_handlers() -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


def connect_timeout() -> float:
    """Seconds to wait for a cluster's head: ``$RUSHES_RAY_CONNECT_TIMEOUT_S`` or 15."""
    text = os.environ.get("RUSHES_RAY_CONNECT_TIMEOUT_S", "").strip()
    try:
        value = float(text) if text else DEFAULT_CONNECT_TIMEOUT_S
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise RayConnectError(f"RUSHES_RAY_CONNECT_TIMEOUT_S={text!r}: use a number of seconds > 0, e.g. 30")
    return value


@contextmanager
def _stdin_detached():
    """Point file descriptor 0 at ``/dev/null`` while Ray starts its processes, then put it back.

    Every process Ray starts (GCS, raylet, and the workers the raylet forks later, with the ffmpeg they run)
    inherits the driver's stdin. Under an interactive terminal those processes sit in a background process
    group, and the first one that reads the terminal (ffmpeg does, PySceneDetect runs it at import) is stopped
    by SIGTTIN: the job hangs with no error. The driver keeps its own stdin (``inspect --sql -`` reads it)."""
    try:
        saved = os.dup(0)
    except OSError:  # no stdin at all: nothing to detach
        yield
        return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(null)


# What Ray's C++ side prints on stderr while it starts, whatever its log level (the level is read from
# RAY_BACKEND_LOG_LEVEL, and setting it is announced at INFO).
_RAY_BANNERS = ("Set ray log level from environment variable",)


@contextmanager
def _banners_dropped():
    """Unless verbose, hold what is written to file descriptor 2 while Ray starts and write it back afterwards
    without the lines of :data:`_RAY_BANNERS` (Ray's C++ side writes to the descriptor, not to ``sys.stderr``).
    The processes Ray starts keep their own log files in its session folder."""
    if _output["verbose"]:
        yield
        return
    import tempfile

    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to hold
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode("utf-8", "replace")
            sys.stderr.write("".join(line for line in text.splitlines(keepends=True)
                                     if not any(banner in line for banner in _RAY_BANNERS)))
            sys.stderr.flush()


@contextmanager
def _starting():
    """Around ``ray.init``: stdin detached (:func:`_stdin_detached`), and SIGINT/SIGTERM recorded, not acted on.

    A signal that interrupts ``ray.init`` half-way (Ray installs a SIGTERM handler that exits in the middle of it)
    leaves its GCS, raylet and agents running with no session to stop them, and Ray's C++ side aborting. While Ray
    starts, our recording handlers stay (Ray's own handler would be replaced by :func:`_install_handlers` right
    after anyway); :func:`_started` acts on a recorded signal once the session exists. Yields the record."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        with _stdin_detached(), _banners_dropped():
            yield got
        return
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    real_signal = signal.signal

    def keep_ours(signum, handler):  # what ray.init asks for SIGINT/SIGTERM waits for the session
        return before.get(signum) if signum in before else real_signal(signum, handler)

    for s in before:
        real_signal(s, lambda signum, _frame: got.append(signum))
    signal.signal = keep_ours
    try:
        with _stdin_detached(), _banners_dropped():
            yield got
    finally:
        signal.signal = real_signal
        for s, handler in before.items():
            real_signal(s, handler)


def _started(session: RaySession, got: list[int]) -> RaySession:
    """``session``, or, when a signal arrived while Ray started, the session stopped and the signal raised."""
    if got:
        _received.append(got[0])
        session.close()
        raise JobInterrupted(got[0])
    return session


def connect(address: str | None = None, num_cpus: int | None = None, connect_timeout_s: float | None = None,
            **local_options) -> RaySession:
    """Start a local Ray instance or join the cluster at ``address`` / ``$RAY_ADDRESS`` (see the module docstring).

    ``num_cpus`` and ``local_options`` (e.g. ``object_store_memory``) apply to a local instance only;
    ``connect_timeout_s`` (default :func:`connect_timeout`) bounds the wait for a cluster's head.
    """
    import ray

    _quiet_loggers()
    previous = _current_handlers()
    if ray.is_initialized():
        return RaySession(False, None, _install_handlers(previous))
    target, source = requested_address(address)
    if target is None:
        with _starting() as got:
            _start_local(num_cpus, local_options)
        return _started(RaySession(True, None, _install_handlers(previous)), got)
    timeout_s = connect_timeout_s or connect_timeout()
    wait_for_head(target, source, timeout_s)
    with _starting() as got:  # Ray Client and a joined node start helper processes too
        ray.init(address=target, **_COMMON)
    watching = threading.Event()
    threading.Thread(target=_watch_head, args=(target, source, timeout_s, watching), daemon=True,
                     name="rushes-ray-head-watchdog").start()
    return _started(RaySession(True, target, _install_handlers(previous), watching), got)


_COMMON = {"log_to_driver": False, "configure_logging": False}
_output = {"verbose": False}  # set by configure_output


def configure_output(verbose: bool = False) -> None:
    """Keep Ray's banners, log lines and Ray Data's progress bars off the terminal unless ``verbose`` (see the
    module doc). Call it before Ray is imported (the C++ log level is read from the environment when Ray
    starts); a variable the user set (``RAY_BACKEND_LOG_LEVEL``, ``RAY_DATA_DISABLE_PROGRESS_BARS``) is kept."""
    _output["verbose"] = verbose
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")  # rushes.progress draws the command's bar
    if not verbose:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # e.g. core_worker.cc's ERROR lines on success


def _quiet_loggers() -> None:
    """Ray's Python loggers (Ray Data's too) at ERROR unless verbose; Ray Data's progress bars off.

    Importing ``ray.data`` configures its logger afresh, so it is imported here, before the level is set."""
    import logging

    verbose = _output["verbose"]
    if not verbose:
        logging.getLogger("ray").setLevel(logging.ERROR)
    try:
        import ray.data
    except ImportError:  # ray without its data extra: nothing of Ray Data's to quiet
        return
    ray.data.DataContext.get_current().enable_progress_bars = False
    if not verbose:
        logging.getLogger("ray.data").setLevel(logging.ERROR)


def _start_local(num_cpus: int | None, local_options: dict) -> None:
    import ray

    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **_COMMON, **local_options)
    except (RuntimeError, ConnectionError, OSError, ValueError) as exc:
        raise RayConnectError(f"could not start a local Ray instance: {exc} Check free memory and the space "
                              f"in Ray's temp folder ({_record_file().parent}), retry on a less loaded machine, "
                              f"or join a running cluster with --address") from exc
    except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception when its node times out starting
        if "timed out during startup" not in str(exc):
            raise
        raise RayConnectError(f"could not start a local Ray instance: {exc} Retry on a less loaded machine, "
                              f"or join a running cluster with --address") from exc


def require_resources(needs: dict[str, tuple[float, str]], what: str) -> None:
    """Raise :class:`ResourceShortage` when one ``what`` (a task or an actor) asks for more of a resource than the
    largest live node has; ``needs`` maps a Ray resource (``CPU``, ``GPU``) to (amount per task, the config field
    that sets it). Ray itself would queue such a task forever without a word. Call it after :func:`connect`."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for resource, (amount, setting) in needs.items():
        if not amount:
            continue
        largest = max((float(n.get(resource, 0.0)) for n in nodes), default=0.0)
        if amount > largest + 1e-9:
            total = sum(float(n.get(resource, 0.0)) for n in nodes)
            raise ResourceShortage(
                f"each {what} asks for {amount:g} {resource}, but no node of the Ray cluster has that many (largest "
                f"node: {largest:g} {resource}; {len(nodes)} node(s), {total:g} in all): lower {setting} to at "
                f"most {largest:g}, or run on a cluster with bigger nodes", setting)
