"""Helpers for the S3 tests: moto's server on loopback, fake credentials, reading a whole bucket back, running
`rushes` in a process of its own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Recognisable fake credentials: tests scan every object written for them.
ACCESS_KEY = "AKIARUSHESTEST0000001"
SECRET_KEY = "rushes-test-secret-do-not-write-9f3c2a"
SESSION_TOKEN = "rushes-test-session-token-77e1b0"
SECRETS = (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
REPO = Path(__file__).resolve().parents[2]
RAY_START_TIMEOUT = "The current node timed out during startup"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, log, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"moto_server exited with {proc.returncode}: {log.read().decode()[-2000:]}")
        try:
            # No proxy: a proxy from the environment must not answer for loopback.
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url + "/moto-api/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer on {url} within {timeout_s} s")


def all_objects(bucket_uri: str) -> dict[str, bytes]:
    """Every object in a bucket, key -> bytes (for checks such as 'no secret was written')."""
    from storage import list_files, read_bytes

    return {uri[len(bucket_uri) + 1:]: read_bytes(uri) for uri in list_files(bucket_uri)}



def make_bucket(endpoint_url: str, name: str) -> str:
    """Create bucket ``name`` on the server at ``endpoint_url``; returns ``s3://NAME``."""
    import pyarrow.fs as pafs

    admin = pafs.S3FileSystem(endpoint_override=endpoint_url.split("://", 1)[1], scheme="http",
                              access_key=ACCESS_KEY, secret_key=SECRET_KEY, session_token=SESSION_TOKEN,
                              region="us-east-1", allow_bucket_creation=True)
    admin.create_dir(name)
    return f"s3://{name}"


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
