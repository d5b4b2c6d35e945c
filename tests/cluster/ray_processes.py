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
