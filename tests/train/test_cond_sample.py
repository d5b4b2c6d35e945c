"""Sampling from existing material (issue 24 items 2-3): a tiny pixel-space model overfit for seconds on real
clips animates a still, extends a clip and edits one, each checked against the truth; unreadable inputs are
one-line errors. The overfit trains with one shared (empty) caption, so only the given frames tell the clips apart:
a text-to-video sample of the same seed cannot know which clip to draw, a conditioned one can."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rushes.train.conditioning import pack_cond, task_rng
from rushes.train.config import DataConfig, ModelConfig, RunConfig
from rushes.train.diffusion import training_loss
from rushes.train.inputs import InputError, Inputs, read_clip, to_video
from rushes.train.model import DiffusionTransformer, grid_positions, patchify, unpatchify
from rushes.train.sample import Shape, condition, generate

NAMES = ("iio_cockatoo.mp4", "mpy_fire2.mp4", "psd_counter.mp4")
T, H, W, FPS, PATCH = 8, 16, 16, 8.0, (1, 4, 4)
GRID = (T, H // PATCH[1], W // PATCH[2])
FRAME = GRID[1] * GRID[2]  # tokens per frame
NULL = torch.zeros(1, 8)  # the one caption every clip trains with


def _model(seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(patch_size=PATCH, hidden_size=64, depth=2, num_heads=4, in_channels=3, text_dim=8)
    return DiffusionTransformer(cfg)


def _run_cfg(model):
    return RunConfig(model=model.cfg, data=DataConfig(fps=FPS))


def _pack(toks):
    n = toks[0].shape[0]
    x0, seq = torch.cat(toks)[None], torch.arange(len(toks)).repeat_interleave(n)[None]
    pos = grid_positions(GRID).repeat(len(toks), 1)[None]
    text, mask = NULL.expand(1, len(toks), 1, 8), torch.ones(1, len(toks), 1, dtype=torch.bool)
    return x0, seq, pos, text, mask, torch.tensor([[n] * len(toks)])


def _train(toks, mix: str, steps: int = 400):
    """A tiny DiT trained ``steps`` steps (400: ~25 s on one core) on ``toks`` packed, each clip's task drawn from
    ``mix`` as the trainer draws it (train/conditioning.py)."""
    torch.set_num_threads(1)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    x0, seq, pos, text, mask, slots = _pack(toks)
    for step in range(steps):
        cond = pack_cond([GRID] * len(toks), x0.shape[1], mix, task_rng(0, step, 0))
        loss, _ = training_loss(lambda x, t: model(x, t, text, mask, pos, seq, cond), x0, seq, slots,
                                torch.Generator().manual_seed(step), cond=cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _clips(footage_dir):
    clips = [read_clip(str(footage_dir / n), FPS, T * 2, H, W) for n in NAMES]  # 16 frames: 8 trained, 8 beyond
    return clips, [patchify(to_video(c[:T]), PATCH)[0] for c in clips]


@pytest.fixture(scope="module")
def overfit(footage_dir):
    """Three real clips (8 frames at 16x16) and a tiny DiT overfit on them with a mix of tasks."""
    clips, toks = _clips(footage_dir)
    return _train(toks, "t2v=0.5,i2v=0.25,extend=0.25"), clips, toks


def _sample(model, given=None, seed=1):
    return generate(model, NULL, NULL, GRID, 20, 1.0, 1.0, seed=seed, given=given)  # (N, P) tokens


def _video(tokens):
    return unpatchify(tokens, GRID, PATCH, 3)  # (3, T, H, W) in [-1, 1]


def _psnr(a, b):  # a, b in [-1, 1]
    mse = float(((a.clamp(-1, 1) - b) ** 2).mean()) / 4.0  # on [0, 1]
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _mse(a, b):
    return float(((a - b) ** 2).mean())


def test_image_to_video_keeps_the_still_and_continues_closer_than_text_to_video(overfit, tmp_path):
    from PIL import Image

    model, clips, toks = overfit
    shape, cfg = Shape(T, H, W, GRID), _run_cfg(model)
    for k, name in enumerate(NAMES):
        still = tmp_path / f"still{k}.png"
        Image.fromarray(np.ascontiguousarray(clips[k][0])).resize((64, 64), Image.Resampling.NEAREST).save(still)
        given = condition(Inputs(image=str(still)), shape, cfg)  # 64x64: fitted to 16x16 (an area filter)
        got, plain = _sample(model, given), _sample(model)
        first = _video(got)[:, 0]
        assert _psnr(first, to_video(clips[k][:1])[:, 0]) >= 35.0, name
        assert _mse(got[FRAME:], toks[k][FRAME:]) < _mse(plain[FRAME:], toks[k][FRAME:]), name


def test_extension_keeps_the_prefix_exactly_and_continues_closer_than_text_to_video(overfit, tmp_path, footage_dir):
    from rushes.media.frames import write_video

    model, clips, toks = overfit
    shape, cfg = Shape(T, H, W, GRID), _run_cfg(model)
    for k, name in enumerate(NAMES):
        src = tmp_path / f"prefix{k}.mp4"
        write_video(str(src), np.repeat(np.repeat(clips[k][:3], 4, axis=1), 4, axis=2), FPS, crf=0)  # 64x64
        given = condition(Inputs(video=str(src), extend_s=5 / FPS), shape, cfg)  # 3 frames kept, 5 new
        assert given.cond.sum() == 3 * FRAME and sorted(given.keep) == [0, 1, 2]
        got, plain = _sample(model, given), _sample(model)
        assert torch.equal(got[:3 * FRAME], given.tokens[:3 * FRAME])  # the prefix as given, to the bit
        truth = toks[k][3 * FRAME:]
        assert _mse(got[3 * FRAME:], truth) < _mse(plain[3 * FRAME:], truth), name


def test_edit_at_strength_0_is_the_input_and_at_1_is_text_to_video(tmp_path):
    from rushes.media.frames import write_video

    model = _model(3).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rgb = (np.random.default_rng(0).random((T, H, W, 3)) * 255).astype(np.uint8)
    src = tmp_path / "in.mp4"
    write_video(str(src), rgb, FPS, crf=0)
    shape, cfg = Shape(T, H, W, GRID), _run_cfg(model)
    zero = condition(Inputs(video=str(src), strength=0.0), shape, cfg)
    assert torch.equal(_sample(model, zero), zero.tokens)  # no step: the input itself
    one = condition(Inputs(video=str(src), strength=1.0), shape, cfg)
    assert torch.equal(_sample(model, one), _sample(model))  # the same noise, the same schedule
    half = _sample(model, condition(Inputs(video=str(src), strength=0.5), shape, cfg))
    assert 0 < _mse(half, zero.tokens) < _mse(_sample(model), zero.tokens)  # an edit stays nearer its input


def test_inputs_are_checked_and_unreadable_ones_are_one_line_errors(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    model = _model()
    shape, cfg = Shape(T, H, W, GRID), _run_cfg(model)
    for inputs, words in [(Inputs(image=str(bad)), "cannot read image"),
                          (Inputs(video=str(bad), extend_s=0.5), "cannot decode video"),
                          (Inputs(video=str(tmp_path / "missing.mp4"), strength=0.5), "missing.mp4")]:
        with pytest.raises(InputError, match=words) as err:
            condition(inputs, shape, cfg)
        assert "\n" not in str(err.value)
    for inputs, words in [(Inputs(extend_s=1.0), "--video"), (Inputs(video="a.mp4"), "one of the two"),
                          (Inputs(video="a.mp4", strength=1.5), "0..1")]:
        with pytest.raises(InputError, match=words):
            inputs.check()


@pytest.mark.slow  # two 400-step runs: ~1 min on one core
def test_the_default_mix_leaves_text_to_video_as_good_as_a_text_to_video_run(footage_dir):
    from rushes.train.config import DEFAULT_COND_MIX

    _, toks = _clips(footage_dir)
    x0, seq, pos, text, mask, slots = _pack(toks)

    def t2v_loss(model):  # text-to-video only: no given frame, fixed timesteps and noise
        with torch.no_grad():
            return sum(float(training_loss(lambda x, t: model(x, t, text, mask, pos, seq), x0, seq, slots,
                                           torch.Generator().manual_seed(99), t=torch.full((1, 3), tv))[0])
                       for tv in (0.25, 0.5, 0.75))

    mixed, plain = t2v_loss(_train(toks, DEFAULT_COND_MIX)), t2v_loss(_train(toks, "t2v=1"))
    assert mixed <= 1.05 * plain, (mixed, plain)


def test_given_frames_in_a_causal_video_vae_latent_space(tmp_path):
    from PIL import Image

    from rushes.media.frames import write_video
    from rushes.testing.tiny import save_tiny_vae
    from rushes.train.encoders import Vae
    from rushes.train.inputs import read_still

    vae = Vae(save_tiny_vae(tmp_path / "wan", kind="wan"))  # 4x causal in time, 4x in space
    torch.manual_seed(0)
    model = DiffusionTransformer(ModelConfig(patch_size=(1, 2, 2), hidden_size=32, depth=1, num_heads=2,
                                             in_channels=vae.channels, text_dim=8)).eval()
    cfg, shape = _run_cfg(model), Shape(9, 32, 32, (3, 4, 4))  # 9 frames -> 3 latent frames of 4 x 4 tokens
    rng = np.random.default_rng(1)
    stills = []
    for name in ("a.png", "b.png"):
        stills.append(str(tmp_path / name))
        Image.fromarray((rng.random((48, 40, 3)) * 255).astype(np.uint8)).save(stills[-1])
    given = condition(Inputs(image=stills[0], last_image=stills[1]), shape, cfg, vae)
    assert given.cond.view(3, 16).all(1).tolist() == [True, False, True]
    for still, tokens in zip(stills, (given.tokens[:16], given.tokens[-16:])):  # each still's own latent frame
        alone = patchify(vae.encode(to_video(read_still(still, 32, 32))), (1, 2, 2))[0]
        assert torch.allclose(tokens, alone, atol=1e-5)
    clip = tmp_path / "clip.mp4"
    write_video(str(clip), (rng.random((12, 32, 32, 3)) * 255).astype(np.uint8), FPS, crf=0)
    ext = condition(Inputs(video=str(clip), extend_s=4 / FPS), shape, cfg, vae)  # 5 frames kept: 2 latent frames
    assert ext.cond.sum() == 32 and sorted(ext.keep) == [0, 1, 2, 3, 4]
    out = generate(model, NULL, NULL, shape.grid, 3, 1.0, 1.0, seed=0, given=ext)
    assert torch.equal(out[:32], ext.tokens[:32])
