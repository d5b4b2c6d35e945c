"""Conditioning through per-token timesteps (issue 24 item 1): tokens marked ``cond`` are given clean, at t = 0.

Proved in float64: without conditioned tokens the per-token path computes exactly the per-clip path; a clip with
every token conditioned computes the clip at t = 0; conditioning one clip of a pack leaves the others unchanged;
and the Wan model equals diffusers' WanTransformer3DModel given a timestep per token (Wan 2.2 TI2V's input)."""

from __future__ import annotations

import pytest
import torch

from rushes.testing.tiny import save_tiny_wan_transformer
from rushes.testing.wan import cond_tokens, diffusers_on_clip, rushes_on_clips
from rushes.train.config import ModelConfig
from rushes.train.model import DiffusionTransformer, token_slots
from rushes.train.wan import build_transformer, model_config, transformer_config

TOL = 1e-10


def _native():
    torch.manual_seed(0)
    cfg = ModelConfig(patch_size=(1, 2, 2), hidden_size=32, depth=2, num_heads=2, in_channels=3, text_dim=16)
    model = DiffusionTransformer(cfg).double().eval()
    with torch.no_grad():  # adaLN-zero starts as the identity: randomise so every path is exercised
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _clips(channels=3, text_dim=16):
    g = torch.Generator().manual_seed(2)
    out = []
    for (t, h, w), lt, tv in [((3, 4, 6), 5, 0.73), ((1, 2, 2), 1, 0.05), ((4, 2, 8), 3, 0.91)]:
        out.append({"video": torch.randn(channels, t, h, w, generator=g, dtype=torch.float64),
                    "text": torch.randn(lt, text_dim, generator=g, dtype=torch.float64), "t": tv})
    return out


def test_token_slots_route_conditioned_tokens_to_timestep_zero():
    t = torch.tensor([[0.25, 0.75]])
    seq = torch.tensor([[0, 0, 1, 1, -1]])
    cond = torch.tensor([[True, False, False, True, True]])
    table, idx = token_slots(t, seq, cond)
    assert torch.gather(table, 1, idx).tolist() == [[0.0, 0.25, 0.75, 0.0, 0.25]]  # padding: slot 0, never conditioned
    assert token_slots(t, seq, None)[0] is t


def test_native_without_conditioned_tokens_is_the_per_clip_path():
    model, clips = _native(), _clips()
    per_clip = rushes_on_clips(model, clips, per_token=False)
    per_token = rushes_on_clips(model, clips, per_token=True)  # a mask, all False
    for a, b in zip(per_clip, per_token):
        assert a.abs().max() > 0.1 and (a - b).abs().max() <= 1e-13


def test_native_conditioned_clip_is_that_clip_at_t0_and_leaves_others_alone():
    model, clips = _native(), _clips()
    base = rushes_on_clips(model, clips)
    clips[0]["cond_frames"] = [0, 1, 2]  # every frame of clip 0: it is the clip at t = 0
    clips[2]["cond_frames"] = [0]  # the first frame of clip 2 (image-to-video)
    got = rushes_on_clips(model, clips, per_token=True)
    at_zero = rushes_on_clips(model, [{**clips[0], "t": 0.0}])[0]
    assert (got[0] - at_zero).abs().max() <= TOL and (got[0] - base[0]).abs().max() > 1e-3
    assert (got[1] - base[1]).abs().max() <= TOL  # an unconditioned clip of the pack: unchanged
    assert (got[2] - base[2]).abs().max() > 1e-3  # conditioning reached clip 2's other frames too


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    from diffusers import WanTransformer3DModel

    folder = save_tiny_wan_transformer(tmp_path_factory.mktemp("wan") / "tiny-wan")
    config, sub = transformer_config(folder)
    ours = build_transformer(model_config(config, ModelConfig(), folder, sub)).double().eval()
    ref = WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.float64).double().eval()
    return ours, ref


def test_wan_per_token_timesteps_equal_diffusers_ti2v_input(wan):
    ours, ref = wan
    clips = _clips(channels=4, text_dim=32)
    clips[0]["cond_frames"], clips[2]["cond_frames"] = [0], [0, 3]  # image-to-video; first and last frame
    got = rushes_on_clips(ours, clips, per_token=True)
    for g, clip in zip(got, clips):
        want = diffusers_on_clip(ref, clip)
        assert want.abs().max() > 0.1 and (g - want).abs().max() <= TOL
    plain = rushes_on_clips(ours, [clips[1]])[0]  # no conditioned token: the per-clip path, to the bit
    assert (got[1] - plain).abs().max() <= 1e-13
    assert cond_tokens((4, 1, 4), [0, 3]).sum() == 8


# ---- the mix in training ----------------------------------------------------------------------------------------


def test_cond_mix_parses_and_names_the_fix():
    from rushes.train.config import DataConfig, parse_cond_mix
    from rushes.settings import SettingValueError

    assert parse_cond_mix("t2v=3,i2v=1") == {"t2v": 0.75, "i2v": 0.25, "extend": 0.0, "firstlast": 0.0}
    for bad, words in [("t2v=1,v2v=1", "TASK one of"), ("t2v=x", "not a number"), ("t2v=0", "no task"),
                       ("i2v=-1", ">= 0")]:
        with pytest.raises(SettingValueError, match=words):
            DataConfig(cond_mix=bad)


def test_tasks_give_the_frames_they_name_and_draws_repeat():
    from rushes.train.conditioning import cond_frames, pack_cond, task_rng

    rng = task_rng(0, 0, 0)
    assert cond_frames("i2v", 4, rng) == [0] and cond_frames("firstlast", 4, rng) == [0, 3]
    assert all(1 <= len(cond_frames("extend", 4, rng)) <= 3 for _ in range(50))
    assert cond_frames("i2v", 1, rng) == [] and cond_frames("firstlast", 2, rng) == []  # too short: t2v
    grids = [(4, 2, 3), (3, 2, 2), (1, 4, 4)]
    masks = [pack_cond(grids, 64, "i2v=1", task_rng(5, 7, p)) for p in range(2)]
    assert masks[0][0, :6].all() and not masks[0][0, 6:24].any() and masks[0][0, 24:28].all()
    assert not masks[0][0, 36:].any()  # the one-frame clip (a still) and padding: never given
    a, b = (pack_cond(grids, 64, "t2v=1,extend=1,firstlast=1", task_rng(5, s, 0)) for s in (9, 9))
    assert (a is None and b is None) or torch.equal(a, b)  # a function of seed, step and pack: resume draws it again
    assert pack_cond(grids, 64, "t2v=1", task_rng(0, 0, 0)) is None


def test_conditioning_tokens_are_clean_and_out_of_the_loss_and_the_counts():
    from rushes.train.diffusion import training_loss
    from rushes.train.packing import PackedBatch
    from rushes.train.throughput import batch_flops

    x0 = torch.randn(1, 10, 4)
    seq = torch.tensor([[0] * 6 + [1] * 3 + [-1]])
    cond = torch.zeros(1, 10, dtype=torch.bool)
    cond[0, :2] = True
    seen = {}

    def velocity(x_t, t, junk=0.0):
        seen["x_t"] = x_t
        out = torch.zeros_like(x_t)
        out[0, :2] = junk  # any prediction on conditioning tokens
        return out

    slot_tokens = torch.tensor([[6, 3]])
    runs = [training_loss(lambda x, t, j=j: velocity(x, t, j), x0, seq, slot_tokens, torch.Generator().manual_seed(0),
                          cond=cond)[0] for j in (0.0, 100.0)]
    assert torch.equal(runs[0], runs[1])  # the loss never reads them
    assert torch.equal(seen["x_t"][0, :2], x0[0, :2]) and not torch.equal(seen["x_t"][0, 2:9], x0[0, 2:9])
    cfg = ModelConfig(patch_size=(1, 2, 2), hidden_size=32, depth=2, num_heads=2, in_channels=1, text_dim=16)
    mask = torch.ones(1, 2, 3, dtype=torch.bool)
    batch = PackedBatch(x0, torch.zeros(1, 10, 3, dtype=torch.long), seq, torch.zeros(1, 2, 3, 16), mask, slot_tokens,
                        ["a", "b"], [(3, 1, 2), (3, 1, 1)], cond)
    plain = PackedBatch(x0[:, :7], torch.zeros(1, 7, 3, dtype=torch.long), seq[:, 2:9], torch.zeros(1, 2, 3, 16), mask,
                        torch.tensor([[4, 3]]), ["a", "b"], [(2, 1, 2), (3, 1, 1)])
    assert batch.real_tokens == 7 and batch_flops(cfg, batch) == batch_flops(cfg, plain)


def test_a_run_with_the_mix_resumes_exactly_and_counts_only_learned_tokens(synth_out, tiny_t5, tmp_path):
    import json

    from rushes.train.config import preset
    from rushes.train.loop import train

    def cfg(mix, steps=4):
        return preset("tiny").with_overrides(
            data={"text_encoder": tiny_t5, "max_frames": 4, "clip_tokens": 192, "batch_tokens": 512, "cond_mix": mix},
            train={"steps": steps, "log_every": 1, "val_every": 100, "checkpoint_every": 2, "warmup_steps": 1})

    def log(run):
        return [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "loss" in r]

    quiet = dict(echo=lambda s: None)
    given = train(synth_out, tmp_path / "given", cfg("i2v=1,extend=1"), **quiet)
    head = train(synth_out, tmp_path / "split", cfg("i2v=1,extend=1", 2), **quiet)
    tail = train(synth_out, tmp_path / "split", cfg("i2v=1,extend=1"), **quiet)
    assert head.losses + tail.losses == given.losses  # the draws repeat on resume: bit-exact
    plain = train(synth_out, tmp_path / "plain", cfg("t2v=1"), **quiet)
    for a, b in zip(log(tmp_path / "given"), log(tmp_path / "plain")):  # the same packs, frames given or not
        assert a["clips"] == b["clips"] and a["tokens"] == b["tokens"]
        assert a["real_tokens"] < b["real_tokens"] and a["flops"] < b["flops"]
    assert plain.losses != given.losses


def test_a_run_saved_before_the_mix_existed_resumes_text_to_video_only():
    from rushes.train.config import DEFAULT_COND_MIX, RunConfig, tiny

    saved = tiny().to_dict()
    assert RunConfig.from_dict(saved).data.cond_mix == DEFAULT_COND_MIX  # a saved mix is kept
    del saved["data"]["cond_mix"]  # a config.json written before --cond-mix: that run trained text-to-video only
    assert RunConfig.from_dict(saved).data.cond_mix == "t2v=1"
