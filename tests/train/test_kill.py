"""Training killed (SIGKILL, a real process) in the middle of saving a checkpoint, then resumed.

The child process is ``rushes train`` with one hook that freezes it at a chosen point of
``rushes.train.checkpoint.save`` (after writing a truncated ``ema.safetensors`` into the temporary folder, or after
renaming the folder into place but before ``latest`` moves); the test then SIGKILLs it there. The resumed run
must ignore the half-written or unpublished checkpoint, continue from the last complete one, and end with
exactly the log and weights of a run never interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from rushes.cli import main
from rushes.train import checkpoint

REPO = Path(__file__).resolve().parents[2]

# Runs in the child: freeze at POINT of the save of step 4, after telling the test through FLAG.
CHILD = r"""
import os, sys, time
import torch
from rushes.train import checkpoint

point, flag, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
torch.set_num_threads(1)

def freeze():
    open(flag, "w").close()
    time.sleep(600)

real_save_file, real_replace = checkpoint.save_file, os.replace

def save_file(tensors, path, metadata=None):
    real_save_file(tensors, path, metadata=metadata)
    if point == "mid-write" and path.endswith("_tmp-step-0000004/ema.safetensors"):
        size = os.path.getsize(path)
        with open(path, "r+b") as fh:
            fh.truncate(size // 2)  # half the bytes are on disk when the process dies
        freeze()

def replace(src, dst):
    real_replace(src, dst)
    if point == "before-latest" and str(dst).endswith("checkpoints/step-0000004"):
        freeze()

checkpoint.save_file = save_file
os.replace = replace
from rushes.cli import main
sys.exit(main(argv))
"""


def _args(synth_out, tiny_t5, run):
    return ["train", str(synth_out), "--run", str(run), "--preset", "tiny", "--text-encoder", tiny_t5,
            "--max-frames", "4", "--clip-tokens", "128", "--batch-tokens", "256", "--steps", "6",
            "--checkpoint-every", "2", "--log-every", "1", "--caption-dropout", "0.5", "--device", "cpu"]


def _kill_at(point: str, args: list[str], flag: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, point, str(flag), *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not flag.exists():
            if proc.poll() is not None:
                raise AssertionError(f"child exited with {proc.returncode} before the save: "
                                     f"{proc.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "child never reached the checkpoint save"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def _log(run):
    timing = {"step_s", "tokens_per_s", "data_s", "forward_s", "backward_s", "optimizer_s", "cpu_s", "mfu"}
    return [{k: v for k, v in json.loads(line).items() if k not in timing}
            for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("point", ["mid-write", "before-latest"])
def test_training_killed_mid_save_resumes_from_the_last_complete_checkpoint(point, synth_out, tiny_t5, tmp_path):
    full, run = tmp_path / "full", tmp_path / "run"
    assert main(_args(synth_out, tiny_t5, full)) == 0

    _kill_at(point, _args(synth_out, tiny_t5, run), tmp_path / "frozen")
    assert checkpoint.latest(run).name == "step-0000002"  # the interrupted save is never the one resumed
    leftover = run / "checkpoints" / ("_tmp-step-0000004" if point == "mid-write" else "step-0000004")
    assert leftover.is_dir()  # the kill really left a partial or unpublished checkpoint behind

    assert main(_args(synth_out, tiny_t5, run)) == 0  # resumes from step 2
    assert checkpoint.latest(run).name == "step-0000006"
    assert _log(run) == _log(full)  # same losses, step by step, as the run never interrupted
    for name in ("model.safetensors", "ema.safetensors"):
        got, want = load_file(str(checkpoint.latest(run) / name)), load_file(str(checkpoint.latest(full) / name))
        assert got.keys() == want.keys() and all((got[k] == want[k]).all() for k in got)
    assert not (run / "checkpoints" / "_tmp-step-0000004").exists()
