"""The model: patches round-trip, and a packed sequence computes exactly what each clip computes alone."""

from __future__ import annotations

import pytest
import torch

from rushes.train.config import ModelConfig
from rushes.train.model import DiffusionTransformer, grid_positions, patchify, unpatchify


def _clips():
    # Different lengths, sizes and caption lengths in one pack.
    g = torch.Generator().manual_seed(0)
    grids = [(2, 3, 4), (1, 2, 2), (3, 2, 5)]
    cap_lens = [3, 5, 1]
    patch_dim = 3 * 1 * 2 * 2
    clips = []
    for grid, lt in zip(grids, cap_lens):
        n = grid[0] * grid[1] * grid[2]
        clips.append({"x": torch.randn(n, patch_dim, generator=g, dtype=torch.float64), "grid": grid,
                      "text": torch.randn(lt, 16, generator=g, dtype=torch.float64),
                      "t": float(torch.rand(1, generator=g))})
    return clips


def _model():
    torch.manual_seed(0)
    cfg = ModelConfig(patch_size=(1, 2, 2), hidden_size=32, depth=2, num_heads=2, in_channels=3, text_dim=16)
    model = DiffusionTransformer(cfg).double()
    # adaLN-zero starts every block as the identity; randomise so the test exercises every path.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _run(model, clips, pad=0):
    n = sum(c["x"].shape[0] for c in clips)
    lt = max(c["text"].shape[0] for c in clips)
    x = torch.zeros(1, n + pad, clips[0]["x"].shape[1], dtype=torch.float64)
    pos = torch.zeros(1, n + pad, 3, dtype=torch.long)
    seq = torch.full((1, n + pad), -1)
    text = torch.zeros(1, len(clips), lt, 16, dtype=torch.float64)
    mask = torch.zeros(1, len(clips), lt, dtype=torch.bool)
    at = 0
    for s, c in enumerate(clips):
        k = c["x"].shape[0]
        x[0, at:at + k], pos[0, at:at + k], seq[0, at:at + k] = c["x"], grid_positions(c["grid"]), s
        text[0, s, :c["text"].shape[0]] = c["text"]
        mask[0, s, :c["text"].shape[0]] = True
        at += k
    t = torch.tensor([[c["t"] for c in clips]], dtype=torch.float64)
    return model(x, t, text, mask, pos, seq)


def test_patchify_round_trip():
    video = torch.randn(3, 4, 6, 8)
    tokens, grid = patchify(video, (2, 2, 4))
    assert grid == (2, 3, 2) and tokens.shape == (12, 3 * 2 * 2 * 4)
    assert torch.equal(unpatchify(tokens, grid, (2, 2, 4), 3), video)
    with pytest.raises(ValueError, match="patch size"):
        patchify(torch.randn(3, 3, 6, 8), (2, 2, 4))


def test_packed_equals_unpacked_outputs_and_gradients():
    clips = _clips()
    model = _model()
    weights = [torch.randn(c["x"].shape, dtype=torch.float64) for c in clips]

    # Each clip alone.
    model.zero_grad()
    alone = [_run(model, [c])[0] for c in clips]
    sum((o * w).sum() for o, w in zip(alone, weights)).backward()
    grads_alone = {n: p.grad.clone() for n, p in model.named_parameters()}

    # All clips packed in one sequence, with padding at the end.
    model.zero_grad()
    packed = _run(model, clips, pad=7)[0]
    sizes = [c["x"].shape[0] for c in clips]
    parts = list(packed[:sum(sizes)].split(sizes))
    sum((o * w).sum() for o, w in zip(parts, weights)).backward()

    for a, p in zip(alone, parts):
        torch.testing.assert_close(p, a, rtol=1e-10, atol=1e-10)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads_alone[name], rtol=1e-9, atol=1e-10, msg=name)
    assert torch.isfinite(packed).all(), "padding rows must stay finite"


def test_clips_do_not_see_each_other():
    clips = _clips()
    model = _model()
    base = _run(model, clips)[0]
    changed = [dict(c) for c in clips]
    changed[1] = dict(changed[1], text=torch.randn_like(changed[1]["text"]), x=torch.randn_like(changed[1]["x"]),
                      t=0.9)
    out = _run(model, changed)[0]
    n0, n1 = clips[0]["x"].shape[0], clips[1]["x"].shape[0]
    torch.testing.assert_close(out[:n0], base[:n0])  # clip 0 unaffected by clip 1's caption, content, timestep
    torch.testing.assert_close(out[n0 + n1:], base[n0 + n1:])
    assert not torch.allclose(out[n0:n0 + n1], base[n0:n0 + n1])


def test_activation_checkpointing_gives_same_gradients():
    clips = _clips()
    model = _model()
    _run(model, clips)[0].pow(2).sum().backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    object.__setattr__(model.cfg, "checkpointing", True)
    _run(model, clips)[0].pow(2).sum().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref[n], msg=n)


def _model_with(attention):
    model = _model()
    object.__setattr__(model.cfg, "attention", attention)
    return model


def test_block_diagonal_attention_equals_the_dense_mask_outputs_and_gradients():
    # The whole model, float64: the per-clip kernel against the L x L masked reference.
    clips = _clips()
    weights = torch.randn(1, sum(c["x"].shape[0] for c in clips) + 5, 12, dtype=torch.float64)
    results = {}
    for kernel in ("dense", "segments"):
        model = _model_with(kernel)
        out = _run(model, clips, pad=5)
        (out * weights).sum().backward()
        results[kernel] = out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.testing.assert_close(results["segments"][0], results["dense"][0], rtol=1e-12, atol=1e-12)
    for name, grad in results["dense"][1].items():
        torch.testing.assert_close(results["segments"][1][name], grad, rtol=1e-10, atol=1e-12, msg=name)


def test_packed_attention_kernels_agree_on_a_batch_of_packs():
    # Two rows packed differently (clip sizes, padding), q/k/v gradients included; clips of equal length (4 and
    # 3 tokens, within a row and across rows) share one batched attention call.
    from rushes.train.model import PackedAttention

    seq = torch.tensor([[0] * 4 + [1] * 3 + [2] * 4 + [3] * 3 + [-1] * 2, [0] * 9 + [1] * 4 + [2] * 3])  # (2, 16)
    g = torch.Generator().manual_seed(0)
    qkv = [torch.randn(2, 3, 16, 8, generator=g, dtype=torch.float64) for _ in range(3)]
    outs, grads = {}, {}
    for kernel in ("dense", "segments", "auto"):
        leaves = [t.clone().requires_grad_(True) for t in qkv]
        outs[kernel] = PackedAttention(seq, kernel)(*leaves)
        outs[kernel].pow(2).sum().backward()
        grads[kernel] = [t.grad for t in leaves]
    for kernel in ("segments", "auto"):
        torch.testing.assert_close(outs[kernel], outs["dense"], rtol=1e-12, atol=1e-12)
        for a, b in zip(grads[kernel], grads["dense"]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="contiguous"):
        PackedAttention(torch.tensor([[0, 0, 1, 0]]), "segments")
    with pytest.raises(ValueError, match="attention"):
        ModelConfig(attention="flash")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_varlen_attention_matches_dense_on_cuda_in_bf16():
    from rushes.train.model import PackedAttention

    seq = torch.tensor([[0] * 300 + [1] * 200 + [2] * 500 + [-1] * 24], device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    qkv = [torch.randn(1, 4, 1024, 64, generator=g, device="cuda", dtype=torch.bfloat16) for _ in range(3)]
    dense = PackedAttention(seq, "dense")(*qkv).float()
    varlen = PackedAttention(seq, "varlen")(*qkv).float()
    torch.testing.assert_close(varlen, dense, rtol=2e-2, atol=2e-2)
