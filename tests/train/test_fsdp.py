"""FSDP2 (``parallel="fsdp"``): the same steps as one plain process, and checkpoints that move between FSDP and
DDP/one process and between worker counts (whole tensors on disk, shards in memory)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rushes.testing.train_shards import write_random_run
from rushes.train import checkpoint
from rushes.train.config import preset
from rushes.train.loop import train
from rushes.progress import StepProgress


def _cfg(t5: str, steps: int, packs: int = 2):
    return preset("tiny").with_overrides(
        data={"text_encoder": t5, "max_frames": 4, "clip_tokens": 96, "batch_tokens": 256, "val_clips": 1,
              "packs_per_step": packs, "stream_window": 16, "caption_dropout": 0.5},
        train={"steps": steps, "log_every": 1, "val_every": 2, "checkpoint_every": 2, "warmup_steps": 2})


@pytest.fixture
def random_out(tmp_path, tiny_t5):
    """OUT with 24 tiny random clips and encodings of them under this config's key (no decoding needed)."""
    return write_random_run(tmp_path / "out", _cfg(tiny_t5, 1), 24, shard_rows=8)


def _quiet(_):
    pass


def _rewind(src, dst, step: int):
    """A copy of run ``src`` as it was after checkpoint ``step`` (later checkpoints and log lines dropped)."""
    shutil.copytree(src, dst)
    (dst / "checkpoints" / "latest").write_text(f"step-{step:07d}")
    for later in (dst / "checkpoints").glob("step-*"):
        if later.name > f"step-{step:07d}":
            shutil.rmtree(later)
    return dst


def test_fsdp_steps_equal_plain_steps_and_checkpoints_cross_over(random_out, tiny_t5, tmp_path, one_rank_group):
    cfg = _cfg(tiny_t5, 4)
    plain = train(random_out, tmp_path / "plain", cfg, echo=_quiet)
    fsdp = train(random_out, tmp_path / "fsdp", cfg, echo=_quiet, parallel="fsdp")
    np.testing.assert_allclose(fsdp.losses, plain.losses, rtol=1e-5)
    np.testing.assert_allclose([v for _, v in fsdp.val_losses], [v for _, v in plain.val_losses], rtol=1e-5)
    assert json.loads((tmp_path / "fsdp" / "config.json").read_text())["parallel"] == "fsdp"
    log = [json.loads(line) for line in (tmp_path / "fsdp" / "log.jsonl").read_text().splitlines()]
    assert {r["parallel"] for r in log if "loss" in r} == {"fsdp"}
    for name in ("model", "ema"):  # whole tensors on disk, the same as a plain run's
        a = load_file(str(checkpoint.latest(tmp_path / "plain") / f"{name}.safetensors"))
        b = load_file(str(checkpoint.latest(tmp_path / "fsdp") / f"{name}.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    # A plain checkpoint resumed under FSDP, and an FSDP checkpoint resumed in a plain process.
    to_fsdp = train(random_out, _rewind(tmp_path / "plain", tmp_path / "p2f", 2), cfg, echo=_quiet, parallel="fsdp")
    to_plain = train(random_out, _rewind(tmp_path / "fsdp", tmp_path / "f2p", 2), cfg, echo=_quiet)
    assert to_fsdp.start_step == to_plain.start_step == 2
    np.testing.assert_allclose(to_fsdp.losses, plain.losses[2:], rtol=1e-5)
    np.testing.assert_allclose(to_plain.losses, plain.losses[2:], rtol=1e-5)
    a, b = (torch.load(checkpoint.latest(tmp_path / run) / "optimizer.pt", weights_only=True)
            for run in ("plain", "f2p"))  # AdamW moments in optimizer.state_dict() form either way
    assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
    for i in a["state"]:
        for k in ("step", "exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(b["state"][i][k], a["state"][i][k], rtol=1e-4, atol=1e-7)


def test_parallel_must_be_ddp_or_fsdp(random_out, tiny_t5, tmp_path):
    with pytest.raises(ValueError, match="use ddp"):
        train(random_out, tmp_path / "run", _cfg(tiny_t5, 1), echo=_quiet, parallel="zero3")


@pytest.mark.slow
def test_two_fsdp_workers_on_ray_train_resume_a_one_process_run_and_hand_back(random_out, tiny_t5, tmp_path,
                                                                              ray_local):
    """One process to step 2, two FSDP workers (gloo) to step 4, one process to step 6: the losses of one
    uninterrupted run, and its final EMA weights."""
    from rushes.train.pipeline import run_train_workers

    cfg = _cfg(tiny_t5, 6)
    one = train(random_out, tmp_path / "one", cfg, echo=_quiet)
    run = tmp_path / "moved"
    head = train(random_out, run, cfg.with_overrides(train={"steps": 2}), echo=_quiet)
    shown = io.StringIO()  # not a terminal: the driver prints worker 0's log lines and progress lines
    two = run_train_workers(random_out, run, cfg.with_overrides(train={"steps": 4}), workers=2, torch_threads=1,
                            parallel="fsdp", progress=StepProgress(4, start=2, every_s=0, stream=shown))
    assert (two.start_step, two.step) == (2, 4)
    assert [ln.split(",")[0] for ln in shown.getvalue().splitlines() if ln.startswith("train progress")] == \
        ["train progress: step 3/4", "train progress: step 4/4"]
    assert "step=4 loss=" in shown.getvalue() and "parallel=fsdp" in shown.getvalue()
    saved = json.loads((run / "config.json").read_text())
    assert (saved["workers"], saved["parallel"]) == (2, "fsdp")
    tail = train(random_out, run, cfg, echo=_quiet)
    assert tail.start_step == 4
    np.testing.assert_allclose(head.losses + two.losses + tail.losses, one.losses, rtol=1e-4)
    a = load_file(str(checkpoint.latest(tmp_path / "one") / "ema.safetensors"))
    b = load_file(str(checkpoint.latest(run) / "ema.safetensors"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6)
