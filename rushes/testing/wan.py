"""Run rushes' packed Wan model and diffusers' WanTransformer3DModel on the same clips (the equality proofs)."""

from __future__ import annotations

import torch

from rushes.train.model import grid_positions, patchify, unpatchify


def diffusers_on_clip(ref, clip, pad_tokens=512, patch=(1, 2, 2)):
    """diffusers on one clip, its caption zero-padded to 512 tokens as WanPipeline pads it. A clip with
    ``cond_frames`` (token frames given clean) gets a timestep per token, 0 on those frames (Wan 2.2 TI2V's input)."""
    text = torch.zeros(1, pad_tokens, clip["text"].shape[1], dtype=torch.float64)
    text[0, :clip["text"].shape[0]] = clip["text"]
    t = torch.tensor([clip["t"] * 1000.0], dtype=torch.float64)
    if clip.get("cond_frames"):
        _, grid = patchify(clip["video"], patch)
        t = (~cond_tokens(grid, clip["cond_frames"])).double()[None] * t  # (1, N)
    with torch.no_grad():
        return ref(clip["video"][None], t, text, return_dict=False)[0][0]


def cond_tokens(grid, frames) -> torch.Tensor:
    """(N,) bool: the tokens of the given token frames of a clip of ``grid``."""
    return torch.isin(grid_positions(grid)[:, 0], torch.tensor(list(frames), dtype=torch.long))


def rushes_on_clips(ours, clips, patch=(1, 2, 2), pad=7, per_token: bool = False):
    """rushes on all ``clips`` packed in one sequence (with padding), unpatchified per clip; ``per_token``: with
    the conditioning mask of the clips' ``cond_frames`` (all False when none has any), else without one."""
    toks = [patchify(c["video"], patch) for c in clips]
    n = sum(x.shape[0] for x, _ in toks)
    lt = max(c["text"].shape[0] for c in clips)
    x = torch.zeros(1, n + pad, toks[0][0].shape[1], dtype=torch.float64)
    pos, seq = torch.zeros(1, n + pad, 3, dtype=torch.long), torch.full((1, n + pad), -1)
    cond = torch.zeros(1, n + pad, dtype=torch.bool)
    text = torch.randn(1, len(clips), lt, clips[0]["text"].shape[1], dtype=torch.float64)  # junk past each caption
    mask = torch.zeros(1, len(clips), lt, dtype=torch.bool)
    at = 0
    for s, ((tok, grid), c) in enumerate(zip(toks, clips)):
        x[0, at:at + len(tok)], pos[0, at:at + len(tok)], seq[0, at:at + len(tok)] = tok, grid_positions(grid), s
        text[0, s, :len(c["text"])], mask[0, s, :len(c["text"])] = c["text"], True
        cond[0, at:at + len(tok)] = cond_tokens(grid, c.get("cond_frames") or ())
        at += len(tok)
    t = torch.tensor([[c["t"] for c in clips]], dtype=torch.float64)
    with torch.no_grad():
        v = ours(x, t, text, mask, pos, seq, cond if per_token else None)[0]
    out, at = [], 0
    for (tok, grid), c in zip(toks, clips):
        out.append(unpatchify(v[at:at + len(tok)], grid, patch, c["video"].shape[0]))
        at += len(tok)
    return out
