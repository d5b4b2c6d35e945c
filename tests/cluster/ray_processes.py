"""Processes a test's own Ray instance left behind, found by the temp folder only that instance uses."""

from __future__ import annotations

import os
from pathlib import Path


def leftovers(temp_dir: Path) -> list[str]:
    """``"pid: command line"`` of each process (other than this one) whose command line names ``temp_dir``:
    the daemons and workers of the Ray instance started with that temp folder, and nothing else."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(temp_dir) in cmd and int(pid) != os.getpid():
            found.append(f"{pid}: {cmd[:160]}")
    return found


def finish(proc, timeout_s: float, reap: bool = False) -> tuple[int, str]:
    """(exit code, stderr) of a ``rushes`` process started in a session of its own; the test fails naming the hang
    when it runs past ``timeout_s`` (its session is killed). ``reap`` also kills whatever it left in its session
    afterwards; without it, leftovers stay for the test to find."""
    import signal
    import subprocess

    import pytest

    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{' '.join(proc.args[2:5])} did not finish within {timeout_s} s (hung)")
    finally:
        if reap:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return proc.returncode, err
