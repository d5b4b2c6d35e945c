"""Data: manifest join, per-clip size from a token budget, decoding, caching, packing."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rushes.train.config import DataConfig, preset
from rushes.manifests.clips import captioned_clips
from rushes.train.data import plan_clip, prepare, split_validation
from rushes.train.packing import PackLoader, collate, pack_first_fit


def test_training_clips_keep_only_captioned_kept_clips(synth_out):
    clips = captioned_clips(synth_out)
    assert [c.caption for c in clips] == ["a colourful test pattern with moving shapes",
                                          "a mandelbrot fractal zooming in", "vertical colour bars"]
    span, encoded = clips[1], clips[2]
    assert span.path.endswith("src.mp4") and (span.start_s, span.end_s) == (1.0, 2.0)
    assert encoded.path == str(synth_out / "media" / "c.mp4") and encoded.start_s == 0.0
    assert len(captioned_clips(synth_out, limit=2)) == 2


def test_training_clips_names_the_fix_when_nothing_is_captioned(tmp_path):
    from rushes.testing.train_manifests import Clip, write_manifest

    write_manifest(tmp_path, [Clip("/x.mp4", 0, 1, 64, 64, "c", caption_status="error")])
    with pytest.raises(ValueError, match="rushes caption"):
        captioned_clips(tmp_path)


def test_plan_fits_the_token_budget_and_keeps_aspect():
    for w, h in [(1280, 720), (720, 1280), (640, 640), (1920, 200)]:
        plan = plan_clip(w, h, 3.0, fps=8, max_frames=8, clip_tokens=512, patch=(1, 4, 4), max_side_px=512)
        assert plan.tokens <= 512 and plan.frames == 8
        assert plan.tokens > 512 * 0.6  # uses most of the budget
        assert abs(plan.width_px / plan.height_px - w / h) / (w / h) < 0.35
        assert plan.width_px % 4 == 0 and plan.height_px % 4 == 0
    long = plan_clip(640, 360, 3.0, fps=8, max_frames=8, clip_tokens=512, patch=(2, 4, 4), max_side_px=512)
    short = plan_clip(640, 360, 0.5, fps=8, max_frames=8, clip_tokens=512, patch=(2, 4, 4), max_side_px=512)
    assert short.frames == 4 and short.grid[0] == 2  # native duration: fewer tokens, same frame size
    assert (short.width_px, short.height_px) == (long.width_px, long.height_px) and short.tokens < long.tokens
    assert plan_clip(640, 360, 0.1, fps=8, max_frames=8, clip_tokens=512, patch=(2, 4, 4), max_side_px=512) is None
    tiny_src = plan_clip(32, 32, 1.0, fps=8, max_frames=8, clip_tokens=4096, patch=(1, 4, 4), max_side_px=512)
    assert (tiny_src.width_px, tiny_src.height_px) == (32, 32)  # never upscales
    causal = plan_clip(640, 360, 2.0, fps=8, max_frames=16, clip_tokens=4096, patch=(1, 2, 2), max_side_px=512,
                       temporal_factor=4, spatial_factor=8)
    assert causal.frames == 13 and causal.grid[0] == 4  # 1 + 3 * 4 frames -> 4 latent frames


def test_prepare_decodes_embeds_caches_and_skips_bad_clips(synth_out, tiny_t5, tmp_path):
    from rushes.train.encoders import TextEncoder

    cfg = DataConfig(fps=8, max_frames=4, clip_tokens=96, text_encoder=tiny_t5)
    sources = captioned_clips(synth_out)
    broken = dataclasses.replace(sources[0], clip_id="broken", path=str(tmp_path / "missing.mp4"))
    loads = []

    def encoder():
        loads.append(1)
        return TextEncoder(tiny_t5)

    prep = prepare([*sources, broken], cfg, (1, 4, 4), tmp_path / "cache", encoder, lambda: None)
    assert [e.clip_id for e in prep.examples] == [s.clip_id for s in sources]
    assert [s["clip_id"] for s in prep.skipped] == ["broken"] and "missing.mp4" in prep.skipped[0]["error"]
    landscape, portrait = prep.examples[0], prep.examples[2]
    assert landscape.grid[0] == 4 and landscape.grid[2] > landscape.grid[1]  # 96x64 source stays landscape
    assert portrait.grid[1] > portrait.grid[2]
    assert landscape.tokens.shape == (landscape.num_tokens, 3 * 16) and landscape.num_tokens <= 96
    assert -1.0 <= float(landscape.tokens.min()) and float(landscape.tokens.max()) <= 1.0
    assert landscape.text.shape[1] == 32 and not torch.equal(landscape.text[:2], prep.examples[1].text[:2])
    assert prep.channels == 3 and prep.null_text.shape[0] >= 1
    # Second time everything comes from the cache: no encoder load, same tensors.
    loads.clear()
    again = prepare(sources, cfg, (1, 4, 4), tmp_path / "cache", encoder, lambda: None)
    assert loads == [] and torch.equal(again.examples[0].tokens, landscape.tokens)


def test_prepare_in_latent_space_with_a_video_vae(synth_out, tiny_t5, tmp_path):
    from rushes.testing.tiny import save_tiny_vae
    from rushes.train.encoders import TextEncoder, Vae

    vae_path = save_tiny_vae(tmp_path / "wan", kind="wan")
    cfg = DataConfig(fps=8, max_frames=5, clip_tokens=64, text_encoder=tiny_t5, vae=vae_path)
    prep = prepare(captioned_clips(synth_out, limit=1), cfg, (1, 2, 2), tmp_path / "cache",
                   lambda: TextEncoder(tiny_t5), lambda: Vae(vae_path))
    e = prep.examples[0]
    assert prep.channels == 4 and e.grid[0] == 2  # 5 frames -> 2 latent frames (4x causal)
    assert e.tokens.shape[1] == 4 * 2 * 2


def test_packing_fills_the_budget_without_overflow():
    counts = [300, 200, 180, 120, 100, 90, 60, 40, 400, 10]
    packs = pack_first_fit(counts, 512)
    assert sorted(i for p in packs for i in p) == list(range(len(counts)))
    assert all(sum(counts[i] for i in p) <= 512 for p in packs)
    assert len(packs) == -(-sum(counts) // 512)  # as few packs as the total allows here
    with pytest.raises(ValueError, match="batch-tokens"):
        pack_first_fit([600], 512)


def _examples(n):
    from rushes.train.data import Example

    g = torch.Generator().manual_seed(0)
    grids = [(1 + i % 3, 2 + i % 2, 3) for i in range(n)]
    return [Example(f"c{i}", "x", torch.randn(a * b * c, 12, generator=g), (a, b, c),
                    torch.randn(2 + i % 3, 8, generator=g)) for i, (a, b, c) in enumerate(grids)]


def test_loader_covers_each_clip_once_per_epoch_and_resumes_in_place():
    ex = _examples(9)
    loader = PackLoader(ex, budget=40, seed=3)
    per_epoch = len(loader.epoch_packs(0))
    seen = [e.clip_id for _ in range(per_epoch) for e in loader.next()]
    assert sorted(seen) == sorted(e.clip_id for e in ex)
    for _ in range(2):
        loader.next()
    state = loader.state_dict()
    expect = [[e.clip_id for e in loader.next()] for _ in range(5)]
    other = PackLoader(ex, budget=40, seed=3)
    other.load_state_dict(state)
    assert [[e.clip_id for e in other.next()] for _ in range(5)] == expect


def test_collate_builds_slots_positions_and_padding():
    ex = _examples(3)
    batch = collate(ex, pad_multiple=64)
    n = sum(e.num_tokens for e in ex)
    assert batch.x0.shape == (1, 64, 12) and batch.real_tokens == n
    assert (batch.seq[0, n:] == -1).all() and batch.seq[0, :n].tolist() == sum(
        ([s] * e.num_tokens for s, e in enumerate(ex)), [])
    first = ex[0].num_tokens
    assert batch.pos[0, first].tolist() == [0, 0, 0]  # positions restart for the second clip
    assert batch.text_mask[0].sum(-1).tolist() == [e.text.shape[0] for e in ex]


def test_validation_split_is_deterministic_and_disjoint():
    ex = _examples(6)
    train, val = split_validation(ex, 2)
    assert len(val) == 2 and not {e.clip_id for e in train} & {e.clip_id for e in val}
    assert split_validation(ex, 2)[1] == val
    single_train, single_val = split_validation(ex[:1], 1)
    assert single_train == single_val == ex[:1]


def test_presets_validate():
    for name in ("tiny", "small", "base", "large", "xl"):
        cfg = preset(name)
        assert cfg.data.batch_tokens >= cfg.data.clip_tokens
    with pytest.raises(ValueError, match="batch_tokens .* must be >= clip_tokens"):
        DataConfig(clip_tokens=512, batch_tokens=256)
    with pytest.raises(ValueError, match="preset"):
        preset("huge")


@pytest.mark.parametrize("clip_path", ["../outside.mp4", "/etc/passwd", "media/../../outside.mp4"])
def test_a_clip_path_outside_out_is_never_read_and_the_clip_is_skipped(tmp_path, tiny_t5, clip_path):
    from rushes.testing.synth import make_cut_video
    from rushes.testing.train_manifests import Clip, write_manifest

    outside = make_cut_video(tmp_path / "outside.mp4", [1.0], fps=16, size=(64, 64))  # a real, decodable video
    (tmp_path / "out" / "media").mkdir(parents=True)
    inside = make_cut_video(tmp_path / "out" / "media" / "ok.mp4", [1.0], fps=16, size=(64, 64))
    out = write_manifest(tmp_path / "out", [Clip(inside.path, 0.0, 1.0, 64, 64, "inside", clip_path="media/ok.mp4"),
                                            Clip(outside.path, 0.0, 1.0, 64, 64, "edited", clip_path=clip_path)])
    sources = captioned_clips(out)
    cfg = DataConfig(fps=8, max_frames=4, clip_tokens=96, text_encoder=tiny_t5)
    from rushes.train.encoders import TextEncoder

    prep = prepare(sources, cfg, (1, 4, 4), tmp_path / "cache", lambda: TextEncoder(tiny_t5), lambda: None)
    assert [e.clip_id for e in prep.examples] == [s.clip_id for s in sources if s.caption == "inside"]
    (skipped,) = prep.skipped
    assert "clip_path" in skipped["error"] and clip_path in skipped["error"] and "inside it" in skipped["error"]
