"""The dense-mask cross-attention reference, for tests and ``bench/train.py`` only (never the model's path).

The model's cross-attention (``rushes.train.model.PackedAttention.cross``) computes each clip's tokens against
its own caption only. The reference below is what it replaced: every token of the pack scored against every
caption token of the pack through a (B, 1, L, S*Lt) boolean mask, S times the real work for S clips.

Use::

    from rushes.testing.attention import cross_attention_mask, dense_cross_attention
    out = dense_cross_attention(block.cross, x, text_ctx, seq, text_mask)   # (B, L, D), padding rows included
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_attention_mask(seq: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, S*Lt) True = may attend, from slots ``seq`` (B, L) and ``text_mask`` (B, S, Lt).

    A token sees its own clip's valid caption tokens; padding sees every caption token, keeping its softmax
    finite (its output is thrown away; the model's kernel gives padding zeros instead).
    """
    b, s, lt = text_mask.shape
    text_slot = torch.arange(s, device=seq.device).repeat_interleave(lt)  # (M,) slot of each caption token
    cross = (seq[:, :, None] == text_slot[None, None, :]) & text_mask.reshape(b, 1, s * lt)  # (B, L, M)
    cross = cross | (seq < 0)[:, :, None]  # (B, L, M) padding rows attend to all, keeping softmax finite
    return cross[:, None]  # (B, 1, L, M)


def dense_cross_attention(cross, x: torch.Tensor, ctx: torch.Tensor, seq: torch.Tensor,
                          text_mask: torch.Tensor) -> torch.Tensor:
    """``cross`` (a ``rushes.train.model.CrossAttention``) over x (B, L, D) and the whole padded caption context
    ctx (B, S*Lt, D), through the dense mask: (B, L, D)."""
    b, n, d = x.shape
    hd = d // cross.heads
    q = cross.q_norm(cross.q(x).reshape(b, n, cross.heads, hd)).transpose(1, 2)  # (B, H, L, hd)
    k, v = cross.kv(ctx).reshape(b, ctx.shape[1], 2, cross.heads, hd).permute(2, 0, 3, 1, 4)  # each (B, H, M, hd)
    mask = cross_attention_mask(seq, text_mask)  # (B, 1, L, M)
    out = F.scaled_dot_product_attention(q, cross.k_norm(k), v, attn_mask=mask)  # (B, H, L, hd)
    return cross.proj(out.transpose(1, 2).reshape(b, n, d))  # (B, L, D)
