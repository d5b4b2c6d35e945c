"""A real S3 server on loopback for the storage tests: moto's server, started once per session."""

from __future__ import annotations

import uuid

import pytest
from s3_server import make_bucket, server_env, start_server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """Endpoint URL of a moto S3 server on 127.0.0.1 (a free port), with the AWS environment pointing at it.

    Sets ``AWS_ENDPOINT_URL`` and fake credentials in ``os.environ`` for the session (subprocesses such as
    the ``rushes`` CLI inherit them) and stops exactly the server process it started.
    """
    pytest.importorskip("moto.server", reason="moto[server] not installed: pip install 'moto[server]'")
    with start_server(tmp_path_factory.mktemp("moto") / "moto.log") as url, pytest.MonkeyPatch.context() as mp:
        for k, v in server_env(url).items():
            mp.setenv(k, v)
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        yield url


@pytest.fixture
def bucket(s3_server) -> str:
    """A fresh, empty bucket on the session's server; returns ``s3://NAME``."""
    return make_bucket(s3_server, f"rushes-{uuid.uuid4().hex[:10]}")
