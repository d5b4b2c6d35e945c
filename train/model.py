"""A diffusion transformer over spacetime patches that takes several clips packed in one sequence.

Shapes: B packed sequences of L tokens; a sequence holds up to S clips (slots). Every token carries
the slot of its clip (``seq``, -1 for padding) and its (t, h, w) patch position inside that clip
(``pos``, restarting at 0 for every clip). Attention is block-diagonal: a token attends only to tokens
of its own clip, and cross-attends only to its own clip's caption tokens. The timestep is per clip, and
per token where ``cond`` marks conditioning tokens (the frames of a still to animate, a clip to extend): those are
given clean, at t = 0, as LTX-Video and Wan 2.2 TI2V do (:func:`token_slots`). So a packed sequence computes exactly what each clip would compute alone (tests/train/test_model.py).

Use::

    model = DiffusionTransformer(cfg.model)            # cfg.model: rushes.train.config.ModelConfig
    tokens, grid = patchify(video, cfg.model.patch_size)  # video (C, T, H, W) -> (N, patch_dim)
    v = model(x, t, text, text_mask, pos, seq)         # velocity for every token, (B, L, patch_dim)
    v = model(x, t, text, text_mask, pos, seq, cond)   # cond (B, L) bool: those tokens clean, at t = 0
    video = unpatchify(v[0, :N], grid, cfg.model.patch_size, C)

This module imports torch only (tests/test_layout.py holds that).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


# ---------------------------------------------------------------- patches


def patchify(video: torch.Tensor, patch_size: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Cut a (C, T, H, W) video into flattened spacetime patches.

    Returns tokens (gt*gh*gw, C*pt*ph*pw) in (t, h, w) raster order and the grid (gt, gh, gw).
    T, H and W must divide by the patch size.
    """
    c, t, h, w = video.shape
    pt, ph, pw = patch_size
    if t % pt or h % ph or w % pw:
        raise ValueError(f"video of shape {(c, t, h, w)} does not divide by patch size {patch_size}")
    gt, gh, gw = t // pt, h // ph, w // pw
    x = video.reshape(c, gt, pt, gh, ph, gw, pw)  # (C, gt, pt, gh, ph, gw, pw)
    x = x.permute(1, 3, 5, 0, 2, 4, 6)  # (gt, gh, gw, C, pt, ph, pw)
    return x.reshape(gt * gh * gw, c * pt * ph * pw), (gt, gh, gw)


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int, int], patch_size: tuple[int, int, int],
               channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: (N, C*pt*ph*pw) tokens -> (C, T, H, W) video."""
    gt, gh, gw = grid
    pt, ph, pw = patch_size
    x = tokens.reshape(gt, gh, gw, channels, pt, ph, pw)  # (gt, gh, gw, C, pt, ph, pw)
    x = x.permute(3, 0, 4, 1, 5, 2, 6)  # (C, gt, pt, gh, ph, gw, pw)
    return x.reshape(channels, gt * pt, gh * ph, gw * pw)


def grid_positions(grid: tuple[int, int, int], device=None) -> torch.Tensor:
    """(N, 3) integer (t, h, w) position of every token of a clip, in patchify order."""
    axes = [torch.arange(n, device=device) for n in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


# ---------------------------------------------------------------- embeddings


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps in [0, 1] (scaled by 1000 as in DiT): (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[..., None] * freqs  # (..., half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(t.dtype if t.is_floating_point() else torch.float32)


class TimestepEmbedder(nn.Module):
    """t (B, S) -> conditioning vector (B, S, D)."""

    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype)  # (B, S, F)
        return self.mlp(emb)  # (B, S, D)


def _axis_split(dim: int) -> tuple[int, int, int]:
    """Even parts of ``dim`` for the (t, h, w) axes: a quarter for time, the rest shared by rows and columns."""
    d_t = 2 * (dim // 8)
    d_hw = 2 * ((dim - d_t) // 4)
    return dim - 2 * d_hw, d_hw, d_hw


def sincos_position_embedding(pos: torch.Tensor, dim: int, theta: float = 10000.0) -> torch.Tensor:
    """Fixed 3D sin-cos embedding (DiT's 2D one with a time axis) of (t, h, w) positions: (..., 3) -> (..., dim).

    RoPE alone only tells a token where others are relative to it; this absolute signal lets the model
    place content in the frame (the layout of a shot), which is what it must learn at high noise.
    """
    parts = []
    for axis, d in enumerate(_axis_split(dim)):
        omega = 1.0 / theta ** (torch.arange(d // 2, device=pos.device, dtype=torch.float64) / (d // 2))
        angle = pos[..., axis:axis + 1].to(torch.float64) * omega  # (..., d/2)
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=-1)  # (..., dim)


class Rope3D(nn.Module):
    """Rotary position embedding over (t, h, w): the head is split in three parts, one per axis."""

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        self.split = _axis_split(head_dim)  # even parts summing to head_dim
        for axis, d in zip("thw", self.split):
            inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
            self.register_buffer(f"inv_{axis}", inv, persistent=False)

    def forward(self, pos: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """pos (B, L, 3) -> cos, sin each (B, 1, L, head_dim / 2), in float32 (float64 for a float64 model).

        Never in bf16, autocast or not: bf16 keeps 8 significant bits, so cos/sin (and a rotation computed in
        bf16) would be rounded by up to ~0.2%. The angles are computed in fp64 with autocast off; :func:`apply_rope`
        rotates in this precision and casts back.
        """
        out = torch.float64 if dtype == torch.float64 else torch.float32
        with torch.autocast(pos.device.type, enabled=False):
            p = pos.to(torch.float64)  # (B, L, 3)
            angles = torch.cat([p[..., 0:1] * self.inv_t, p[..., 1:2] * self.inv_h, p[..., 2:3] * self.inv_w],
                               dim=-1)  # (B, L, head_dim / 2)
            return angles.cos().to(out)[:, None], angles.sin().to(out)[:, None]  # (B, 1, L, hd/2) x 2


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x (B, H, L, hd) by the angles (B, 1, L, hd/2), in the wider of their dtypes
    (float32 for bf16 x and float32 angles), returning x's dtype."""
    wide = torch.promote_types(x.dtype, cos.dtype)
    x1, x2 = x[..., 0::2].to(wide), x[..., 1::2].to(wide)  # (B, H, L, hd/2) x 2
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (B, H, L, hd/2, 2)
    return out.flatten(-2).to(x.dtype)  # (B, H, L, hd)


# ---------------------------------------------------------------- blocks


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.q_norm = nn.RMSNorm(hidden // heads, eps=1e-6)  # qk-norm keeps attention logits bounded
        self.k_norm = nn.RMSNorm(hidden // heads, eps=1e-6)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x, cos, sin, attend: PackedAttention):
        b, n, d = x.shape  # (B, L, D)
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads)  # (B, L, 3, H, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, L, hd)
        q, k = apply_rope(self.q_norm(q), cos, sin), apply_rope(self.k_norm(k), cos, sin)  # (B, H, L, hd)
        out = attend(q, k, v)  # (B, H, L, hd), each token attending within its own clip
        return self.proj(out.transpose(1, 2).reshape(b, n, d))  # (B, L, D)


class CrossAttention(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.q_norm = nn.RMSNorm(hidden // heads, eps=1e-6)
        self.k_norm = nn.RMSNorm(hidden // heads, eps=1e-6)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x, ctx, attend: PackedAttention):
        b, n, d = x.shape  # (B, L, D); ctx (M, D): the real caption tokens of the pack, clip after clip
        hd = d // self.heads
        q = self.q_norm(self.q(x).reshape(b, n, self.heads, hd))  # (B, L, H, hd)
        k, v = self.kv(ctx).reshape(ctx.shape[0], 2, self.heads, hd).unbind(1)  # each (M, H, hd)
        out = attend.cross(q, self.k_norm(k), v)  # (B, L, H, hd): each clip's tokens to its own caption only
        return self.proj(out.reshape(b, n, d))  # (B, L, D)


class DiTBlock(nn.Module):
    """Self-attention (3D RoPE) -> cross-attention to the caption -> MLP, with adaLN-zero per clip."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=True, eps=1e-6)
        self.cross = CrossAttention(hidden, heads)
        self.norm3 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, hidden))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x, c, seq_idx, cos, sin, attend, ctx):
        # x (B, L, D); c (B, S, D) timestep conditioning per clip; seq_idx (B, L) slot per token (padding -> 0);
        # ctx (M, D) the pack's caption tokens (PackedAttention.caption_tokens)
        mod = self.ada(c)  # (B, S, 6D)
        mod = torch.gather(mod, 1, seq_idx[..., None].expand(-1, -1, mod.shape[-1]))  # (B, L, 6D) per token
        sh1, sc1, g1, sh2, sc2, g2 = mod.chunk(6, dim=-1)  # each (B, L, D)
        x = x + g1 * self.attn(modulate(self.norm1(x), sh1, sc1), cos, sin, attend)  # (B, L, D)
        x = x + self.cross(self.norm2(x), ctx, attend)  # (B, L, D)
        return x + g2 * self.mlp(modulate(self.norm3(x), sh2, sc2))  # (B, L, D)


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.linear = nn.Linear(hidden, out_dim)

    def forward(self, x, c, seq_idx):
        mod = self.ada(c)  # (B, S, 2D)
        mod = torch.gather(mod, 1, seq_idx[..., None].expand(-1, -1, mod.shape[-1]))  # (B, L, 2D)
        shift, scale = mod.chunk(2, dim=-1)  # each (B, L, D)
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, L, P)


# ---------------------------------------------------------------- model


ATTENTION_KERNELS = ("auto", "segments", "varlen", "dense")


def segment_bounds(seq: torch.Tensor) -> list[list[tuple[int, int]]]:
    """[(start, end), ...] of each run of one slot in every row of ``seq`` (B, L); padding (-1) is a run too.

    Packing lays every clip out contiguously; a slot appearing in two runs is a bug and raises ValueError.
    """
    out = []
    for row in seq.tolist():
        cuts = [0] + [i for i in range(1, len(row)) if row[i] != row[i - 1]] + [len(row)]
        runs = list(zip(cuts[:-1], cuts[1:]))
        if len({row[s] for s, _ in runs}) != len(runs):
            raise ValueError("a clip's tokens are not contiguous in the packed sequence; pack with rushes.train.packing")
        out.append(runs)
    return out


class PackedAttention:
    """The index of one pack, built once per forward pass (so once per pack, not per block): attention confined
    to each clip, without an L x L mask (self-attention, :meth:`__call__`) and without a tokens x captions mask
    (cross-attention, :meth:`cross`). The index tensors a kernel needs (``cu_seqlens``, the caption gather) are
    made here, on the pack's device, in one host-to-device copy; blocks only read them.

    Kernels (``ModelConfig.attention``):
    - ``segments``: ``scaled_dot_product_attention`` over the clip segments, one call per run of neighbouring
      segments of equal length (packing lays a pack's clips out largest first, so clips of one size are
      neighbours: they are one batched call over views, no copy); memory linear in tokens for a fixed clip
      size; the CPU choice: FlexAttention has no CPU backward in torch 2.14;
    - ``varlen``: ``torch.nn.attention.varlen.varlen_attn`` (flash attention over cumulative lengths), on
      CUDA in half precision;
    - ``dense``: the self-attention reference, a (B, 1, L, L) boolean mask; memory quadratic in L;
    - ``auto``: varlen on CUDA when the inputs are (or autocast makes them) half precision, else segments.
    Self-attention: padding (slot -1) attends to padding only, as in the dense reference, so no softmax row is
    empty. Cross-attention (every kernel but dense, which uses segments there): a clip's tokens attend to its
    own caption's real tokens (``text_mask``), and padding gets zeros.
    """

    def __init__(self, seq: torch.Tensor, kernel: str = "auto", text_mask: torch.Tensor | None = None):
        if kernel not in ATTENTION_KERNELS:
            raise ValueError(f"unknown attention kernel {kernel!r}; use one of {', '.join(ATTENTION_KERNELS)}")
        self.kernel, self.length, self.device = kernel, seq.shape[1], seq.device
        if kernel == "dense":
            self.mask = (seq[:, :, None] == seq[:, None, :])[:, None]  # (B, 1, L, L)
        host = seq.cpu()  # the pack's layout, read on the host once
        self.bounds = segment_bounds(host)
        self.runs = [_equal_runs(row) for row in self.bounds]  # [(start, length, count), ...] per row
        ends = [row * self.length + e for row, runs in enumerate(self.bounds) for _, e in runs]
        self.longest = max(e - s for runs in self.bounds for s, e in runs)
        index = {"cu": [0, *ends]}  # cumulative ends of every segment over the flattened (B*L) tokens
        self.text = None if text_mask is None else _CaptionIndex(host, text_mask, self.bounds)
        if self.text is not None:
            index.update(self.text.host)
        self.index = _to_device(index, seq.device)  # the one host-to-device copy of a pack
        if "q" in self.index:  # index_copy_ (the scatter back) takes int64 indices: widened once, on the device
            self.index["q"] = self.index["q"].long()

    def caption_tokens(self, text: torch.Tensor) -> torch.Tensor:
        """The real caption tokens of the pack, clip after clip in layout order: (B, S, Lt, E) -> (M, E)."""
        return text.reshape(-1, text.shape[-1]).index_select(0, self.index["text"])  # (M, E)

    def _use_varlen(self, q: torch.Tensor) -> bool:
        if self.kernel in ("segments", "dense") or q.device.type != "cuda":
            return False
        half = q.dtype in (torch.float16, torch.bfloat16) or torch.is_autocast_enabled("cuda")
        return half or self.kernel == "varlen"

    @torch.compiler.disable  # a graph break under --compile: one compiled graph serves every pack's layout
    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v (B, H, L, hd) -> (B, H, L, hd)."""
        if self.kernel == "dense":
            return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
        if self._use_varlen(q):
            return self._varlen(q, k, v)
        rows = []
        for b, runs in enumerate(self.runs):
            parts = []
            for s, n, count in runs:  # count neighbouring segments of n tokens: (count, H, n, hd) views
                group = [t[b, :, s:s + n * count].unflatten(1, (count, n)).transpose(0, 1) for t in (q, k, v)]
                parts.append(F.scaled_dot_product_attention(*group).transpose(0, 1).flatten(1, 2))  # (H, n*count, hd)
            rows.append(torch.cat(parts, dim=1))  # (H, L, hd)
        return torch.stack(rows)  # (B, H, L, hd)

    def _varlen(self, q, k, v):
        from torch.nn.attention.varlen import varlen_attn

        b, h, n, hd = q.shape
        half = _half(q)
        flat = [t.transpose(1, 2).reshape(b * n, h, hd).to(half) for t in (q, k, v)]  # each (B*L, H, hd)
        cu = self.index["cu"]  # (segments + 1,), made once per pack
        out = varlen_attn(*flat, cu, cu, self.longest, self.longest)  # (B*L, H, hd)
        return _out_dtype(out.reshape(b, n, h, hd).transpose(1, 2), q)  # (B, H, L, hd)

    @torch.compiler.disable
    def cross(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Cross-attention of every clip's tokens to its own caption: q (B, L, H, hd) and k, v (M, H, hd) from
        :meth:`caption_tokens` -> (B, L, H, hd), zeros at padding. The work is each clip's tokens x its caption's
        tokens, never the pack's tokens x all its captions."""
        if self.text is None:
            raise ValueError("cross-attention needs the captions' text_mask: PackedAttention(seq, kernel, text_mask)")
        if self._use_varlen(q):
            return self._cross_varlen(q, k, v)
        rows = []
        for b, groups in enumerate(self.text.groups):
            parts = []
            for s, n, ks, m, count in groups:  # count neighbouring clips of n tokens with captions of m tokens
                if ks < 0:  # padding: no caption, no output
                    parts.append(n)
                    continue
                qg = q[b, s:s + n * count].unflatten(0, (count, n)).transpose(1, 2)  # (count, H, n, hd)
                kg, vg = (t[ks:ks + m * count].unflatten(0, (count, m)).transpose(1, 2) for t in (k, v))  # (count, H, m, hd)
                parts.append(F.scaled_dot_product_attention(qg, kg, vg).transpose(1, 2).flatten(0, 1))  # (n*count, H, hd)
            rows.append(parts)
        like = next((p for parts in rows for p in parts if not isinstance(p, int)), q)
        rows = [[like.new_zeros(p, *q.shape[2:]) if isinstance(p, int) else p for p in parts] for parts in rows]
        rows = [parts[0] if len(parts) == 1 else torch.cat(parts) for parts in rows]  # each (L, H, hd)
        return rows[0][None] if len(rows) == 1 else torch.stack(rows)  # (B, L, H, hd); one pack: no copy

    def _cross_varlen(self, q, k, v):
        from torch.nn.attention.varlen import varlen_attn

        b, n, h, hd = q.shape
        half, text = _half(q), self.text
        flat = q.reshape(b * n, h, hd)  # (B*L, H, hd), a view
        real = flat[text.span[0]:text.span[1]] if text.span else flat.index_select(0, self.index["q"])  # (N, H, hd)
        k, v = (t.to(half).contiguous() for t in (k, v))  # v may be a strided view of the fused k/v projection
        out = varlen_attn(real.to(half), k, v, self.index["cu_q"], self.index["cu_k"], text.longest_q,
                          text.longest_k)  # (N, H, hd): real tokens only
        if text.span:  # the real tokens are one run (one pack, padding at its end): pad around it
            full = F.pad(out, (0, 0, 0, 0, text.span[0], b * n - text.span[1]))  # (B*L, H, hd)
        else:
            full = out.new_zeros(b * n, h, hd).index_copy(0, self.index["q"], out)  # (B*L, H, hd)
        return _out_dtype(full.reshape(b, n, h, hd), q)  # (B, L, H, hd)


class _CaptionIndex:
    """Host-side layout of a pack's cross-attention: which caption tokens are real (``text``: flat indices into
    (B*S*Lt), clip after clip in layout order), the clips' query segments (``cu_q``, over the real tokens)
    and caption segments (``cu_k``), and neighbouring clips of equal (tokens, caption tokens) grouped for the
    segments kernel (``groups`` per row: (start, n, caption start, m, count); caption start -1 = padding)."""

    def __init__(self, seq: torch.Tensor, text_mask: torch.Tensor, bounds: list[list[tuple[int, int]]]):
        b, s, lt = text_mask.shape
        slots, valid = seq, text_mask.cpu()  # seq: already on the host
        text, cu_q, cu_k, q_index, self.groups = [], [0], [0], [], []
        for row, runs in enumerate(bounds):
            groups = []
            for start, end in runs:
                slot, n = int(slots[row, start]), end - start
                if slot < 0:
                    groups.append([start, n, -1, 0, 1])
                    continue
                if not 0 <= slot < s:
                    raise ValueError(f"token slot {slot} has no caption: text has {s} slot(s) per pack")
                real = (torch.nonzero(valid[row, slot]).flatten() + (row * s + slot) * lt).tolist()
                if not real:
                    raise ValueError(f"the clip in slot {slot} of pack {row} has no caption token (text_mask all "
                                     f"False); encode an empty caption as one zero token, as TextEncoder.encode does")
                m, ks = len(real), len(text)
                last = groups[-1] if groups else None
                if last and last[2] >= 0 and (last[1], last[3]) == (n, m):
                    last[4] += 1
                else:
                    groups.append([start, n, ks, m, 1])
                text += real
                q_index += range(row * seq.shape[1] + start, row * seq.shape[1] + end)
                cu_q.append(cu_q[-1] + n)
                cu_k.append(cu_k[-1] + m)
            self.groups.append([tuple(g) for g in groups])
        self.longest_q = max(cu_q[i + 1] - cu_q[i] for i in range(len(cu_q) - 1)) if len(cu_q) > 1 else 0
        self.longest_k = max(cu_k[i + 1] - cu_k[i] for i in range(len(cu_k) - 1)) if len(cu_k) > 1 else 0
        contiguous = bool(q_index) and q_index[-1] - q_index[0] + 1 == len(q_index)
        self.span = (q_index[0], q_index[-1] + 1) if contiguous else None  # real tokens as one slice: no gather
        self.host = {"text": text, "cu_q": cu_q, "cu_k": cu_k, **({} if contiguous else {"q": q_index})}


def _to_device(index: dict[str, list[int]], device) -> dict[str, torch.Tensor]:
    """int32 tensors of ``index`` on ``device``, through one host-to-device copy."""
    names, sizes = list(index), [len(v) for v in index.values()]
    flat = torch.tensor([i for v in index.values() for i in v], dtype=torch.int32)
    return dict(zip(names, flat.to(device, non_blocking=True).split(sizes)))


def _half(q: torch.Tensor) -> torch.dtype:
    """The half dtype a flash kernel runs in: q's own, or autocast's, else bf16."""
    if q.dtype in (torch.float16, torch.bfloat16):
        return q.dtype
    return torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else torch.bfloat16


def _out_dtype(out: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """A flash kernel's half-precision output as the caller wants it: kept half under autocast (the next linear
    takes it as it is), else q's dtype."""
    return out if torch.is_autocast_enabled("cuda") else out.to(q.dtype)


def _equal_runs(runs: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """Neighbouring segments of equal length merged: [(start, length, count), ...] covering the row in order."""
    merged: list[list[int]] = []
    for s, e in runs:
        if merged and merged[-1][1] == e - s:
            merged[-1][2] += 1
        else:
            merged.append([s, e - s, 1])
    return [tuple(m) for m in merged]


def token_slots(t: torch.Tensor, seq: torch.Tensor, cond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token timesteps as a table and an index into it: (t', seq_idx) with t' (B, S') the distinct timesteps and
    seq_idx (B, L) the row of each token, so the modulation (computed per row, S' rows) is gathered per token.

    Without ``cond`` (or with none set): t (B, S) as it is and each token's slot (padding -> 0), the per-clip path.
    With ``cond`` (B, L) bool: t' = [t, 0] (B, 2S) and a conditioning token of slot s reads row S + s, the timestep
    0 of its clip: the token's timestep is ``where(cond, 0, t[seq])`` at the cost of S more modulation rows, not L.
    """
    seq_idx = seq.clamp(min=0)  # (B, L) padding reads slot 0's modulation; its output is ignored
    if cond is None:
        return t, seq_idx
    return torch.cat([t, torch.zeros_like(t)], dim=1), seq_idx + t.shape[1] * (cond & (seq >= 0)).long()


class DiffusionTransformer(nn.Module):
    """DiT over packed spacetime patches, conditioned on a timestep and a caption per clip."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, heads = cfg.hidden_size, cfg.num_heads
        self.patch_embed = nn.Linear(cfg.patch_dim, d)  # a Conv3d with stride = kernel = patch, on flat patches
        self.t_embed = TimestepEmbedder(d)
        self.text_proj = nn.Sequential(nn.LayerNorm(cfg.text_dim, eps=1e-6), nn.Linear(cfg.text_dim, d),
                                       nn.GELU(approximate="tanh"), nn.Linear(d, d))
        # Pooled caption added to the timestep vector (as SD3 does): a global signal through adaLN that the
        # model picks up far sooner than cross-attention alone, which then adds the per-token detail.
        self.text_pool = nn.Sequential(nn.LayerNorm(cfg.text_dim, eps=1e-6), nn.Linear(cfg.text_dim, d), nn.SiLU(),
                                       nn.Linear(d, d))
        self.rope = Rope3D(d // heads, cfg.rope_theta)
        self.blocks = nn.ModuleList(DiTBlock(d, heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final = FinalLayer(d, cfg.patch_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT initialisation: Xavier linears, zero adaLN and output layers (each block starts as identity)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
        for layer in (self.final.ada[-1], self.final.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                pos: torch.Tensor, seq: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the velocity of every token.

        x (B, L, patch_dim) noisy patches; t (B, S) timestep per clip slot in [0, 1]; text (B, S, Lt, text_dim)
        caption embeddings per slot with text_mask (B, S, Lt) (True = real token, >= 1 per used slot);
        pos (B, L, 3) (t, h, w) patch position inside its clip; seq (B, L) slot of each token, -1 = padding;
        cond (B, L) bool or None: conditioning tokens, given clean (their timestep is 0, :func:`token_slots`).
        Returns (B, L, patch_dim).
        """
        attend = PackedAttention(seq, self.cfg.attention, text_mask)  # the pack's index, built once for all blocks
        rows = t.shape[1]
        t, seq_idx = token_slots(t, seq, cond)  # (B, S') timesteps, (B, L) each token's modulation row
        h = self.patch_embed(x)  # (B, L, D)
        if self.cfg.abs_pos_embed:
            h = h + sincos_position_embedding(pos, h.shape[-1]).to(h.dtype)  # (B, L, D)
        valid = text_mask[..., None].to(text.dtype)  # (B, S, Lt, 1)
        pooled = (text * valid).sum(2) / valid.sum(2).clamp(min=1)  # (B, S, text_dim) mean of the caption tokens
        pool = self.text_pool(pooled.to(x.dtype))  # (B, S, D)
        c = self.t_embed(t) + (pool if t.shape[1] == rows else pool.repeat(1, 2, 1))  # (B, S', D) per-row conditioning
        ctx = self.text_proj(attend.caption_tokens(text).to(h.dtype))  # (M, D) the real caption tokens only
        cos, sin = self.rope(pos, h.dtype)  # (B, 1, L, hd/2) x 2, float32 (float64 for a float64 model)
        for block in self.blocks:
            if self.cfg.checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(block, h, c, seq_idx, cos, sin, attend, ctx, use_reentrant=False)
            else:
                h = block(h, c, seq_idx, cos, sin, attend, ctx)  # (B, L, D)
        return self.final(h, c, seq_idx)  # (B, L, patch_dim)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
