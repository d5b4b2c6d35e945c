"""The trainer's hot path: per-clip cross-attention equals the dense-mask reference (float64, outputs and
gradients), the pack's index is built once per forward pass, RoPE stays in float32 under bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from rushes.testing.attention import dense_cross_attention
from rushes.train import model as model_mod
from rushes.train.config import ModelConfig
from rushes.train.model import CrossAttention, DiffusionTransformer, PackedAttention, Rope3D, apply_rope

D, HEADS, LT = 32, 4, 5


def _pack(device="cpu", dtype=torch.float64, dim=D, scale=1):
    """Two rows packed differently. Row 0: clips of 4, 4, 4 and 3 tokens (the first two with captions of equal
    length: one batched call; the third of the same size but another caption length), then padding. Row 1: no
    padding, one clip alone in its size. Captions with holes in their mask (the gather must skip them)."""
    seq = torch.tensor([[0] * 4 + [1] * 4 + [2] * 4 + [3] * 3 + [-1] * 3, [0] * 11 + [1] * 7],
                       device=device).repeat_interleave(scale, dim=1)  # scale: every segment that many times longer
    text_mask = torch.tensor([[[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 0, 1, 1, 1], [0, 0, 1, 0, 0]],
                              [[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]],
                             dtype=torch.bool, device=device)  # (B=2, S=4, Lt=5); row 1 uses 2 slots
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, seq.shape[1], dim, generator=g, dtype=dtype).to(device)
    ctx = torch.randn(2, 4 * LT, dim, generator=g, dtype=dtype).to(device)
    return seq, text_mask, x, ctx


def _cross_module(dtype=torch.float64, device="cpu", dim=D, heads=HEADS):
    torch.manual_seed(0)
    cross = CrossAttention(dim, heads).to(device=device, dtype=dtype)
    with torch.no_grad():
        for p in cross.parameters():
            p.add_(0.1 * torch.randn_like(p))  # norms away from 1, so their gradients are exercised
    return cross


def _per_clip(cross, x, ctx, seq, text_mask, kernel="auto"):
    attend = PackedAttention(seq, kernel, text_mask)
    return cross(x, attend.caption_tokens(ctx.reshape(*text_mask.shape, -1)), attend)


def test_per_clip_cross_attention_equals_the_dense_mask_outputs_and_gradients():
    seq, text_mask, x0, ctx0 = _pack()
    real = (seq >= 0)[..., None]  # (B, L, 1): the loss reads real tokens only, as training_loss does
    weights = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    results = {}
    for name, run in (("dense", dense_cross_attention), ("per_clip", _per_clip)):
        cross = _cross_module()
        x, ctx = x0.clone().requires_grad_(True), ctx0.clone().requires_grad_(True)
        out = run(cross, x, ctx, seq, text_mask)
        (out * weights * real).sum().backward()
        grads = {"x": x.grad, "ctx": ctx.grad, **{n: p.grad for n, p in cross.named_parameters()}}
        results[name] = out.detach(), grads
    (dense, dense_grads), (ours, our_grads) = results["dense"], results["per_clip"]
    torch.testing.assert_close(ours * real, dense * real, rtol=1e-12, atol=1e-12)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-10, atol=1e-12, msg=name)
    pad = ours[0, 15:] - _cross_module().proj.bias  # padding: zero attention output (only proj's bias)
    assert pad.abs().max() == 0
    assert our_grads["ctx"][1, LT + 1:].abs().max() == 0  # masked-out and unused caption tokens get no gradient


def test_a_clip_sees_only_its_own_caption():
    seq, text_mask, x, ctx = _pack()
    cross = _cross_module()
    base = _per_clip(cross, x, ctx, seq, text_mask)
    changed = ctx.clone()
    changed[0, LT:2 * LT] += 1.0  # slot 1's caption of row 0
    out = _per_clip(cross, x, changed, seq, text_mask)
    torch.testing.assert_close(out[0, :4], base[0, :4], rtol=0, atol=0)
    torch.testing.assert_close(out[0, 8:], base[0, 8:], rtol=0, atol=0)
    torch.testing.assert_close(out[1], base[1], rtol=0, atol=0)
    assert not torch.allclose(out[0, 4:8], base[0, 4:8])


def test_a_clip_without_a_caption_token_is_refused():
    seq, text_mask, _, _ = _pack()
    text_mask[0, 2] = False
    with pytest.raises(ValueError, match="slot 2 of pack 0 has no caption token"):
        PackedAttention(seq, "auto", text_mask)


def test_the_pack_index_is_built_once_per_forward_not_per_block(monkeypatch):
    built = []
    real = model_mod._to_device
    monkeypatch.setattr(model_mod, "_to_device", lambda index, device: built.append(sorted(index)) or real(index, device))
    cfg = ModelConfig(patch_size=(1, 2, 2), hidden_size=32, depth=3, num_heads=2, in_channels=3, text_dim=16)
    seq, text_mask, _, _ = _pack()
    model = DiffusionTransformer(cfg)
    g = torch.Generator().manual_seed(0)
    out = model(torch.randn(2, 18, cfg.patch_dim, generator=g), torch.rand(2, 4, generator=g),
                torch.randn(2, 4, LT, 16, generator=g), text_mask, torch.zeros(2, 18, 3, dtype=torch.long), seq)
    out.sum().backward()
    assert built == [["cu", "cu_k", "cu_q", "q", "text"]]  # one copy: self and cross cu_seqlens, the gathers


def test_rope_angles_stay_float32_under_bf16_autocast():
    rope = Rope3D(16)
    pos = torch.stack(torch.meshgrid(torch.arange(3), torch.arange(40), torch.arange(100), indexing="ij"),
                      -1).reshape(1, -1, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cos, sin = rope(pos, torch.bfloat16)
        q = torch.randn(1, 2, pos.shape[1], 16).to(torch.bfloat16)
        rotated = apply_rope(q, cos, sin)
    assert cos.dtype == sin.dtype == torch.float32 and rotated.dtype == torch.bfloat16
    exact_cos, exact_sin = rope(pos, torch.float64)
    assert (cos.double() - exact_cos).abs().max() < 1e-6  # bf16 cos/sin: rounded by up to ~2e-3
    torch.testing.assert_close(rotated, apply_rope(q.float(), exact_cos.float(), exact_sin.float()).to(torch.bfloat16))


def _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, **_):
    """``varlen_attn``'s contract in plain torch: segment i of q (rows cu_q[i]:cu_q[i+1]) attends to segment i of
    k, v; the longest segments are max_q and max_k tokens."""
    out, cu_q, cu_k = [], cu_q.tolist(), cu_k.tolist()
    assert max_q == max(b - a for a, b in zip(cu_q, cu_q[1:])) and max_k == max(b - a for a, b in zip(cu_k, cu_k[1:]))
    assert cu_q[-1] == q.shape[0] and cu_k[-1] == k.shape[0]
    for (a, b), (c, d) in zip(zip(cu_q, cu_q[1:]), zip(cu_k, cu_k[1:])):
        seg = [t.transpose(0, 1)[None] for t in (q[a:b], k[c:d], v[c:d])]  # (1, H, n, hd)
        out.append(torch.nn.functional.scaled_dot_product_attention(*seg)[0].transpose(0, 1))
    return torch.cat(out)


@pytest.mark.parametrize("rows", [1, 2])
def test_the_varlen_path_indexes_the_pack_as_the_dense_references(monkeypatch, rows):
    # The CUDA path's own code (cu_seqlens, the real-token slice or gather, the scatter back) run on CPU in
    # float64 with varlen_attn replaced by its contract in plain torch: self- and cross-attention both equal the
    # dense references. The kernel itself is checked on a GPU (the gpu tests below).
    import torch.nn.attention.varlen as varlen

    monkeypatch.setattr(varlen, "varlen_attn", _reference_varlen)
    monkeypatch.setattr(PackedAttention, "_use_varlen", lambda self, q: True)
    monkeypatch.setattr(model_mod, "_half", lambda q: q.dtype)
    seq, text_mask, x0, ctx0 = (t[:rows] for t in _pack())
    real, results = (seq >= 0)[..., None], []
    for run in (_per_clip, dense_cross_attention):
        cross = _cross_module()
        x, ctx = x0.clone().requires_grad_(True), ctx0.clone().requires_grad_(True)
        out = run(cross, x, ctx, seq, text_mask) * real
        out.pow(2).sum().backward()
        results.append([out, x.grad, ctx.grad, *(p.grad for p in cross.parameters())])
    for ours, dense in zip(*results):
        torch.testing.assert_close(ours, dense, rtol=1e-10, atol=1e-12)
    q, k, v = torch.randn(3, rows, HEADS, seq.shape[1], 8, dtype=torch.float64)
    torch.testing.assert_close(PackedAttention(seq, "varlen", text_mask)(q, k, v),
                               PackedAttention(seq, "dense")(q, k, v), rtol=1e-12, atol=1e-12)


_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@_CUDA
@pytest.mark.parametrize("rows", [1, 2])
def test_varlen_cross_attention_matches_the_dense_reference_on_cuda_in_bf16(rows):
    # rows 1: the real tokens are one slice (no gather); rows 2: padding between the rows (gather, scatter).
    # Flash-sized heads (4 x 64) and clips of 100-1100 tokens.
    seq, text_mask, x, ctx = (t[:rows] for t in _pack("cuda", torch.float32, dim=256, scale=100))
    cross = _cross_module(torch.float32, "cuda", dim=256, heads=4)
    real = (seq >= 0)[..., None]
    outs, grads = {}, {}
    for name, run in (("dense", dense_cross_attention), ("varlen", _per_clip)):
        cross.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = run(cross, x, ctx, seq, text_mask)
        (out.float() * real).pow(2).sum().backward()
        outs[name], grads[name] = out.float() * real, {n: p.grad.clone() for n, p in cross.named_parameters()}
    torch.testing.assert_close(outs["varlen"], outs["dense"], rtol=2e-2, atol=2e-2)
    for n, g in grads["dense"].items():
        torch.testing.assert_close(grads["varlen"][n], g, rtol=5e-2, atol=5e-2, msg=n)
