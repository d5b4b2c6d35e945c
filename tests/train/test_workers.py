"""`rushes train --workers N` on Ray Train: the same loss curve as one worker, and a checkpoint of N resumes on 1."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rushes.train.config import preset
from rushes.train.loop import train
from rushes.testing.train_shards import encode_in_process


@pytest.mark.slow
def test_two_workers_follow_one_worker_and_their_checkpoint_resumes_on_one(synth_out, tiny_t5, tmp_path, ray_local):
    from rushes.train.pipeline import run_train_workers

    cfg = preset("tiny").with_overrides(
        data={"text_encoder": tiny_t5, "max_frames": 4, "clip_tokens": 128, "batch_tokens": 128,
              "packs_per_step": 2, "caption_dropout": 0.5, "val_clips": 0},
        train={"steps": 6, "log_every": 1, "checkpoint_every": 4, "warmup_steps": 2})
    out = shutil.copytree(synth_out, tmp_path / "out")
    encode_in_process(out, cfg)
    one = train(out, tmp_path / "one", cfg, echo=lambda s: None)  # one process, both packs of each step
    two = run_train_workers(out, tmp_path / "two", cfg.with_overrides(train={"steps": 4}), workers=2,
                            torch_threads=1)
    assert two.step == 4 and len(two.losses) == 4
    np.testing.assert_allclose(two.losses, one.losses[:4], rtol=1e-4)  # same global batch, same data order
    assert json.loads((tmp_path / "two" / "config.json").read_text())["workers"] == 2
    assert all(json.loads(line)["workers"] == 2 for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines())
    assert _counts(tmp_path / "two") == _counts(tmp_path / "one")[:4]
    resumed = train(out, tmp_path / "two", cfg, echo=lambda s: None)  # the 2-worker checkpoint on 1 worker
    assert resumed.start_step == 4
    np.testing.assert_allclose(resumed.losses, one.losses[4:], rtol=1e-4)


def _counts(run: Path) -> list[tuple]:
    """Each logged step's clips, real tokens, computed tokens and FLOPs (over all workers)."""
    lines = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["clips"], r["real_tokens"], r["tokens"], r["flops"]) for r in lines if "loss" in r]


_STEP_SUM = """
import sys, torch, torch.distributed as dist
from rushes.train.loop import _StepSum
rank, port = int(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
loss = torch.tensor([0.25, 1.5][rank])
summed = _StepSum(loss, {"clips": 3 + rank, "flops": 2 ** 52 + rank}, world=2)
loss.add_(100.0)  # the numbers were taken when the sum started: what the step does next cannot change them
print(summed.result())
dist.destroy_process_group()
"""


def test_the_step_loss_and_counts_cross_the_workers_in_one_sum():
    """Two gloo processes: the mean loss (the sum of each worker's share) and the exact sums of the counts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    repo = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", _STEP_SUM, str(rank), str(port)], cwd=repo,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert [o for o, _ in outs] == ["(1.75, {'clips': 7, 'flops': 9007199254740993})\n"] * 2
