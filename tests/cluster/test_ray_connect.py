"""Connecting to Ray, through the real ``rushes curate`` in a subprocess: a fresh local instance unless an address
is given, a bounded wait with a clear error for an unreachable one, and SIGINT/SIGTERM that stop a job promptly,
stop its workers, and leave a run that the same command resumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ray_processes import finish, leftovers
from rushes.testing.synth import make_cut_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ray_tmp():
    """A Ray temp folder of this test's own (short: Ray's socket paths must fit in 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))
    yield path
    _stop_leftovers(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("videos")
    # Different shot lengths: distinct contents (byte-identical copies would be recorded as duplicates).
    return [make_cut_video(d / f"v{i}.mp4", [1.0 + 0.1 * i, 1.5], fps=10, size=(96, 64)).path for i in range(6)]


def _env(ray_tmp: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "RAY_TMPDIR": str(ray_tmp), "PYTHONPATH": str(REPO), "RUSHES_RAY_CONNECT_TIMEOUT_S": "3", **extra}


def _curate(inputs, out: Path, ray_tmp: Path, *flags: str, **env) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rushes.cli", "curate", *map(str, inputs), "--out", str(out), "--preset", "debug",
           *flags]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(ray_tmp, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _stop_leftovers(ray_tmp: Path) -> None:
    for line in leftovers(ray_tmp):
        try:
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _stale_record(ray_tmp: Path) -> Path:
    # What a `ray start` that was killed leaves behind: a record naming a server that is gone.
    record = ray_tmp / "ray" / "ray_current_cluster"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("127.0.0.1:1")
    return record


def test_no_address_starts_a_fresh_local_instance_despite_a_stale_record(tmp_path, ray_tmp, videos):
    # The reproduction: `RAY_TMPDIR=$d rushes curate FOOTAGE --out OUT` used to hang on the record.
    _stale_record(ray_tmp)
    code, err = finish(_curate(videos[:1], tmp_path / "out", ray_tmp), timeout_s=300)
    assert code == 0, err[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["curate"]
    assert summary["videos"]["ok"] == 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # a second Ray cluster start (~1-2 min on 2 busy cores): `pytest -m slow`
def test_auto_joins_the_cluster_ray_start_recorded_and_leaves_it_running(tmp_path, ray_tmp, videos):
    port = _free_port()
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}",
                             "--num-cpus=1", "--include-dashboard=false", "--block"], env=_env(ray_tmp),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        record = ray_tmp / "ray" / "ray_current_cluster"
        deadline = time.monotonic() + 180
        while not (record.exists() and record.read_text().strip()):
            assert head.poll() is None, f"ray start failed: {head.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "ray start did not record its cluster within 180 s"
            time.sleep(0.5)
        sessions = sorted(p.name for p in (ray_tmp / "ray").glob("session_2*"))
        code, err = finish(_curate(videos[:1], tmp_path / "out", ray_tmp, "--address", "auto"), timeout_s=300)
        assert code == 0, err[-3000:]
        assert json.loads((tmp_path / "out" / "summary.json").read_text())["curate"]["videos"]["ok"] == 1
        # Joined, not started: no new Ray session folder, and the cluster outlives the job.
        assert sorted(p.name for p in (ray_tmp / "ray").glob("session_2*")) == sessions
        assert head.poll() is None, "the job shut down a cluster it only joined"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


@pytest.mark.parametrize("how", ["flag", "env", "auto"])
def test_an_unreachable_address_fails_fast_naming_it_and_the_fix(tmp_path, ray_tmp, videos, how):
    record = _stale_record(ray_tmp)
    flags, env = {"flag": (("--address", "127.0.0.1:1"), {}), "env": ((), {"RAY_ADDRESS": "127.0.0.1:1"}),
                  "auto": (("--address", "auto"), {})}[how]
    started = time.monotonic()
    code, err = finish(_curate(videos[:1], tmp_path / "out", ray_tmp, *flags, **env), timeout_s=120)
    assert code == 2 and time.monotonic() - started < 60, err[-3000:]
    assert "Traceback" not in err and "cannot reach the Ray cluster at" in err
    assert {"flag": "--address", "env": "RAY_ADDRESS", "auto": str(record)}[how] in err
    assert "unset --address and RAY_ADDRESS" in err
    assert not leftovers(ray_tmp), "nothing was started"


# SIGINT takes the same path as SIGTERM (a KeyboardInterrupt in the driver): its run is in `pytest -m slow`.
@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_stops_the_job_and_its_workers_and_a_rerun_resumes(tmp_path, ray_tmp, videos, signum):
    out = tmp_path / "out"
    proc = _curate(videos, out, ray_tmp, "--num-cpus", "1")  # one video at a time: the job is long enough to stop
    deadline = time.monotonic() + 300
    while not list((out / "videos").glob("*.parquet")):  # the first video is done: the job is mid-way
        assert proc.poll() is None, f"curate ended before it could be interrupted: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "no video finished within 300 s"
        time.sleep(0.2)
    sent = time.monotonic()
    proc.send_signal(signum)
    code, err = finish(proc, timeout_s=120)
    stopped_s = time.monotonic() - sent
    assert code == 128 + signum, err[-3000:]
    assert f"stopped by {signal.Signals(signum).name}" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err
    assert stopped_s < 60, f"took {stopped_s:.1f} s to stop"
    time.sleep(1.0)
    assert not leftovers(ray_tmp), "Ray's processes outlived the job"
    done = len(list((out / "videos").glob("*.parquet")))
    assert 1 <= done < len(videos)

    code, err = finish(_curate(videos, out, ray_tmp, "--num-cpus", "1"), timeout_s=600)
    assert code == 0, err[-3000:]
    summary = json.loads((out / "summary.json").read_text())["curate"]
    assert summary["videos"]["ok"] == len(videos)
    assert summary["videos"]["skipped_this_run"] >= done, "the rerun resumed instead of starting over"


# `rushes curate` whose ray.init receives SIGTERM half-way (a user's Ctrl-C, a scheduler's stop).
SIGNAL_IN_INIT = """
import os, signal, sys, threading
import ray
real_init = ray.init
def init_interrupted(*args, **kwargs):
    # delivered while Ray starts its processes (after Ray installed its own SIGTERM handler)
    threading.Timer(float(os.environ["SIGNAL_AFTER_S"]), os.kill, (os.getpid(), signal.SIGTERM)).start()
    return real_init(*args, **kwargs)
ray.init = init_interrupted
from rushes.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_signal_while_ray_starts_stops_everything_it_started(tmp_path, ray_tmp, videos):
    cmd = [sys.executable, "-c", SIGNAL_IN_INIT, "curate", videos[0], "--out", str(tmp_path / "out"), "--preset",
           "debug"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(ray_tmp, SIGNAL_AFTER_S="1.5"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    code, err = finish(proc, 300)
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err and "core dumped" not in err, err[-2000:]
    deadline = time.monotonic() + 20
    while leftovers(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not leftovers(ray_tmp), "Ray's processes outlived the interrupted start"
