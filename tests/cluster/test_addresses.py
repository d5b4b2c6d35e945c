"""Which address a run joins, in process (no Ray started): the rules behind ``rushes.cluster.connect``."""

from __future__ import annotations

import socket

import pytest

from rushes.cluster import RayConnectError, head_endpoint, requested_address, wait_for_head


def test_no_address_means_local_and_joining_is_explicit(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert requested_address(None) == (None, "")
    assert requested_address("local") == (None, "")
    assert requested_address("auto") == ("auto", "--address")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert requested_address(None) == ("10.0.0.5:6379", "RAY_ADDRESS")
    assert requested_address("ray://head:10001") == ("ray://head:10001", "--address")  # the flag wins


def test_endpoints_and_the_auto_record(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    assert head_endpoint("ray://head:10001", "--address")[:2] == ("head", 10001)
    assert head_endpoint("[::1]:6379", "RAY_ADDRESS")[:2] == ("::1", 6379)
    with pytest.raises(RayConnectError, match="ray_current_cluster is missing"):
        head_endpoint("auto", "--address")
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("10.1.2.3:6380\n")
    host, port, source = head_endpoint("auto", "--address")
    assert (host, port) == ("10.1.2.3", 6380) and "recorded in" in source
    with pytest.raises(RayConnectError, match="is not a Ray address"):
        head_endpoint("head-without-port", "--address")


def test_a_listening_head_is_reached_and_a_closed_port_times_out():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        wait_for_head(f"127.0.0.1:{port}", "--address", timeout_s=5)
    with pytest.raises(RayConnectError, match=rf"cannot reach the Ray cluster at 127.0.0.1:{port} .* within 1 s"):
        wait_for_head(f"127.0.0.1:{port}", "--address", timeout_s=1)
