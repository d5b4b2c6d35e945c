"""How a run executes without changing what it trains: --profile-steps (no mid-step GPU synchronisation
otherwise), --compile (per-block torch.compile), the device's precision (bf16 autocast and FSDP2's policy on
CUDA, fp32 on CPU)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from rushes.train import parallel
from rushes.train.config import ModelConfig, preset
from rushes.train.loop import TrainOptions, train
from rushes.train.model import DiffusionTransformer
from rushes.train.throughput import Stopwatch


def _cfg(tiny_t5, **train_kw):
    kw = {"steps": 4, "log_every": 10, "val_every": 100, "checkpoint_every": 100, "warmup_steps": 2, **train_kw}
    return preset("tiny").with_overrides(data={"text_encoder": tiny_t5, "max_frames": 4, "clip_tokens": 192,
                                               "batch_tokens": 512}, train=kw)


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_profiled_steps_are_logged_with_their_phases(synth_out, tiny_t5, tmp_path):
    train(synth_out, tmp_path / "run", _cfg(tiny_t5, steps=7), echo=lambda s: None, profile_steps=3)
    lines = [r for r in _log(tmp_path / "run") if "loss" in r]
    assert [r["step"] for r in lines] == [1, 3, 6, 7]  # the first, every 3rd (profiled), the last
    for r in lines:  # on CPU the phases are exact without synchronising: always logged
        phases = [r["data_s"], r["forward_s"], r["backward_s"], r["optimizer_s"]]
        assert r["step_s"] == pytest.approx(sum(phases), rel=1e-9)
    with pytest.raises(ValueError, match="profile_steps -1"):
        TrainOptions(profile_steps=-1)


def test_the_stopwatch_synchronises_a_gpu_only_when_asked(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append(a))
    Stopwatch(torch.device("cuda")).lap()  # the default step: kernels stay queued
    Stopwatch(torch.device("cpu"), sync=True).lap()
    assert calls == []
    Stopwatch(torch.device("cuda"), sync=True).lap()  # a profiled step
    assert len(calls) == 1


def test_precision_is_bf16_on_cuda_and_fp32_on_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert parallel.compute_dtype(cpu) == torch.float32 and parallel.mixed_precision(cpu) is None
    assert parallel.compute_dtype(cuda) == torch.bfloat16
    policy = parallel.mixed_precision(cuda)  # FSDP2: bf16 all-gathers, fp32 gradient reduction
    assert (policy.param_dtype, policy.reduce_dtype, policy.cast_forward_inputs) == (torch.bfloat16, torch.float32,
                                                                                     False)
    with parallel.autocast(cpu):
        assert not torch.is_autocast_enabled("cpu")


def _pack(g):
    sizes, caps, pad = [40, 24, 24], [3, 5, 2], 8
    n, s, lt = sum(sizes) + pad, len(sizes), max(caps)
    seq, mask, at = torch.full((1, n), -1), torch.zeros(1, s, lt, dtype=torch.bool), 0
    for i, (k, c) in enumerate(zip(sizes, caps)):
        seq[0, at:at + k], mask[0, i, :c], at = i, True, at + k
    pos = torch.randint(0, 4, (1, n, 3), generator=g)
    return (torch.randn(1, n, 12, generator=g), torch.rand(1, s, generator=g), torch.randn(1, s, lt, 16, generator=g),
            mask, pos, seq)


def test_compiled_blocks_trace_around_the_attention_and_give_the_same_numbers():
    # Dynamo's capture with the eager backend (seconds on CPU): the packed attention is a graph break, the
    # blocks' code is traced, outputs and gradients are those of the plain model. Inductor: the slow test below.
    torch.manual_seed(0)
    cfg = ModelConfig(patch_size=(1, 2, 2), hidden_size=32, depth=2, num_heads=2, in_channels=3, text_dim=16)
    plain = DiffusionTransformer(cfg)
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.05 * torch.randn_like(p))
    compiled = copy.deepcopy(plain)
    parallel.compile_blocks(compiled, backend="eager")
    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    batch = _pack(torch.Generator().manual_seed(0))
    outs = []
    for model in (plain, compiled):
        out = model(*batch)
        out.pow(2).mean().backward()
        outs.append((out.detach(), {n: p.grad for n, p in model.named_parameters()}))
    assert counters["stats"]["unique_graphs"] > 0 and sum(counters["graph_break"].values()) > 0
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-6, atol=1e-6)
    for name, grad in outs[0][1].items():
        torch.testing.assert_close(outs[1][1][name], grad, rtol=1e-5, atol=1e-6, msg=name)
    assert set(compiled.state_dict()) == set(plain.state_dict())  # checkpoints keep their names


@pytest.mark.slow
def test_a_compiled_run_trains_the_losses_of_an_eager_run(synth_out, tiny_t5, tmp_path):
    # Inductor on CPU, several packs of different lengths (one recompile with dynamic shapes), validation included.
    cfg = _cfg(tiny_t5, steps=6, val_every=3)
    eager = train(synth_out, tmp_path / "eager", cfg, echo=lambda s: None)
    compiled = train(synth_out, tmp_path / "compiled", cfg, echo=lambda s: None, compile=True)
    np.testing.assert_allclose(compiled.losses, eager.losses, rtol=1e-4)
    np.testing.assert_allclose([v for _, v in compiled.val_losses], [v for _, v in eager.val_losses], rtol=1e-4)
