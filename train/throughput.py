"""Throughput you can trust: a stopwatch per step phase, and a FLOP model of the transformer for MFU.

:class:`Stopwatch` splits a step into data wait, forward, backward and optimizer. On CUDA a phase's host time is
only its launch time unless the stopwatch synchronises at each lap (``sync=True``, what ``--profile-steps`` asks
for on the steps it times): a synchronisation stalls the queue of kernels, so the default step has none.

The FLOP model counts the matrix multiplications of one forward pass (2 FLOPs per multiply-add) for the real work of a
packed batch: every clip's tokens through the linear layers, self-attention within each clip (n_i^2 pairs,
never the L^2 of the whole pack), and cross-attention to the clip's own caption tokens. Padding tokens and
masked-out pairs are not counted: they are waste, which is what MFU should show. A training step costs
three forward passes (the backward pass two). Norms, activations and RoPE are left out (a few percent).

Use::

    flops = training_flops(cfg.model, clip_tokens=[4096, 2048], caption_tokens=[24, 31])
    mfu = flops / step_seconds / peak_flops(device)   # peak_flops is None where the peak is unknown
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

FREQ_DIM = 256  # width of the sinusoidal timestep embedding (rushes.train.model.TimestepEmbedder)

# Dense bf16 tensor-core peak per device, FLOP/s, from the vendors' data sheets (no sparsity).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "A100": 312e12, "A800": 312e12, "L40S": 362e12,
             "L40": 181e12, "L4": 121e12, "A10G": 70e12, "A10": 125e12, "RTX 4090": 165e12, "RTX 3090": 71e12,
             "B200": 2250e12, "GB200": 2500e12}


def forward_flops(model_cfg, clip_tokens: Sequence[int], caption_tokens: Sequence[int]) -> int:
    """FLOPs of one forward pass over clips of ``clip_tokens`` tokens with captions of ``caption_tokens``."""
    d, p, t = model_cfg.hidden_size, model_cfg.patch_dim, model_cfg.text_dim
    inner = model_cfg.ffn_width
    n, m, s = sum(clip_tokens), sum(caption_tokens), len(clip_tokens)
    attn_pairs = sum(k * k for k in clip_tokens)  # self-attention stays inside each clip
    cross_pairs = sum(k * c for k, c in zip(clip_tokens, caption_tokens))  # each clip to its own caption
    per_block = (2 * n * d * 3 * d  # qkv
                 + 2 * 2 * attn_pairs * d  # q k^T and attention @ v, over all heads
                 + 2 * n * d * d  # self-attention output projection
                 + 2 * n * d * d + 2 * m * d * 2 * d  # cross-attention q, and k v of the caption tokens
                 + 2 * 2 * cross_pairs * d  # cross-attention scores and values
                 + 2 * n * d * d  # cross-attention output projection
                 + 2 * 2 * n * d * inner  # MLP
                 + 2 * s * d * 6 * d)  # adaLN modulation per clip
    embed = (2 * n * p * d  # patch embedding
             + 2 * s * (FREQ_DIM * d + d * d)  # timestep MLP
             + 2 * m * (t * d + d * d)  # caption projection
             + 2 * s * (t * d + d * d))  # pooled caption MLP
    final = 2 * s * d * 2 * d + 2 * n * d * p
    return model_cfg.depth * per_block + embed + final


def training_flops(model_cfg, clip_tokens: Sequence[int], caption_tokens: Sequence[int]) -> int:
    """FLOPs of one training step: forward and backward (twice the forward), 3x :func:`forward_flops`."""
    return 3 * forward_flops(model_cfg, clip_tokens, caption_tokens)


def peak_flops(device) -> float | None:
    """Dense bf16 peak FLOP/s of a CUDA device from :data:`PEAK_BF16`, or None (CPU, unknown GPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16, key=len, reverse=True):  # "H100" before "H10", "L40S" before "L40"
        if key in name:
            return PEAK_BF16[key]
    return None


def batch_flops(model_cfg, batch) -> int:
    """:func:`training_flops` of one :class:`rushes.train.packing.PackedBatch` (its clips and their caption lengths).
    Conditioning tokens (given clean, out of the loss) are not counted: like padding, they are not learned from."""
    tokens = batch.slot_tokens[0].cpu()
    if getattr(batch, "cond", None) is not None:
        valid = (batch.cond[0] & (batch.seq[0] >= 0)).cpu()
        tokens = tokens - torch.zeros_like(tokens).scatter_add(0, batch.seq[0].clamp(min=0).cpu(), valid.long())
    return training_flops(model_cfg, tokens.tolist(), batch.text_mask[0].sum(-1).tolist())


PHASES = ("forward_s", "backward_s", "optimizer_s")  # the compute phases of a step's log line (train/loop.py)


class Stopwatch:
    """Seconds since the last :meth:`lap` (or since it was made); on CUDA with ``sync``, waiting for the kernels
    queued so far first."""

    def __init__(self, device, sync: bool = False):
        self.cuda = sync and torch.device(device).type == "cuda"
        self.t = time.perf_counter()

    def lap(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()  # queued kernels belong to the phase that queued them
        now = time.perf_counter()
        elapsed, self.t = now - self.t, now
        return elapsed
