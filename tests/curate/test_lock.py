"""One writer per OUT (rushes.manifests.lock): a second writer refuses at once naming the first; stale locks are
taken over; an unusable --out is one clear line and exit 2, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rushes.manifests.lock import LockError, acquire
from rushes.testing.synth import make_cut_video

REPO = Path(__file__).resolve().parents[2]


def _rushes(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rushes.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _main(argv: list[str]) -> int:
    from rushes.cli import build_parser

    args = build_parser().parse_args(argv)
    return args.func(args)


def test_a_second_curate_on_the_same_out_refuses_at_once_naming_the_first(tmp_path, capsys):
    v = make_cut_video(tmp_path / "v.mp4", [1.0, 1.0], fps=25, size=(96, 64))
    out = tmp_path / "run"
    first = _rushes("curate", v.path, "--out", str(out), "--preset", "debug", "--num-cpus", "1", "--no-scores")
    try:
        deadline = time.monotonic() + 60
        while not (out / ".lock").exists() or not (out / ".lock").read_text():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        owner = json.loads((out / ".lock").read_text())
        assert (owner["pid"], owner["host"]) == (first.pid, socket.gethostname())
        for cmd in (["curate", v.path, "--out", str(out), "--preset", "debug"], ["filter", str(out)]):
            assert _main(cmd) == 2  # the same code a second `rushes` process runs
            err = capsys.readouterr().err
            assert f"pid {first.pid} on host {socket.gethostname()}" in err and "rushes curate" in err
            # Refused without waiting for the first writer to finish:
            assert first.poll() is None, "the first writer must still be running (the test needs it to)"
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    from rushes.manifests import read

    assert [r["status"] for r in read(out, "videos").to_pylist()] == ["ok"]
    assert not (out / ".lock").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                                "started_at": "2026-01-01T00:00:00+00:00", "command": "rushes curate"}))
    with acquire(tmp_path, "test") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        # The same OUT cannot be taken twice, even by the holder's own process.
        with pytest.raises(LockError, match=f"pid {os.getpid()} on host"):
            with acquire(tmp_path, "again"):
                pass
    assert f"pid {dead.pid}" in caplog.text and "stale" in caplog.text
    assert not path.exists()


def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "other-node", "started_at": "x", "command": "c"}))
    with pytest.raises(LockError, match=r"other-node.*delete .*\.lock"):
        with acquire(tmp_path, "test"):
            pass


def test_an_unusable_out_is_one_line_and_exit_2(tmp_path, capsys):
    v = make_cut_video(tmp_path / "v.mp4", [1.0], fps=25, size=(64, 48))
    (tmp_path / "afile").write_text("x")
    cases = {str(tmp_path / "afile"): "is a file, not a folder", str(tmp_path / "afile" / "sub"): "cannot create",
             "/proc/rushes-test/run": "cannot create"}
    for out, words in cases.items():
        assert _main(["curate", v.path, "--out", out]) == 2  # a traceback would raise here
        err = capsys.readouterr().err
        assert words in err and out in err and "--out" in err, (out, err)
        assert len(err.strip().splitlines()) == 1, err


def test_without_flock_the_pid_decides(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(json.dumps({"pid": alive.pid, "host": socket.gethostname(),
                                                    "started_at": "x", "command": "rushes curate"}))
        with pytest.raises(LockError, match=f"pid {alive.pid} on host"):
            with acquire(tmp_path, "test"):
                pass
    finally:
        alive.kill()
        alive.wait()
    with acquire(tmp_path, "test") as path:  # its owner is gone now
        assert json.loads(path.read_text())["pid"] == os.getpid()
