"""A real two-node Ray cluster: a head and a worker started as separate ``ray start --block`` processes (1 CPU
each, token authentication on, their own temp folder and ports), ``rushes curate`` and ``rushes caption`` joining
it through ``RAY_ADDRESS`` and both nodes doing work; and a head lost mid-job, which ends the job with a one-line
error naming the address within a bounded time, after which a rerun on a fresh local instance resumes.

Only the processes the test started are stopped (their process groups): never ``ray stop``, which would stop
every Ray instance on the machine.
"""

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
from rushes.testing.ray_nodes import free_ports, node_env
from rushes.testing.synth import make_cut_video

REPO = Path(__file__).resolve().parents[2]
# `ray start`, except that it waits up to 120 s (not Ray's fixed 30 s) for its node to register: on a loaded 2-core
# machine Ray's agents alone can take that long to import.
PATIENT_RAY = """
import sys, time
import ray._private.services as services
_get_node = services.get_node
def get_node(*args, **kwargs):
    deadline = time.monotonic() + 120
    while True:
        try:
            return _get_node(*args, **kwargs)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
services.get_node = get_node
from ray.scripts.scripts import main
sys.exit(main())
"""
RAY = [sys.executable, "-c", PATIENT_RAY]


class Cluster:
    """A head and a worker node on this machine, each in a process group of its own."""

    def __init__(self, temp_dir: Path):
        self.temp_dir = temp_dir
        self.procs: list[subprocess.Popen] = []
        self.env = node_env(temp_dir, REPO)
        self.port = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, *args: str) -> subprocess.Popen:
        # Every port Ray would otherwise take at a fixed default (other Ray instances share this machine).
        agent, grpc, metrics, runtime_env = free_ports(4)
        cmd = [*RAY, "start", "--block", "--num-cpus", "1", "--num-gpus", "0", "--temp-dir", str(self.temp_dir),
               "--object-store-memory", str(100 << 20), "--disable-usage-stats", "--include-log-monitor=false",
               "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(grpc),
               "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env), *args]
        log = open(self.temp_dir / f"node{len(self.procs)}.log", "w")
        proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self, timeout_s: float = 150) -> None:
        self.port, dashboard = free_ports(2)
        self._start_node(1, timeout_s, "--head", "--port", str(self.port), "--include-dashboard=false",
                         "--dashboard-port", str(dashboard))
        self._start_node(2, timeout_s, "--address", self.address)

    def _start_node(self, n: int, timeout_s: float, *args: str, attempts: int = 4) -> None:
        """Start a node and wait until the cluster has ``n`` alive nodes. Ray gives a node 30 s to register, which a
        loaded machine can miss (`ray start` then exits): such a start is retried."""
        for attempt in range(attempts):
            proc = self._start(*args)
            if self._wait_nodes(proc, n, timeout_s):
                return
            self.procs.remove(proc)
            _kill_group(proc)
        pytest.fail(f"the cluster did not reach {n} node(s) in {attempts} attempts: {self.logs()}")

    def _wait_nodes(self, proc: subprocess.Popen, n: int, timeout_s: float) -> bool:
        probe = ("import ray; ray.init(address=%r, log_to_driver=False, configure_logging=False); "
                 "print(sum(x['Alive'] for x in ray.nodes()))" % self.address)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                got = subprocess.run([sys.executable, "-c", probe], env=self.env, capture_output=True, text=True,
                                     timeout=30)
            except subprocess.TimeoutExpired:
                continue
            if got.returncode == 0 and got.stdout.strip().splitlines()[-1:] == [str(n)]:
                return True
            time.sleep(1.0)
        return False

    def logs(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(self.temp_dir.glob("node*.log")))

    def kill_head(self) -> None:
        _kill_group(self.procs[0])

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture
def cluster():
    # Short: Ray's socket paths must fit in 107 bytes (tmp_path is too long).
    temp_dir = Path(tempfile.mkdtemp(prefix="rcl", dir="/tmp"))
    c = Cluster(temp_dir)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        for line in leftovers(temp_dir):  # workers that outlived their raylet: ours alone (our temp folder)
            try:
                os.kill(int(line.split(":")[0]), signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("videos")
    # Distinct contents (byte-identical copies would be recorded as duplicates), a few seconds each.
    return [make_cut_video(d / f"v{i}.mp4", [1.0 + 0.1 * i, 1.5], fps=10, size=(96, 64)).path for i in range(4)]


def _rushes(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rushes.cli", *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


@pytest.mark.slow  # two `ray start` nodes take 30-120 s to come up on a 2-core machine
def test_curate_and_caption_run_on_both_nodes_of_a_cluster(tmp_path, cluster, videos):
    from rushes.testing.tiny import build_tiny_smolvlm

    out = tmp_path / "out"
    env = {**cluster.env, "RAY_ADDRESS": cluster.address}
    # Filter preset none: the tiny synthetic clips would fail the size rule, and caption needs kept clips.
    code, err = finish(_rushes(["curate", *videos, "--out", out, "--preset", "debug", "--filter-preset", "none"],
                               env), timeout_s=300, reap=True)
    assert code == 0, err[-3000:] + cluster.logs()
    curate = json.loads((out / "summary.json").read_text())["curate"]
    assert curate["videos"]["ok"] == len(videos)
    assert curate["clips"]["kept"] > 0
    assert curate["videos"]["nodes_used"] == 2, "the worker node ran curate tasks too"

    model = build_tiny_smolvlm(tmp_path / "smolvlm")
    code, err = finish(_rushes(["caption", out, "--preset", "debug", "--model", model], env), timeout_s=300,
                       reap=True)
    assert code == 0, err[-3000:] + cluster.logs()
    caption = json.loads((out / "summary.json").read_text())["caption"]
    assert caption["ok"] == caption["to_caption"] > 0
    assert caption["nodes_used"] == 2, "frames decoded on one node, captions generated on the other"


@pytest.mark.slow
def test_a_lost_head_ends_the_job_naming_the_address_and_a_local_rerun_resumes(tmp_path, cluster, videos):
    out = tmp_path / "out"
    env = {**cluster.env, "RAY_ADDRESS": cluster.address, "RUSHES_RAY_CONNECT_TIMEOUT_S": "10"}
    flags = ["--preset", "debug", "--max-in-flight", "1"]  # one video at a time: the job is long enough to cut
    proc = _rushes(["curate", *videos, "--out", out, *flags], env)
    deadline = time.monotonic() + 300
    while not list((out / "videos").glob("*.parquet")):  # a video is done: the job is mid-way
        assert proc.poll() is None, f"curate ended before the head was lost: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "no video finished within 300 s"
        time.sleep(0.2)
    cluster.kill_head()
    lost = time.monotonic()
    code, err = finish(proc, timeout_s=120, reap=True)
    assert time.monotonic() - lost < 120
    assert code == 3, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("rushes: lost the Ray cluster at " + cluster.address) and "RAY_ADDRESS" in last, err[-3000:]
    done = len(list((out / "videos").glob("*.parquet")))

    local = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}  # no address: a fresh local instance
    code, err = finish(_rushes(["curate", *videos, "--out", out, *flags, "--num-cpus", "1"], local), timeout_s=600,
                       reap=True)
    assert code == 0, err[-3000:]
    summary = json.loads((out / "summary.json").read_text())["curate"]
    assert summary["videos"]["ok"] == len(videos)
    assert summary["videos"]["skipped_this_run"] >= done >= 1, "the rerun resumed instead of starting over"


WATCH = """
import socket, sys, threading
from rushes.cluster import _watch_head
port = int(sys.argv[1])
if port == 0:  # a head that answers, until the session closes
    head = socket.socket(); head.bind(("127.0.0.1", 0)); head.listen(); port = head.getsockname()[1]
stop = threading.Event(); threading.Timer(3.0, stop.set).start()
_watch_head(f"127.0.0.1:{port}", "RAY_ADDRESS", 1.0, stop, poll_s=0.2)
print("session closed")
"""


@pytest.mark.parametrize("head", ["gone", "answering"])
def test_the_head_watchdog_ends_the_process_only_when_the_head_is_gone(head):
    # The fast check of the watchdog the slow test above runs against a real lost head.
    dead_port = free_ports(1)[0]
    got = subprocess.run([sys.executable, "-c", WATCH, str(dead_port if head == "gone" else 0)], cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    if head == "gone":
        assert got.returncode == 3 and got.stdout == ""
        assert got.stderr.startswith(f"rushes: lost the Ray cluster at 127.0.0.1:{dead_port} (from RAY_ADDRESS)")
        assert len(got.stderr.strip().splitlines()) == 1
    else:
        assert (got.returncode, got.stdout.strip()) == (0, "session closed"), got.stderr
