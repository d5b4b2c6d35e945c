"""`rushes train --init` from a tiny Wan pipeline repo (its umT5 text_encoder/ + tokenizer/, AutoencoderKLWan vae/):
full fine-tuning and LoRA, exact resume, FSDP, and adapters diffusers loads and runs to the same output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from rushes.testing.tiny import save_tiny_wan_pipeline
from rushes.train import checkpoint
from rushes.train.config import preset
from rushes.train.loop import build_model, train
from rushes.train.wan import init_run_config


@pytest.fixture(scope="session")
def wan_pipe(tmp_path_factory) -> str:
    """A tiny Wan 2.1 T2V pipeline repo in diffusers layout, loaded by path as a hub id would be."""
    return save_tiny_wan_pipeline(tmp_path_factory.mktemp("wan-pipe") / "Wan-tiny-Diffusers")


def wan_cfg(pipe: str, steps: int, lora: int = 0, **train):
    base = preset("tiny").with_overrides(
        model={"lora_rank": lora, "lora_alpha": 2.0 * lora if lora else None},
        data={"max_frames": 5, "fps": 8.0, "clip_tokens": 96, "batch_tokens": 256, "val_clips": 1,
              "caption_dropout": 0.3},
        train={"steps": steps, "log_every": 1, "val_every": 2, "checkpoint_every": 2, "warmup_steps": 1,
               "lr": 5e-3, **train})
    return init_run_config(base, pipe)


def _quiet(_):
    pass


def test_cli_init_takes_architecture_and_encoders_from_the_repo(synth_out, wan_pipe, tmp_path, capsys):
    from rushes.cli import main

    run = tmp_path / "run"
    assert main(["train", str(synth_out), "--run", str(run), "--init", wan_pipe, "--max-frames", "5",
                 "--clip-tokens", "96", "--batch-tokens", "256", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out.split("\n}\n")[0] + "\n}")
    assert cfg["model"]["arch"] == "wan" and cfg["model"]["init_subfolder"] == "transformer"
    assert (cfg["model"]["in_channels"], cfg["model"]["text_dim"]) == (4, 32)
    d = cfg["data"]
    assert (d["text_encoder"], d["text_encoder_subfolder"], d["vae"], d["vae_subfolder"], d["max_text_tokens"]) == \
        (wan_pipe, "text_encoder", wan_pipe, "vae", 512)
    # a text encoder the model cannot read is refused before anything loads, naming both
    assert main(["train", str(synth_out), "--run", str(run), "--init", wan_pipe, "--text-encoder-subfolder", "vae",
                 "--dry-run"]) == 2
    assert "text encoder" in capsys.readouterr().err
    assert main(["train", str(synth_out), "--run", str(run), "--init", str(tmp_path / "nothing"), "--dry-run"]) == 2
    assert "no diffusers Wan transformer config" in capsys.readouterr().err


def test_init_weights_are_the_repo_transformer(wan_pipe):
    from diffusers import WanTransformer3DModel

    ref = WanTransformer3DModel.from_pretrained(wan_pipe, subfolder="transformer").state_dict()
    mine = build_model(wan_cfg(wan_pipe, 1), torch.device("cpu")).state_dict()
    assert mine.keys() == ref.keys() and all(torch.equal(mine[k], ref[k]) for k in ref)


@pytest.mark.parametrize("lora", [0, 4])
def test_wan_run_resumes_exactly(synth_out, wan_pipe, tmp_path, lora):
    """Full fine-tuning and LoRA: 2 steps then a resume to 4 equal 4 uninterrupted steps; a LoRA checkpoint holds
    the adapters only and the base weights never move."""
    cfg = wan_cfg(wan_pipe, 4, lora)
    whole = train(synth_out, tmp_path / "whole", cfg, echo=_quiet)
    head = train(synth_out, tmp_path / "split", cfg.with_overrides(train={"steps": 2}), echo=_quiet)
    tail = train(synth_out, tmp_path / "split", cfg, echo=_quiet)
    assert tail.start_step == 2
    np.testing.assert_allclose(head.losses + tail.losses, whole.losses, rtol=1e-6)
    a, b = (load_file(str(checkpoint.latest(tmp_path / r) / "ema.safetensors")) for r in ("whole", "split"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-7) for k in a)
    if lora:
        assert a.keys() and all(".lora_A." in k or ".lora_B." in k for k in a)
        assert any(float(v.abs().max()) > 0 for k, v in a.items() if ".lora_B." in k)  # the adapters trained
        opt = torch.load(checkpoint.latest(tmp_path / "whole") / "optimizer.pt", weights_only=True)
        assert len(opt["state"]) == len(load_file(str(checkpoint.latest(tmp_path / "whole") / "model.safetensors")))
    else:
        assert len(a) == len(build_model(cfg, torch.device("cpu")).state_dict())


def test_lora_under_fsdp_equals_one_process(synth_out, wan_pipe, tmp_path, one_rank_group):
    cfg = wan_cfg(wan_pipe, 2, lora=4)
    plain = train(synth_out, tmp_path / "plain", cfg, echo=_quiet)
    fsdp = train(synth_out, tmp_path / "fsdp", cfg, echo=_quiet, parallel="fsdp")
    np.testing.assert_allclose(fsdp.losses, plain.losses, rtol=1e-5)
    a, b = (load_file(str(checkpoint.latest(tmp_path / r) / "model.safetensors")) for r in ("plain", "fsdp"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, synth_out, wan_pipe):
    """A LoRA run of 2 steps whose adapters have moved (a high learning rate)."""
    run = tmp_path_factory.mktemp("lora") / "run"
    train(synth_out, run, wan_cfg(wan_pipe, 2, lora=4, lr=5e-2, ema_decay=0.5), echo=_quiet)
    return run


def _one_clip():
    g = torch.Generator().manual_seed(3)
    return {"video": torch.randn(4, 2, 4, 6, generator=g, dtype=torch.float64),
            "text": torch.randn(5, 32, generator=g, dtype=torch.float64), "t": 0.6}


def test_export_merged_pipeline_runs_in_diffusers(lora_run, tmp_path):
    from diffusers import WanPipeline

    from rushes.cli import main
    from rushes.train.export import export_diffusers
    from rushes.train.sample import load_run

    dest = tmp_path / "merged"  # through the command a user runs: rushes export RUN DEST --format diffusers
    assert main(["export", str(lora_run), str(dest), "--format", "diffusers"]) == 0
    pipe = WanPipeline.from_pretrained(dest)
    frames = pipe("a dog runs on a beach", height=16, width=16, num_frames=5, num_inference_steps=2,
                  guidance_scale=2.0, output_type="np", generator=torch.Generator().manual_seed(0)).frames
    assert frames.shape == (1, 5, 16, 16, 3) and np.isfinite(frames).all()
    _, model = load_run(lora_run, "cpu")  # EMA weights with adapters: their merge is what diffusers holds
    from rushes.train.lora import merge_adapters

    merged, exported = merge_adapters(model).state_dict(), pipe.transformer.state_dict()
    assert merged.keys() == exported.keys() and all(torch.equal(merged[k], exported[k]) for k in merged)
    with pytest.raises(ValueError, match="not empty"):
        export_diffusers(lora_run, dest)


def test_separate_adapter_loads_into_diffusers_and_gives_rushes_output(lora_run, tmp_path):
    """Base transformer + adapter file: WanPipeline.load_lora_weights gives the transformer output rushes' model
    (with its adapters, raw weights) gives on the same input, in float64."""
    from diffusers import WanPipeline

    from rushes.train.export import export_diffusers
    from rushes.train.sample import load_run
    from rushes.testing.wan import diffusers_on_clip, rushes_on_clips

    dest = export_diffusers(lora_run, tmp_path / "sep", weights="raw", lora="separate")
    assert (dest / "pytorch_lora_weights.safetensors").is_file()
    pipe = WanPipeline.from_pretrained(dest)
    pipe.load_lora_weights(dest)
    ref = pipe.transformer.double().eval()
    _, ours = load_run(lora_run, "cpu", use_ema=False)
    ours = ours.double()
    clip = _one_clip()
    got, want = rushes_on_clips(ours, [clip], pad=3)[0], diffusers_on_clip(ref, clip)
    assert (got - want).abs().max() <= 1e-10
    pipe.transformer.disable_lora()  # the adapters matter: without them the output moves
    assert (diffusers_on_clip(pipe.transformer, clip) - want).abs().max() > 1e-4


def test_sample_a_wan_run_from_the_command_line(lora_run, tmp_path, capsys):
    """`rushes sample` on a Wan LoRA run: a prompts file, two clips per prompt, UniPC, --shift and --fps; the
    encoders load once per call; Euler and UniPC both draw clips of the asked shape."""
    import av

    from rushes.cli import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog runs on a beach\n\nfire burning at night\n")
    out = tmp_path / "clips" / "wan.mp4"
    assert main(["sample", str(lora_run), "--prompts", str(prompts), "--num-samples", "2", "--solver", "unipc",
                 "--shift", "3", "--fps", "12", "--frames", "5", "--size", "16x24", "--steps", "3",
                 "--out", str(out)]) == 0
    written = sorted((tmp_path / "clips").glob("wan-*.mp4"))
    assert [p.name for p in written] == [f"wan-{i:03d}.mp4" for i in range(4)]
    assert capsys.readouterr().out.count("wrote ") == 4
    for path in written:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
            assert float(stream.average_rate) == 12
        assert len(frames) == 5 and frames[0].shape == (16, 24, 3)
    one = tmp_path / "one.mp4"
    assert main(["sample", str(lora_run), "--prompt", "a dog", "--frames", "5", "--size", "16x24", "--steps", "2",
                 "--out", str(one)]) == 0 and one.is_file()
    assert main(["sample", str(lora_run), "--prompts", str(tmp_path / "none.txt"), "--out", str(one)]) == 2
    assert "--prompts" in capsys.readouterr().err


def test_unipc_and_euler_reach_the_same_clip_of_an_exact_field():
    """Both solvers integrate the same flow: for a velocity field whose data point is known (x0 fixed), each
    lands on x0 (Euler exactly at t=0, UniPC near it: its last sigma is not 0)."""
    from rushes.train.diffusion import flow_sample

    x0 = torch.randn(1, 10, 3, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(1, 10, 3, generator=torch.Generator().manual_seed(1))
    field = lambda x, t, cond: (x - x0) / t[..., None].clamp(min=1e-6)  # noqa: E731 - v = noise - x0 on the path
    for solver in ("euler", "unipc"):
        got = flow_sample(field, noise, 1, steps=8, shift=3.0, solver=solver)
        assert (got - x0).abs().max() < (1e-5 if solver == "euler" else 1e-2), solver  # noise is ~1 away
