"""Proof that the trainer learns (issue 5, item 7): the tiny preset overfits real clips of ../shared/footage.

The training loss falls at least 5x from its start, and a sample for a training caption is far closer
(MSE) to its clip than the untrained model's sample from the same noise, and closer to its own clip than
to the other clip (the caption, not chance, picks the clip; both clips are 16:9, so they share one token grid
and the comparison always runs). Samples use the raw weights: after a few
hundred steps the EMA (decay 0.99) still averages in the early, untrained weights. Every clip trains
(``val_clips=0``); the default split would hold one of two clips out.
"""

from __future__ import annotations

import numpy as np
import torch

from rushes.train.config import preset
from rushes.manifests.clips import captioned_clips
from rushes.train.data import decode_clip, plan_clip
from rushes.train.encoders import TextEncoder
from rushes.train.loop import build_model, train
from rushes.train.model import unpatchify
from rushes.train.sample import generate, load_run

CLIPS = [("psd_testvideo.mp4", 1.5, 2.5, 1280, 720, "a street scene with parked cars"),
         ("mpy_chaplin.mp4", 1.0, 2.0, 640, 360, "a black and white film of a man in a hat")]


def _targets(out, cfg) -> list:
    """(caption, plan, clip (3, T, H, W) as trained on) of every clip; every sample is compared with every
    other clip, which needs one token grid: fail, never skip the comparison, when the clips do not share it."""
    d = cfg.data
    targets = []
    for src in captioned_clips(out):
        plan = plan_clip(src.width_px, src.height_px, src.end_s - src.start_s, d.fps, d.max_frames, d.clip_tokens,
                         cfg.model.patch_size, d.max_side_px)
        targets.append((src.caption, plan, decode_clip(src, plan, d.fps)))
    assert len({plan.grid for _, plan, _ in targets}) == 1, f"clips differ in grid: {[p.grid for _, p, _ in targets]}"
    return targets


def _overfit(footage_dir, tmp_path, tiny_t5, n_clips, steps):
    from rushes.testing.train_manifests import Clip, write_manifest

    out = write_manifest(tmp_path / "out", [Clip(str(footage_dir / f), s, e, w, h, cap)
                                            for f, s, e, w, h, cap in CLIPS[:n_clips]])
    cfg = preset("tiny").with_overrides(data={"text_encoder": tiny_t5, "caption_dropout": 0.0, "val_clips": 0},
                                        train={"steps": steps, "val_every": steps, "checkpoint_every": steps})
    targets = _targets(out, cfg)
    result = train(out, tmp_path / "run", cfg, echo=lambda s: None)
    losses = np.array(result.losses)
    first, last = losses[:10].mean(), losses[-10:].mean()
    assert first / last >= 5.0, f"training loss fell only {first / last:.2f}x ({first:.3f} -> {last:.3f})"

    run_cfg, trained = load_run(tmp_path / "run", "cpu", use_ema=False)
    untrained = build_model(run_cfg, torch.device("cpu")).eval()
    enc = TextEncoder(tiny_t5)
    emb, mask = enc.encode([""])  # the empty caption, unused at guidance 1
    null = emb[0][mask[0]]
    for caption, plan, clip in targets:
        emb, mask = enc.encode([caption])
        mse = {}
        for name, model in (("trained", trained), ("untrained", untrained)):
            tokens = generate(model, emb[0][mask[0]], null, plan.grid, steps=20, guidance=1.0, shift=1.0, seed=7)
            video = unpatchify(tokens, plan.grid, run_cfg.model.patch_size, 3).clamp(-1, 1)
            mse[name] = float((video - clip).pow(2).mean())
            if name == "trained":
                mse["other clips"] = [float((video - c).pow(2).mean()) for cap, _, c in targets if cap != caption]
        assert mse["trained"] < 0.25 * mse["untrained"], (caption, mse)
        assert len(mse["other clips"]) == n_clips - 1
        assert all(mse["trained"] < 0.5 * m for m in mse["other clips"]), (caption, mse)


def test_tiny_preset_overfits_two_real_clips(footage_dir, tmp_path, tiny_t5):
    _overfit(footage_dir, tmp_path, tiny_t5, n_clips=2, steps=300)
