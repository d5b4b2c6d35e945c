"""Wan 2.x in the packed trainer, proved equal to diffusers' WanTransformer3DModel in float64 (issue 23 targets:
max abs diff <= 1e-10 unpacked and packed), loaded through from_pretrained(folder) as a hub id would be."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from rushes.testing.tiny import save_tiny_wan_transformer, tiny_wan_transformer
from rushes.testing.wan import diffusers_on_clip, rushes_on_clips
from rushes.train.config import ModelConfig, preset
from rushes.train.wan import (InitError, WanTransformer, build_transformer, init_run_config, model_config,
                              transformer_config)

TOL = 1e-10


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory) -> str:
    return save_tiny_wan_transformer(tmp_path_factory.mktemp("wan") / "tiny-wan")


def _load(folder: str, **model) -> tuple[WanTransformer, object]:
    """rushes' model from the folder (the --init path) and diffusers' own load of it, both float64."""
    from diffusers import WanTransformer3DModel

    config, sub = transformer_config(folder)
    cfg = model_config(config, ModelConfig(**model), folder, sub)
    ours = build_transformer(cfg).double().eval()
    # .double(): from_pretrained keeps diffusers' _keep_in_fp32_modules (time_embedder, norms, scale_shift_table)
    # in float32 even for torch_dtype=float64; the proof runs every weight of both models in float64
    ref = WanTransformer3DModel.from_pretrained(folder, torch_dtype=torch.float64).double().eval()
    return ours, ref


def _clips(channels=4, text_dim=32):
    g = torch.Generator().manual_seed(1)
    out = []
    for (t, h, w), lt, tv in [((3, 4, 6), 5, 0.73), ((1, 2, 2), 1, 0.05), ((2, 6, 4), 9, 0.5), ((4, 2, 8), 3, 0.91)]:
        out.append({"video": torch.randn(channels, t, h, w, generator=g, dtype=torch.float64),
                    "text": torch.randn(lt, text_dim, generator=g, dtype=torch.float64), "t": tv})
    return out


def test_forward_equals_diffusers_on_one_clip(wan_dir):
    ours, ref = _load(wan_dir)
    for clip in _clips():
        got, want = rushes_on_clips(ours, [clip], pad=0)[0], diffusers_on_clip(ref, clip)
        assert want.abs().max() > 0.1  # a real output, not a zero path
        assert (got - want).abs().max() <= TOL


@pytest.mark.parametrize("kernel", ["segments", "dense"])
def test_packed_clips_equal_diffusers_on_each_clip_alone(wan_dir, kernel):
    ours, ref = _load(wan_dir, attention=kernel)
    clips = _clips()
    for got, clip in zip(rushes_on_clips(ours, clips), clips):
        assert (got - diffusers_on_clip(ref, clip)).abs().max() <= TOL


def test_no_cross_attention_norm_and_other_patch(tmp_path):
    folder = save_tiny_wan_transformer(tmp_path / "w", cross_attn_norm=False, patch=(1, 2, 2), heads=3, head_dim=12,
                                       in_channels=2, text_dim=8, layers=1)
    ours, ref = _load(folder)
    clip = {"video": torch.randn(2, 2, 4, 6, dtype=torch.float64), "text": torch.randn(4, 8, dtype=torch.float64),
            "t": 0.3}
    assert (rushes_on_clips(ours, [clip])[0] - diffusers_on_clip(ref, clip)).abs().max() <= TOL


def test_state_dict_is_diffusers_and_round_trips(wan_dir):
    """Loading then exporting unchanged gives back the very tensors of the folder (names, shapes, values)."""
    from pathlib import Path

    ours, _ = _load(wan_dir)
    saved = load_file(str(next(Path(wan_dir).glob("*.safetensors"))))
    mine = ours.float().state_dict()
    assert mine.keys() == saved.keys()
    for k in saved:
        assert torch.equal(mine[k], saved[k]), k


def test_init_run_config_from_pipeline_and_errors(tmp_path, wan_dir):
    cfg = init_run_config(preset("tiny"), wan_dir)
    m = cfg.model
    assert (m.arch, m.hidden_size, m.num_heads, m.depth, m.ffn_width, m.in_channels, m.text_dim) == \
        ("wan", 32, 2, 2, 64, 4, 32)
    assert cfg.data.max_text_tokens == 512 and cfg.data.text_encoder == preset("tiny").data.text_encoder  # bare folder
    with pytest.raises(InitError, match="no diffusers Wan transformer config"):
        transformer_config(str(tmp_path / "missing"))
    i2v = tiny_wan_transformer()
    i2v.register_to_config(image_dim=16)
    i2v.save_pretrained(tmp_path / "i2v")
    with pytest.raises(InitError, match="image-to-video"):
        transformer_config(str(tmp_path / "i2v"))
