"""The loop: the loss falls, a resumed run repeats the uninterrupted run's losses exactly, logs and summary."""

from __future__ import annotations

import json
import os
from importlib import metadata

import numpy as np
import pytest
import torch

from rushes.manifests import store
from rushes.train import checkpoint
from rushes.train.config import preset
from rushes.train.loop import train


def _cfg(tiny_t5, **train_kw):
    kw = {"steps": 40, "log_every": 5, "val_every": 20, "checkpoint_every": 100, "warmup_steps": 5, **train_kw}
    return preset("tiny").with_overrides(data={"text_encoder": tiny_t5, "max_frames": 4, "clip_tokens": 192,
                                               "batch_tokens": 512}, train=kw)


def test_loss_falls_on_a_tiny_set(synth_out, tiny_t5, tmp_path):
    result = train(synth_out, tmp_path / "run", _cfg(tiny_t5), echo=lambda s: None)
    losses = np.array(result.losses)
    assert len(losses) == 40 and result.num_clips == 3
    assert losses[-10:].mean() < 0.7 * losses[:10].mean(), losses
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("val_loss" in r for r in log) and log[-1]["step"] == 40
    train_lines = [r for r in log if "loss" in r]
    assert all(r["real_tokens"] <= r["tokens"] <= 512 for r in train_lines)
    assert [r["step"] for r in train_lines] == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert store.read_summary(synth_out)["train"]["step"] == 40
    assert checkpoint.latest(tmp_path / "run").name == "step-0000040"
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["text_dim"] == 32 and saved["model"]["in_channels"] == 3
    versions = saved["tool_versions"]  # provenance, as on every manifest row
    assert versions["torch"] == metadata.version("torch") and versions["safetensors"] and versions["av"]


def test_log_splits_each_step_time_and_counts_tokens_per_second(synth_out, tiny_t5, tmp_path):
    echoed = []
    train(synth_out, tmp_path / "run", _cfg(tiny_t5, steps=4, log_every=1, val_every=100), echo=echoed.append)
    lines = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train_lines = [r for r in lines if "loss" in r]
    assert len(train_lines) == 4
    for r in train_lines:
        phases = [r["data_s"], r["forward_s"], r["backward_s"], r["optimizer_s"]]
        assert all(p > 0 for p in phases) and r["step_s"] == pytest.approx(sum(phases), rel=1e-9)
        assert r["cpu_s"] > 0  # this process's CPU seconds in the step: well below step_s means it waited
        assert r["tokens_per_s"] == pytest.approx(r["real_tokens"] / r["step_s"], rel=1e-9)
        assert isinstance(r["flops"], int) and r["flops"] > 0
        assert "mfu" not in r  # MFU needs a known GPU peak; on CPU none is claimed
    printed = [s for s in echoed if s.startswith("step=")]
    assert all(k in printed[0] for k in ("tokens_per_s=", "data_s=", "forward_s=", "backward_s=", "optimizer_s="))


class Crash(Exception):
    """Raised from the log callback: the run dies after logging a step it never checkpointed."""


def _log(run_dir):
    timing = {"step_s", "tokens_per_s", "mfu"}
    return [{k: v for k, v in json.loads(line).items() if k not in timing and not k.endswith("_s")}
            for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_resume_reproduces_the_uninterrupted_losses_exactly(synth_out, tiny_t5, tmp_path):
    # caption dropout and a packing budget holding two clips exercise every random stream and the data position
    cfg = _cfg(tiny_t5, steps=8, checkpoint_every=3, val_every=4, log_every=1).with_overrides(
        data={"caption_dropout": 0.5, "batch_tokens": 256})
    full = train(synth_out, tmp_path / "full", cfg, echo=lambda s: None)

    def crash_at_step_5(line):
        if line.startswith("step=5 "):
            raise Crash(line)

    # The interrupted run logs steps 4 and 5 past its last checkpoint (step 3), then dies.
    with pytest.raises(Crash):
        train(synth_out, tmp_path / "part", cfg, echo=crash_at_step_5)
    assert checkpoint.latest(tmp_path / "part").name == "step-0000003"
    assert [r["step"] for r in _log(tmp_path / "part")][-2:] == [4, 5]
    resumed = train(synth_out, tmp_path / "part", cfg, echo=lambda s: None)
    assert resumed.start_step == 3 and resumed.step == 8
    assert full.losses[3:] == resumed.losses  # bit-exact, not approximately
    assert resumed.val_losses == full.val_losses  # steps 4 and 8
    # The log reads as one run: the lines of steps 4 and 5 written before the crash are gone.
    assert _log(tmp_path / "part") == _log(tmp_path / "full")


def test_preparing_the_next_step_in_a_thread_changes_no_number(synth_out, tiny_t5, tmp_path):
    # The data thread prepares step s + 1 while step s trains: the packs, every random stream, the losses and
    # the data position a checkpoint saves must be what the sequential loop gives.
    cfg = _cfg(tiny_t5, steps=7, checkpoint_every=3, val_every=4, log_every=1).with_overrides(
        data={"caption_dropout": 0.5, "batch_tokens": 256})
    plain = train(synth_out, tmp_path / "plain", cfg, echo=lambda s: None, prefetch=False)
    echoed = []
    ahead = train(synth_out, tmp_path / "ahead", cfg, echo=echoed.append, echo_log=False, prefetch=True)
    assert ahead.losses == plain.losses and ahead.val_losses == plain.val_losses
    assert _log(tmp_path / "ahead") == _log(tmp_path / "plain")
    for name in ("step-0000006", "step-0000007"):  # the data position after step 6 (one prepared beyond it)
        saved = [json.loads((tmp_path / run / "checkpoints" / name / "state.json").read_text())
                 for run in ("plain", "ahead")]
        assert saved[0] == saved[1]
    # echo_log=False (a Ray Train worker whose driver shows log.jsonl): messages only, no log line printed
    assert echoed and not any(s.startswith("step=") for s in echoed)


def test_the_data_thread_runs_by_default_only_where_it_has_a_core(monkeypatch):
    from rushes.train.loop import auto_prefetch

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # a 2-core node
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert auto_prefetch(torch.device("cpu"), 1)  # one worker: its data thread takes the free core
    assert not auto_prefetch(torch.device("cpu"), 2)  # two workers fill both cores: no thread to preempt them
    assert auto_prefetch(torch.device("cuda", 0), 8)  # on a GPU the CPU waits for kernels anyway
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert not auto_prefetch(torch.device("cpu"), 1)  # torch's own threads fill the node
