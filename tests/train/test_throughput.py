"""The FLOP model behind MFU, against a hand count and against torch's own FLOP counter."""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from rushes.train.config import ModelConfig
from rushes.train.model import DiffusionTransformer, grid_positions
from rushes.train.throughput import forward_flops, training_flops


def test_flop_model_matches_a_hand_count():
    # hidden 16, 1 block, MLP 2x, 1-channel 1x1x1 patches, text width 8; one clip of 3 tokens, caption of 2.
    cfg = ModelConfig(patch_size=(1, 1, 1), hidden_size=16, depth=1, num_heads=2, mlp_ratio=2.0, in_channels=1,
                      text_dim=8)
    block = (2 * 3 * 16 * 48  # qkv
             + 4 * 3 * 3 * 16  # q k^T and attention @ v: 3 x 3 pairs
             + 2 * 3 * 16 * 16  # output projection
             + 2 * 3 * 16 * 16 + 2 * 2 * 16 * 32  # cross q; k, v of 2 caption tokens
             + 4 * 3 * 2 * 16  # cross scores and values: 3 x 2 pairs
             + 2 * 3 * 16 * 16  # cross output projection
             + 2 * 2 * 3 * 16 * 32  # MLP 16 -> 32 -> 16
             + 2 * 16 * 96)  # adaLN
    embed = 2 * 3 * 1 * 16 + 2 * (256 * 16 + 16 * 16) + 2 * 2 * (8 * 16 + 16 * 16) + 2 * (8 * 16 + 16 * 16)
    final = 2 * 16 * 32 + 2 * 3 * 16 * 1
    assert forward_flops(cfg, [3], [2]) == block + embed + final == 33664
    assert training_flops(cfg, [3], [2]) == 3 * 33664


def test_flop_model_matches_torch_flop_counter_and_counts_attention_per_clip():
    cfg = ModelConfig(patch_size=(1, 2, 2), hidden_size=64, depth=2, num_heads=4, in_channels=3, text_dim=32)
    model = DiffusionTransformer(cfg)

    def counted(grids, caption_lengths):
        n = [a * b * c for a, b, c in grids]
        seq = torch.cat([torch.full((k,), i) for i, k in enumerate(n)])[None]
        pos = torch.cat([grid_positions(g) for g in grids])[None]
        mask = torch.tensor([[[j < c for j in range(max(caption_lengths))] for c in caption_lengths]])
        text = torch.randn(1, len(grids), max(caption_lengths), 32)
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:  # attention as bmm
            model(torch.randn(1, sum(n), cfg.patch_dim), torch.rand(1, len(grids)), text, mask, pos, seq)
        return counter.get_total_flops()

    # One clip: what the model computes is exactly the real work.
    assert forward_flops(cfg, [24], [5]) == counted([(2, 3, 4)], [5])
    assert forward_flops(cfg, [40], [7]) == counted([(2, 4, 5)], [7])
    # Packed: attention is counted per clip, so the model's FLOPs add up clip by clip ...
    packed = forward_flops(cfg, [24, 40], [5, 7])
    assert packed == forward_flops(cfg, [24], [5]) + forward_flops(cfg, [40], [7])
    # ... and are exactly what the packed forward computes: self-attention over each segment, cross-attention of
    # each clip to its own caption's real tokens (no tokens x all-captions mask, no padded caption token projected).
    assert packed == counted([(2, 3, 4), (2, 4, 5)], [5, 7])
