"""A real S3 server on loopback for the storage tests: moto's server, started once per session."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from s3_server import (
    ACCESS_KEY,
    SECRET_KEY,
    SESSION_TOKEN,
    free_port,
    make_bucket,
    wait_ready,
)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """Endpoint URL of a moto S3 server on 127.0.0.1 (a free port), with the AWS environment pointing at it.

    Sets ``AWS_ENDPOINT_URL`` and fake credentials in ``os.environ`` for the session (subprocesses such as
    the ``rushes`` CLI inherit them) and stops exactly the server process it started.
    """
    pytest.importorskip("moto.server", reason="moto[server] not installed: pip install 'moto[server]'")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The server logs every request: to a file, since a full pipe would block it.
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w+b")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
           "AWS_SESSION_TOKEN": SESSION_TOKEN, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)
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
            log.close()


@pytest.fixture
def bucket(s3_server) -> str:
    """A fresh, empty bucket on the session's server; returns ``s3://NAME``."""
    return make_bucket(s3_server, f"rushes-{uuid.uuid4().hex[:10]}")
