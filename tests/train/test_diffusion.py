"""Rectified flow: timesteps, per-clip loss normalisation, the Euler sampler and guidance."""

from __future__ import annotations

import torch

from rushes.train.diffusion import (euler_sample, per_clip_loss, resolution_shift, sample_schedule, sample_timesteps,
                             shift_timesteps, training_loss)


def test_shift_moves_timesteps_towards_noise_for_larger_clips():
    t = torch.linspace(0.05, 0.95, 19)
    assert torch.allclose(shift_timesteps(t, 1.0), t)
    assert (shift_timesteps(t, 3.0) > t).all()
    shifts = resolution_shift(torch.tensor([64, 256, 1024, 10**7]), base_tokens=256, max_shift=6.0)
    assert shifts.tolist() == [1.0, 1.0, 2.0, 6.0]
    g = torch.Generator().manual_seed(0)
    small = sample_timesteps((4000,), g, shift=1.0)
    big = sample_timesteps((4000,), g, shift=3.0)
    assert 0 < small.min() and small.max() < 1 and abs(float(small.mean()) - 0.5) < 0.02  # logit-normal(0, 1)
    assert big.mean() > small.mean() + 0.1


def test_loss_is_normalised_per_clip_and_ignores_padding():
    # A 1-token clip with error 4 and a 5-token clip with error 0: per-clip mean gives 2, not 4/6.
    pred = torch.zeros(1, 8, 3)
    target = torch.zeros(1, 8, 3)
    target[0, 0] = 2.0
    target[0, 6:] = 100.0  # padding: must not count
    seq = torch.tensor([[0, 1, 1, 1, 1, 1, -1, -1]])
    losses = per_clip_loss(pred, target, seq, num_slots=3)
    assert losses.tolist() == [[4.0, 0.0, 0.0]]
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 8, 3)
    loss, per = training_loss(lambda x, t: torch.zeros_like(x), x0, seq, torch.tensor([[1, 5, 0]]), g)
    assert torch.isclose(loss, per[0, :2].mean())


def test_euler_sampler_follows_the_exact_velocity_to_the_data():
    # For a single data point x0 the rectified-flow velocity is (x_t - x0) / t: Euler lands on x0.
    x0 = torch.randn(1, 10, 4)
    noise = torch.randn(1, 10, 4)

    def velocity(x, t, conditional):
        return (x - x0) / t[:, :1, None]

    out = euler_sample(velocity, noise, num_slots=1, steps=7, shift=2.0)
    torch.testing.assert_close(out, x0, rtol=1e-4, atol=1e-4)
    ts = sample_schedule(10, shift=3.0)
    assert ts[0] == 1.0 and ts[-1] == 0.0 and (ts[1:] < ts[:-1]).all()


def test_guidance_extrapolates_from_unconditional():
    noise = torch.zeros(1, 4, 2)
    calls = []

    def velocity(x, t, conditional):
        calls.append(conditional)
        return torch.full_like(x, -1.0 if conditional else -0.5)

    out1 = euler_sample(velocity, noise, 1, steps=4, guidance=1.0)
    assert calls == [True] * 4  # guidance 1 needs no unconditional pass
    out3 = euler_sample(velocity, noise, 1, steps=4, guidance=3.0)
    torch.testing.assert_close(out1, torch.full_like(noise, 1.0))  # x -= dt * v, dt sums to -1
    torch.testing.assert_close(out3, torch.full_like(noise, 2.0))  # v = -0.5 + 3 (-1 + 0.5) = -2
