"""moto's S3 server on loopback for tests and benchmarks: started in a process of its own on a free port of
127.0.0.1, with fake credentials, and stopped (exactly that process) at the end.

Usage::

    with moto_server(log_path) as url:           # AWS_ENDPOINT_URL and the fake credentials set meanwhile
        bucket = make_bucket(url, "rushes-bench")  # "s3://rushes-bench"
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# Recognisable fake credentials: tests scan every object written for them.
ACCESS_KEY = "AKIARUSHESTEST0000001"
SECRET_KEY = "rushes-test-secret-do-not-write-9f3c2a"
SESSION_TOKEN = "rushes-test-session-token-77e1b0"
SECRETS = (ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(url: str) -> dict[str, str]:
    """The AWS settings that point the SDK (and pyarrow's S3FileSystem) at the server ``url``."""
    return {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_SESSION_TOKEN": SESSION_TOKEN, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true"}


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


@contextlib.contextmanager
def start_server(log_path: str | os.PathLike) -> Iterator[str]:
    """Start moto's server (its request log to ``log_path``: a full pipe would block it); yields its URL and
    stops exactly the process it started. The caller points the environment at it (:func:`server_env`)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(Path(log_path), "w+b") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(url, proc, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def moto_server(log_path: str | os.PathLike) -> Iterator[str]:
    """:func:`start_server` with ``os.environ`` pointing at it meanwhile (AWS_PROFILE and AWS_ENDPOINT_URL_S3
    unset), restored after."""
    env = server_env("")
    saved = {k: os.environ.get(k) for k in [*env, "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"]}
    with start_server(log_path) as url:
        try:
            os.environ.update(server_env(url))
            os.environ.pop("AWS_PROFILE", None)
            os.environ.pop("AWS_ENDPOINT_URL_S3", None)
            yield url
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def make_bucket(endpoint_url: str, name: str) -> str:
    """Create bucket ``name`` on the server at ``endpoint_url`` (S3's CreateBucket: a PUT of ``/NAME``, which moto
    takes unsigned); returns ``s3://NAME``."""
    request = urllib.request.Request(f"{endpoint_url}/{name}", method="PUT")
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30).close()
    return f"s3://{name}"
