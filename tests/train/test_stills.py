"""Stills train beside clips as one-frame samples, at their own token budget, mixed by --image-ratio."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from rushes.manifests.clips import captioned_clips
from rushes.media.frames import sample_frames
from rushes.media.images import read_image
from rushes.testing.synth import make_cut_video
from rushes.testing.train_manifests import Clip, write_manifest
from rushes.testing.train_shards import encode_in_process
from rushes.train import shards
from rushes.train.config import preset
from rushes.train.data import Example, prepare
from rushes.train.encoders import TextEncoder
from rushes.train.loop import train
from rushes.train.model import unpatchify
from rushes.train.packing import PackLoader


@pytest.fixture(scope="module")
def mixed_out(tmp_path_factory, footage_dir):
    """OUT with two video clips and three stills: two generated PNGs and a real footage frame as a JPEG."""
    root = tmp_path_factory.mktemp("mixed")
    v = make_cut_video(root / "src.mp4", [1.0, 1.0], fps=16, size=(96, 64))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)).save(root / "noise.png")
    Image.fromarray(np.tile(np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None], (90, 1, 3))).save(root / "ramp.png")
    frame = sample_frames(str(footage_dir / "psd_issue-195-aspect-ratio.mp4"), [3.0], size=(256, 144))[0].rgb
    Image.fromarray(frame).save(root / "doc.jpg", quality=92)
    clips = [Clip(v.path, 0.0, 1.0, 96, 64, "a test pattern"), Clip(v.path, 1.0, 2.0, 96, 64, "a fractal"),
             Clip(str(root / "noise.png"), 0.0, 0.0, 200, 120, "coloured noise", kind="image"),
             Clip(str(root / "ramp.png"), 0.0, 0.0, 160, 90, "a grey ramp", kind="image"),
             Clip(str(root / "doc.jpg"), 0.0, 0.0, 256, 144, "a documentary still", kind="image")]
    return write_manifest(root / "out", clips)


def _cfg(t5, **data):
    return preset("tiny").with_overrides(data={"text_encoder": t5, "max_frames": 4, "clip_tokens": 128,
                                               "image_tokens": 96, "batch_tokens": 512, **data},
                                         train={"steps": 2, "val_every": 100, "log_every": 1})


def test_a_still_is_a_one_frame_sample_at_its_own_budget_and_its_own_pixels(mixed_out, tiny_t5, tmp_path):
    cfg = _cfg(tiny_t5)
    sources = captioned_clips(mixed_out)
    prepared = prepare(sources, cfg.data, cfg.model.patch_size, tmp_path, lambda: TextEncoder(tiny_t5), lambda: None)
    by_id = {e.clip_id: e for e in prepared.examples}
    assert not prepared.skipped
    stills = [s for s in sources if s.still]
    assert len(stills) == 3
    for src in stills:
        ex = by_id[src.clip_id]
        gt, gh, gw = ex.grid
        assert ex.still and gt == 1 and gh * gw <= 96 and gh * gw > 96 // 2  # the image budget, nearly filled
        assert abs(gw / gh - src.width_px / src.height_px) < 0.35  # aspect kept
        video = unpatchify(ex.tokens, ex.grid, cfg.model.patch_size, 3)  # (3, 1, H, W) in [-1, 1]
        got = ((video[:, 0] + 1) * 127.5).round().permute(1, 2, 0).numpy().astype(np.uint8)
        want = read_image(src.path, size=(got.shape[1], got.shape[0]))
        assert np.array_equal(got, want)  # the still's own pixels, in display orientation
    clips = [by_id[s.clip_id] for s in sources if not s.still]
    assert all(e.grid[0] == 4 and not e.still for e in clips)


def _example(i: int, tokens: int, still: bool) -> Example:
    import torch

    return Example(f"{'s' if still else 'c'}{i}", "", torch.zeros(tokens, 1), (1, tokens, 1), torch.zeros(1, 1),
                   kind="image" if still else "video")


def test_image_ratio_sets_the_share_of_still_tokens_and_cycles_through_every_still():
    examples = [_example(i, 200, False) for i in range(6)] + [_example(i, 40, True) for i in range(7)]
    loader = PackLoader(examples, 512, seed=3, image_ratio=0.25)
    seen: Counter = Counter()
    for epoch in range(14):
        items = [loader.examples[i] for i in loader.epoch_items(epoch)]
        still_tokens = sum(e.num_tokens for e in items if e.still)
        clip_tokens = sum(e.num_tokens for e in items if not e.still)
        assert abs(still_tokens / clip_tokens - 0.25) <= 40 / clip_tokens  # within one still
        seen.update(e.clip_id for e in items if e.still)
        packed = sorted(i for p in loader.epoch_packs(epoch) for i in p)
        assert packed == sorted(loader.epoch_items(epoch))  # every drawn sample is packed, once
    assert len(seen) == 7 and max(seen.values()) - min(seen.values()) <= 1  # 14 epochs x 8 stills: each 16 times
    natural = PackLoader(examples, 512, seed=3)
    assert sorted(natural.epoch_items(0)) == list(range(13))  # without a ratio: every still once
    again = PackLoader(examples, 512, seed=3, image_ratio=0.25)
    assert again.epoch_packs(9) == loader.epoch_packs(9)  # an epoch depends on its number alone (resume)


@pytest.mark.parametrize("encoded", [False, True], ids=["on-the-fly", "encodings"])
def test_a_run_trains_clips_and_stills_together(mixed_out, tiny_t5, tmp_path, encoded):
    import shutil

    out = shutil.copytree(mixed_out, tmp_path / "out")
    cfg = _cfg(tiny_t5, image_ratio=0.5, val_clips=0)
    if encoded:
        folder = encode_in_process(out, cfg)
        rows = [r for p in shards.shard_paths(folder) for r in shards.iter_rows(p, ["clip_id", "status", "grid"])]
        assert len(rows) == 5 and all(r["status"] == "ok" for r in rows)
        assert sorted(r["grid"][0] for r in rows) == [1, 1, 1, 4, 4]
    result = train(out, tmp_path / "run", cfg, echo=lambda s: None)
    assert result.num_clips == 5 and len(result.losses) == 2 and all(np.isfinite(result.losses))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["clips"] >= 1
