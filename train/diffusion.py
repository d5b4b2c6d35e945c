"""Rectified flow on packed token sequences: noising, the velocity loss, and the Euler sampler.

Convention (as in SD3 and the open video models): ``x_t = (1 - t) * x0 + t * noise`` with t in [0, 1],
t = 1 is pure noise, and the model predicts the velocity ``v = noise - x0``. Training timesteps are
logit-normal and shifted towards noise for clips with more tokens (a larger clip keeps more signal at
a given t, so it needs more noise to learn the coarse structure). The loss is a mean per clip, then a
mean over clips, so a large clip weighs as much as a small one.

This module works on tensors and a velocity function; it never imports the model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def resolution_shift(num_tokens: torch.Tensor, base_tokens: int, max_shift: float) -> torch.Tensor:
    """Shift per clip: sqrt(tokens / base_tokens) clamped to [1, max_shift] (SD3's resolution shift)."""
    return (num_tokens.float() / float(base_tokens)).sqrt().clamp(1.0, max_shift)


def shift_timesteps(t: torch.Tensor, shift: torch.Tensor | float) -> torch.Tensor:
    """Map t in [0, 1] to ``shift * t / (1 + (shift - 1) * t)``: shift > 1 moves timesteps towards noise."""
    return shift * t / (1.0 + (shift - 1.0) * t)


def sample_timesteps(shape, generator: torch.Generator, mean: float = 0.0, std: float = 1.0,
                     shift: torch.Tensor | float = 1.0, device=None) -> torch.Tensor:
    """Logit-normal timesteps ``sigmoid(N(mean, std))``, then shifted; returns a float32 tensor of ``shape``."""
    u = torch.randn(shape, generator=generator, device=device) * std + mean
    return shift_timesteps(torch.sigmoid(u), shift)


def per_token(values: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
    """Spread per-clip values (B, S) to tokens (B, L) by slot; padding (-1) gets slot 0's value."""
    return torch.gather(values, 1, seq.clamp(min=0))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t_tok: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t noise, with t per token (B, L) and x0, noise (B, L, P)."""
    t = t_tok[..., None].to(x0.dtype)
    return (1.0 - t) * x0 + t * noise


def per_clip_loss(pred: torch.Tensor, target: torch.Tensor, seq: torch.Tensor, num_slots: int,
                  cond: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of each clip slot, (B, S); slots without tokens get 0.

    pred/target (B, L, P); seq (B, L) slot per token, -1 for padding (ignored); cond (B, L) bool: conditioning
    tokens (given clean), ignored too.
    """
    err = (pred.float() - target.float()).pow(2).mean(-1)  # (B, L)
    valid = seq >= 0 if cond is None else (seq >= 0) & ~cond
    idx = seq.clamp(min=0)
    sums = torch.zeros(seq.shape[0], num_slots, device=err.device).scatter_add(1, idx, err * valid)  # (B, S)
    counts = torch.zeros_like(sums).scatter_add(1, idx, valid.float())  # (B, S)
    return sums / counts.clamp(min=1.0)


def mean_over_clips(losses: torch.Tensor, slot_used: torch.Tensor) -> torch.Tensor:
    """Average of per-clip losses (B, S) over the used slots (B, S bool): every clip weighs the same."""
    return (losses * slot_used).sum() / slot_used.sum().clamp(min=1)


def training_loss(velocity_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x0: torch.Tensor,
                  seq: torch.Tensor, slot_tokens: torch.Tensor, generator: torch.Generator,
                  mean: float = 0.0, std: float = 1.0, base_tokens: int = 256, max_shift: float = 6.0,
                  t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                  cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rectified-flow loss of one packed batch.

    ``velocity_fn(x_t, t)`` returns the predicted velocity (B, L, P) given noisy tokens and timesteps per
    slot (B, S). ``cond`` (B, L) bool marks conditioning tokens: given clean (x0, timestep 0: the caller passes
    the same mask to the model) and left out of the loss; the noise is drawn for every token either way. ``slot_tokens`` (B, S) counts each clip's tokens (0 = unused slot) and sets its shift.
    ``t``/``noise`` may be given (validation at fixed timesteps); otherwise they are drawn from ``generator``.
    Returns (scalar loss, per-clip losses (B, S)).
    """
    if t is None:
        shift = resolution_shift(slot_tokens, base_tokens, max_shift)  # (B, S)
        t = sample_timesteps(slot_tokens.shape, generator, mean, std, shift, device="cpu").to(x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device="cpu", dtype=torch.float32).to(x0)
    t_tok = per_token(t, seq)  # (B, L)
    if cond is not None:
        t_tok = t_tok.masked_fill(cond, 0.0)  # conditioning tokens: clean
    x_t = add_noise(x0, noise, t_tok)  # (B, L, P)
    pred = velocity_fn(x_t, t)  # (B, L, P)
    losses = per_clip_loss(pred, noise - x0, seq, slot_tokens.shape[1], cond)  # (B, S)
    return mean_over_clips(losses, slot_tokens > 0), losses


def sample_schedule(steps: int, shift: float = 1.0, start: float = 1.0) -> torch.Tensor:
    """Timesteps from 1 (noise) to 0 (data), ``steps + 1`` values, shifted like training. ``start`` < 1 (SDEdit:
    integrate from a noised input): ``start`` then the schedule's timesteps below it, the same from there on (0:
    no step at all, 1: the whole schedule)."""
    ts = shift_timesteps(torch.linspace(1.0, 0.0, steps + 1), shift)
    if start >= 1.0:
        return ts
    return torch.cat([torch.tensor([float(start)]), ts[ts < start]])


@torch.no_grad()
def euler_sample(velocity_fn: Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor], noise: torch.Tensor,
                 num_slots: int, steps: int = 30, shift: float = 1.0, guidance: float = 1.0,
                 start: float = 1.0) -> torch.Tensor:
    """Integrate dx/dt = v from t = ``start`` (1: ``noise`` is pure noise; below 1: ``noise`` is the input noised
    to ``start``, SDEdit) to t = 0 with Euler steps; returns x0 (same shape).

    ``velocity_fn(x_t, t, conditional)`` gives the velocity with (True) or without (False) the caption;
    with ``guidance`` != 1 the two are combined by classifier-free guidance: v_u + g (v_c - v_u).
    """
    x = noise
    ts = sample_schedule(steps, shift, start)
    for i in range(len(ts) - 1):
        t = torch.full((x.shape[0], num_slots), float(ts[i]), device=x.device)  # (B, S)
        v = velocity_fn(x, t, True)
        if guidance != 1.0:
            v_u = velocity_fn(x, t, False)
            v = v_u + guidance * (v - v_u)
        x = x + (ts[i + 1] - ts[i]).item() * v  # dt < 0: towards data
    return x


SOLVERS = ("euler", "unipc")


@torch.no_grad()
def unipc_sample(velocity_fn: Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor], noise: torch.Tensor,
                 num_slots: int, steps: int = 30, shift: float = 1.0, guidance: float = 1.0) -> torch.Tensor:
    """As :func:`euler_sample`, with diffusers' UniPC multistep solver in flow-prediction mode (Wan's default
    sampler: ``UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift)``):
    the same velocity field, fewer steps for the same quality."""
    from diffusers import UniPCMultistepScheduler

    sched = UniPCMultistepScheduler(num_train_timesteps=1000, prediction_type="flow_prediction",
                                    use_flow_sigmas=True, flow_shift=float(shift))
    sched.set_timesteps(steps, device=noise.device)
    x = noise
    for step_t in sched.timesteps:
        t = torch.full((x.shape[0], num_slots), float(step_t) / 1000.0, device=x.device)  # (B, S) in [0, 1]
        v = velocity_fn(x, t, True)
        if guidance != 1.0:
            v_u = velocity_fn(x, t, False)
            v = v_u + guidance * (v - v_u)
        x = sched.step(v.float(), step_t, x).prev_sample
    return x


def flow_sample(velocity_fn, noise: torch.Tensor, num_slots: int, steps: int = 30, shift: float = 1.0,
                guidance: float = 1.0, solver: str = "euler", start: float = 1.0) -> torch.Tensor:
    """Sample with ``solver``: ``euler`` (:func:`euler_sample`) or ``unipc`` (:func:`unipc_sample`); ``start`` < 1
    (an edit from a noised input) with euler only."""
    if solver not in SOLVERS:
        raise ValueError(f"solver {solver!r} is not known; use {' or '.join(SOLVERS)}")
    if solver == "euler":
        return euler_sample(velocity_fn, noise, num_slots, steps=steps, shift=shift, guidance=guidance, start=start)
    if start < 1.0:
        raise ValueError("an edit (--strength below 1) integrates from a noised input with --solver euler; use it")
    return unipc_sample(velocity_fn, noise, num_slots, steps=steps, shift=shift, guidance=guidance)
