"""One writer per bucket OUT: the lease object of rushes.manifests.lock on a real S3 server (moto on loopback)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from rushes import storage
from rushes.manifests.lock import LockError, lease, writer_lock


def _lease_doc(out: str) -> dict:
    return json.loads(storage.read_bytes(f"{out}/.lock"))


def test_a_second_writer_is_refused_naming_the_first_and_the_lease_goes_at_the_end(bucket):
    out = f"{bucket}/runs/a run"
    with writer_lock(out, "rushes caption"):
        doc = _lease_doc(out)
        assert doc["command"] == "rushes caption" and doc["host"] == socket.gethostname()
        with pytest.raises(LockError, match=r"being written by pid \d+ on host .* \(rushes caption\)"):
            with lease(out, "rushes encode", settle_s=0):
                pass
    assert not storage.exists(f"{out}/.lock")
    assert [u for u in storage.list_files(bucket) if storage.TEMP_PREFIX in u] == []
    with lease(out, "rushes encode", settle_s=0):  # free again
        assert _lease_doc(out)["command"] == "rushes encode"


def test_the_lease_is_renewed_while_held_and_an_expired_one_is_taken_over(bucket):
    out = f"{bucket}/run"
    with lease(out, "rushes caption", lease_s=0.9, settle_s=0):
        first = _lease_doc(out)["renewed_at"]
        time.sleep(1.5)  # longer than the lease: only renewal keeps it
        assert _lease_doc(out)["renewed_at"] > first
        with pytest.raises(LockError, match="being written"):
            with lease(out, "rushes encode", settle_s=0):
                pass
    # A writer on another machine that stopped renewing (lost host): its lease expires and is taken over.
    storage.write_bytes_atomic(f"{out}/.lock", json.dumps(
        {"pid": 1, "host": "elsewhere", "command": "rushes caption", "token": "x", "renewed_at": time.time() - 10,
         "lease_s": 5}).encode())
    with lease(out, "rushes encode", settle_s=0):
        assert _lease_doc(out)["host"] == socket.gethostname()
    # A live lease of another machine is not.
    storage.write_bytes_atomic(f"{out}/.lock", json.dumps(
        {"pid": 1, "host": "elsewhere", "command": "rushes caption", "token": "x", "renewed_at": time.time(),
         "lease_s": 600}).encode())
    with pytest.raises(LockError, match="on host elsewhere .* delete s3://"):
        with lease(out, "rushes encode", settle_s=0):
            pass


def test_the_lease_of_a_killed_writer_on_this_host_is_taken_over_at_once(bucket):
    out = f"{bucket}/run"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    storage.write_bytes_atomic(f"{out}/.lock", json.dumps(
        {"pid": int(dead.stdout), "host": socket.gethostname(), "command": "rushes caption", "token": "x",
         "renewed_at": time.time(), "lease_s": 600}).encode())
    with lease(out, "rushes caption", settle_s=0):
        assert _lease_doc(out)["pid"] != int(dead.stdout)


def test_two_writers_racing_for_a_free_out_one_wins(bucket):
    out = f"{bucket}/race"
    results: list = []
    start = threading.Barrier(2)

    def claim(name: str) -> None:
        start.wait()
        try:
            with lease(out, name, settle_s=0.6):
                results.append(("won", name))
                time.sleep(0.3)
        except LockError as exc:
            results.append(("refused", str(exc)))

    threads = [threading.Thread(target=claim, args=(f"writer {i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r[0] for r in results) == ["refused", "won"], results


def _steal(out: str) -> None:
    storage.write_bytes_atomic(f"{out}/.lock", json.dumps(
        {"pid": 1, "host": "elsewhere", "command": "rushes encode", "token": "other", "renewed_at": time.time(),
         "lease_s": 600}).encode())


def test_a_writer_whose_lease_was_taken_ends_with_an_error(bucket, caplog):
    out = f"{bucket}/stolen"
    with pytest.raises(LockError, match="took this job's lease"):
        with lease(out, "rushes caption", lease_s=0.6, settle_s=0):
            # The renewer (every 0.2 s) notices and stops renewing; a renewal that read the lease just before the
            # steal rewrites it, so steal until the renewer has seen it.
            deadline = time.monotonic() + 20
            while not [r for r in caplog.records if "was taken by" in r.getMessage()] and time.monotonic() < deadline:
                _steal(out)
                time.sleep(0.3)
    assert _lease_doc(out)["token"] == "other", "the other writer's lease is left alone"


def test_a_lease_taken_after_the_renewers_last_look_is_still_reported(bucket):
    out = f"{bucket}/stolen late"
    with pytest.raises(LockError, match=r"another writer \(pid 1 on host elsewhere"):
        with lease(out, "rushes caption", lease_s=600, settle_s=0):  # no renewal during the block
            _steal(out)
    assert _lease_doc(out)["token"] == "other"


@pytest.mark.parametrize("command", ["curate", "filter"])
def test_curate_and_filter_on_a_bucket_out_held_by_another_writer_exit_2_naming_it(bucket, tmp_path, command):
    from pathlib import Path

    out = f"{bucket}/runs/held"
    storage.write_bytes_atomic(f"{out}/config/curate.json", b"{}")  # a run folder exists (filter writes only then)
    args = {"curate": ["curate", str(tmp_path), "--out", out], "filter": ["filter", out, "--preset", "strict"]}
    with writer_lock(out, "rushes caption"):
        res = subprocess.run([sys.executable, "-m", "rushes.cli", *args[command]], capture_output=True, text=True,
                             timeout=300, cwd=Path(__file__).resolve().parents[2], check=False)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "being written by pid" in res.stderr and "(rushes caption)" in res.stderr
    assert not storage.exists(f"{out}/filter.json") and not storage.exists(f"{out}/summary.json")
