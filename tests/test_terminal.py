"""The commands as a user types them at an interactive terminal: curate, caption, encode and train run to the end
under a real pty instead of hanging.

Ray's processes (and the ffmpeg they start, some at import time through PySceneDetect) sit in a background
process group of the user's terminal; one that reads the terminal as stdin is stopped by SIGTTIN and the job
never ends. Tests and CI have no terminal, so only a test that makes one sees it.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIMIT_S = 240  # a tiny step takes seconds; a stopped worker never ends


def _session_members(sid: int) -> list[int]:
    """Pids of the processes in session ``sid`` (the command and everything it started that stayed there)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid:  # after "pid (comm)": state, ppid, pgrp, session
            found.append(int(entry))
    return found


def _stop_session(sid: int) -> None:
    """SIGKILL exactly the processes of the session this test started (Ray's daemons included)."""
    for pid in _session_members(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_at_terminal(argv: list[str], env: dict, timeout_s: float = LIMIT_S) -> tuple[int | None, str]:
    """Run ``rushes ARGV`` as the foreground job of a new pseudo-terminal (its stdin, stdout and stderr, and its
    controlling terminal); return (exit code, or None when it was still running after ``timeout_s``; output)."""
    master, slave = os.openpty()

    def take_terminal():  # in the child: a session of its own whose controlling terminal is the pty
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "rushes.cli", *argv], stdin=slave, stdout=slave, stderr=slave,
                            cwd=REPO, env=env, preexec_fn=take_terminal, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []

    def drain():  # a full pty buffer would block the command on its own output
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal closed it
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        stopped = [pid for pid in _session_members(proc.pid) if _state(pid) == "T"]
        _stop_session(proc.pid)
        proc.wait()
        time.sleep(0.2)
        os.close(master)
        reader.join(timeout=5)
    text = b"".join(chunks).decode(errors="replace")
    if code is None:
        text += f"\n[still running after {timeout_s} s; stopped processes (state T): {stopped}]"
    return code, text


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    from rushes.testing.tiny import build_tiny_qwen25_vl, save_tiny_text_encoder

    root = tmp_path_factory.mktemp("terminal_models")
    return {"vlm": str(build_tiny_qwen25_vl(root / "vlm")), "t5": save_tiny_text_encoder(root / "t5")}


def test_every_stage_finishes_at_an_interactive_terminal(tmp_path, models):
    from rushes.testing.synth import make_cut_video

    (tmp_path / "in").mkdir()
    make_cut_video(tmp_path / "in" / "two_shots.mp4", [3.0, 3.0], fps=16, size=(96, 64))
    out = tmp_path / "out"
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(REPO), "TERM": "xterm"}
    env.pop("RAY_ADDRESS", None)
    # a random-weight VLM's captions run to the token limit: flagged as truncated, so taken on purpose here
    data = ["--fps", "4", "--max-frames", "4", "--clip-tokens", "64", "--include-flagged-captions"]
    commands = [
        ["curate", str(tmp_path / "in"), "--out", str(out), "--min-clip-s", "1", "--filter-preset", "none"],
        ["caption", str(out), "--preset", "debug", "--model", models["vlm"]],
        ["encode", str(out), "--text-encoder", models["t5"], *data],
        ["train", str(out), "--run", str(tmp_path / "run"), "--text-encoder", models["t5"], *data,
         "--batch-tokens", "128", "--steps", "2", "--checkpoint-every", "2"],
    ]
    try:
        for argv in commands:
            code, text = run_at_terminal(argv, env)
            assert code == 0, f"rushes {argv[0]} at a terminal exited {code}:\n{text[-3000:]}"
            # Quiet: rushes' own bar only, no Ray banner, log line or Ray Data bar (rushes.cluster.configure_output).
            for ray_text in ("Token authentication", "Started a local Ray", "Running Dataset", "MapBatches(",
                             "streaming_executor", "core_worker.cc"):
                assert ray_text not in text, f"rushes {argv[0]} at a terminal showed Ray's {ray_text!r}:\n{text}"
    finally:
        subprocess.run(["rm", "-rf", ray_tmp], check=False)
    assert (tmp_path / "run" / "checkpoints").is_dir()
