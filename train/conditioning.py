"""The conditioning tasks of ``--cond-mix``: which latent frames of a clip are given clean (t = 0, out of the loss).

One model learns text-to-video and work on existing material at once (LTX-Video's and Wan 2.2 TI2V's mechanism:
the timestep is per token, rushes.train.model.token_slots). Each clip of a step draws a task from the mix:

- ``t2v``: nothing given;
- ``i2v``: the first frame given (animate a still);
- ``extend``: a prefix of k frames given, k uniform in [1, frames - 1] (continue a clip);
- ``firstlast``: the first and last frames given.

Frames are the token grid's time steps (latent frames over the patch's time size). A task a clip is too short for
(a still, a clip of one token frame; firstlast needs three) falls back to ``t2v``. The draw is a function of the
run's seed, the step and the pack's place in the step (:func:`task_rng`), so a resumed run draws the same tasks.
"""

from __future__ import annotations

import numpy as np
import torch

from rushes.train.config import COND_TASKS, parse_cond_mix


def task_rng(seed: int, step: int, pack: int) -> np.random.Generator:
    """The stream of one pack's task draws: its own, so the timesteps and noise of a t2v-only run are unchanged."""
    return np.random.default_rng([seed, step, pack, 2024])


def cond_frames(task: str, frames: int, rng: np.random.Generator) -> list[int]:
    """The token frames ``task`` gives clean in a clip of ``frames`` token frames (see the module doc)."""
    if task == "i2v" and frames >= 2:
        return [0]
    if task == "extend" and frames >= 2:
        return list(range(int(rng.integers(1, frames))))
    if task == "firstlast" and frames >= 3:
        return [0, frames - 1]
    return []


def draw_tasks(mix: str, count: int, rng: np.random.Generator) -> list[str]:
    """``count`` tasks drawn from ``mix`` (a ``--cond-mix`` string)."""
    weights = parse_cond_mix(mix)
    p = np.array([weights[t] for t in COND_TASKS])
    return [COND_TASKS[i] for i in rng.choice(len(COND_TASKS), size=count, p=p)]


def pack_cond(grids: list[tuple[int, int, int]], length: int, mix: str, rng: np.random.Generator) -> torch.Tensor | None:
    """The (1, length) conditioning mask of a pack whose clips have ``grids`` (laid out back to back from 0, as
    rushes.train.packing.collate lays them), or None when no clip of it is conditioned."""
    tasks = draw_tasks(mix, len(grids), rng)
    mask = torch.zeros(1, length, dtype=torch.bool)
    at = 0
    for task, (gt, gh, gw) in zip(tasks, grids):
        for f in cond_frames(task, gt, rng):
            mask[0, at + f * gh * gw:at + (f + 1) * gh * gw] = True
        at += gt * gh * gw
    return mask if bool(mask.any()) else None


def slot_cond_tokens(cond: torch.Tensor | None, seq: torch.Tensor, slots: int) -> torch.Tensor:
    """(B, S) conditioning tokens per clip slot (zeros without ``cond``)."""
    out = torch.zeros(seq.shape[0], slots, dtype=torch.long)
    if cond is None:
        return out
    valid = (seq >= 0) & cond
    return out.scatter_add(1, seq.clamp(min=0).cpu(), valid.long().cpu())
