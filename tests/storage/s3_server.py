"""Helpers for the S3 tests: moto's server on loopback and fake credentials (rushes.testing.s3), reading a whole
bucket back, running `rushes` in a process of its own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rushes.testing.s3 import SECRETS, make_bucket, server_env, start_server  # noqa: F401 (the tests import them here)

REPO = Path(__file__).resolve().parents[2]
RAY_START_TIMEOUT = "The current node timed out during startup"


def all_objects(bucket_uri: str) -> dict[str, bytes]:
    """Every object in a bucket, key -> bytes (for checks such as 'no secret was written')."""
    from rushes.storage import list_files, read_bytes

    return {uri[len(bucket_uri) + 1:]: read_bytes(uri) for uri in list_files(bucket_uri)}



def rushes(*args: str, script: str | None = None) -> subprocess.CompletedProcess:
    """One ``rushes`` process (it inherits the AWS settings of the session); what it left running is stopped."""
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "rushes.cli", *args]
    ray_tmp = tempfile.mkdtemp(prefix="rs3", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    try:
        for _attempt in range(3):
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
            try:
                out, err = proc.communicate(timeout=600)
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: Ray daemons a killed driver left behind
                except ProcessLookupError:
                    pass
            if RAY_START_TIMEOUT not in err:
                break
            time.sleep(20)  # let the load that delayed Ray pass
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
