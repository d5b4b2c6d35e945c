"""Packing: clips of different sizes into sequences of a token budget, and the batch the model takes.

1. :func:`pack_first_fit` groups clips into packs of at most ``budget`` tokens (first-fit decreasing).
2. :class:`PackLoader` is the endless, deterministic stream of packs the loop draws from (shuffled per
   epoch); its position is saved in checkpoints so a resumed run continues at the same pack.
3. :func:`collate` lays a pack out as one :class:`PackedBatch`: tokens back to back, positions restarting
   per clip, a slot per clip (``seq``) and each clip's caption in its own slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rushes.train.data import Example
from rushes.train.model import grid_positions


def pack_first_fit(token_counts: Sequence[int], budget: int, order: Sequence[int] | None = None) -> list[list[int]]:
    """Indices grouped into packs of at most ``budget`` tokens, first-fit decreasing.

    ``order`` (a permutation) breaks ties between equal sizes, so a shuffled order gives shuffled packs.
    """
    order = list(range(len(token_counts))) if order is None else list(order)
    order.sort(key=lambda i: -token_counts[i])  # stable: ties keep the shuffled order
    packs: list[list[int]] = []
    room: list[int] = []
    open_ids: list[int] = []  # packs that can still take the smallest clip; the others are never scanned again
    smallest = min((token_counts[i] for i in order), default=0)
    for i in order:
        n = token_counts[i]
        if n > budget:
            raise ValueError(f"a clip of {n} tokens exceeds the pack budget {budget}; raise --batch-tokens")
        for k, j in enumerate(open_ids):
            if n <= room[j]:
                packs[j].append(i)
                room[j] -= n
                if room[j] < smallest:
                    del open_ids[k]
                break
        else:
            packs.append([i])
            room.append(budget - n)
            if room[-1] >= smallest:
                open_ids.append(len(packs) - 1)
    return packs


class PackLoader:
    """Endless, deterministic stream of packs of examples; its position is ``(epoch, index)``.

    Each epoch shuffles the clips with ``seed + epoch``, packs them first-fit decreasing into
    ``budget`` tokens, and shuffles the packs. Saving :meth:`state_dict` and restoring it resumes at the
    same pack, which exact resume relies on.

    Stills (``Example.still``, one-frame clips) are packed beside the clips. With ``image_ratio`` an epoch holds
    every clip and as many stills as make their tokens ``image_ratio`` times the clips' (:func:`epoch_stills`:
    drawn in turn from a fresh shuffle of all stills each time they run out, so every still is seen as often
    as any other); without it, every still once.
    """

    def __init__(self, examples: Sequence[Example], budget: int, seed: int = 0, image_ratio: float | None = None):
        self.examples = list(examples)
        self.budget = budget
        self.seed = seed
        self.image_ratio = image_ratio
        self.epoch, self.index = 0, 0
        self._packs: list[list[int]] | None = None

    def epoch_packs(self, epoch: int) -> list[list[int]]:
        """The packs of ``epoch``: lists of indices into ``examples`` (a still may appear more than once)."""
        rng = np.random.default_rng(self.seed + epoch)
        items = self.epoch_items(epoch)
        order = rng.permutation(len(items)).tolist()
        packs = pack_first_fit([self.examples[i].num_tokens for i in items], self.budget, order)
        return [[items[j] for j in packs[i]] for i in rng.permutation(len(packs))]

    def epoch_items(self, epoch: int) -> list[int]:
        """Indices of the examples an epoch trains: every clip, then its stills (see the class doc)."""
        clips = [i for i, e in enumerate(self.examples) if not e.still]
        stills = [i for i, e in enumerate(self.examples) if e.still]
        if self.image_ratio is None or not clips or not stills:
            return clips + stills
        clip_tokens = sum(self.examples[i].num_tokens for i in clips)
        mean_still = sum(self.examples[i].num_tokens for i in stills) / len(stills)
        per_epoch = int(round(self.image_ratio * clip_tokens / mean_still))
        return clips + epoch_stills(stills, per_epoch, epoch, self.seed)

    def next(self) -> list[Example]:
        if self._packs is None:
            self._packs = self.epoch_packs(self.epoch)
        if self.index >= len(self._packs):
            self.epoch, self.index = self.epoch + 1, 0
            self._packs = self.epoch_packs(self.epoch)
        pack = self._packs[self.index]
        self.index += 1
        return [self.examples[i] for i in pack]

    def next_packs(self, n: int, rank: int = 0, world: int = 1) -> list[list[Example]]:
        """Worker ``rank``'s share of the next ``n`` packs (packs rank, rank + world, ...): one global order."""
        return [self.next() for _ in range(n)][rank::world]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "budget": self.budget}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") == "stream":
            raise ValueError("this checkpoint's data position is a position in encoding shards, but no matching "
                             "encodings were found; rerun `rushes encode` with the run's settings to resume it")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._packs = None

    def close(self) -> None:
        """Nothing to release: the examples are in memory (the interface of rushes.train.stream.PackStream)."""


def epoch_stills(stills: Sequence[int], per_epoch: int, epoch: int, seed: int) -> list[int]:
    """The ``per_epoch`` stills of ``epoch``: positions ``[epoch * per_epoch, (epoch + 1) * per_epoch)`` of an
    endless sequence of shuffles of ``stills`` (shuffle ``c`` seeded by ``seed`` and ``c``), so an epoch depends on
    its number alone (exact resume) and every still comes once before any comes again."""
    n = len(stills)
    start, stop = epoch * per_epoch, (epoch + 1) * per_epoch
    out: list[int] = []
    for cycle in range(start // n, -(-stop // n) if stop else 0):
        perm = np.random.default_rng([seed, 7919, cycle]).permutation(n)
        lo, hi = max(start - cycle * n, 0), min(stop - cycle * n, n)
        out += [stills[k] for k in perm[lo:hi].tolist()]
    return out


@dataclass
class PackedBatch:
    """One packed sequence (B = 1) as the model and the loss take it; see train/model.py for shapes."""

    x0: torch.Tensor  # (1, L, patch_dim) clean tokens
    pos: torch.Tensor  # (1, L, 3) long
    seq: torch.Tensor  # (1, L) long, -1 = padding
    text: torch.Tensor  # (1, S, Lt, text_dim)
    text_mask: torch.Tensor  # (1, S, Lt) bool
    slot_tokens: torch.Tensor  # (1, S) long, tokens per clip
    clip_ids: list[str]
    grids: list[tuple[int, int, int]]
    cond: torch.Tensor | None = None  # (1, L) bool: conditioning tokens, given clean (train/conditioning.py)
    weight: float = 1.0  # 0: a stand-in for a pack whose every row was damaged (:func:`empty_pack`)

    @property
    def real_tokens(self) -> int:
        """Tokens the loss learns from: the clips' tokens less their conditioning tokens (and padding)."""
        if not self.weight:
            return 0
        return int(self.slot_tokens.sum()) - (0 if self.cond is None else int((self.cond & (self.seq >= 0)).sum()))

    def to(self, device) -> PackedBatch:
        return PackedBatch(self.x0.to(device), self.pos.to(device), self.seq.to(device), self.text.to(device),
                           self.text_mask.to(device), self.slot_tokens.to(device), self.clip_ids, self.grids,
                           None if self.cond is None else self.cond.to(device), self.weight)


def empty_pack(patch_dim: int, null_text: torch.Tensor, pad_multiple: int = 1) -> PackedBatch:
    """The stand-in for a pack left empty (every row it drew failed its checks, train/stream.py): one token of
    zeros under the empty caption, weight 0. Its forward and backward passes add no gradient but keep this worker in
    step with the others (DDP and FSDP run a collective in every pass: a worker that skipped one would hang them)."""
    stand_in = Example("", "", torch.zeros(1, patch_dim), (1, 1, 1), null_text)
    batch = collate([stand_in], pad_multiple)
    batch.clip_ids, batch.weight = [], 0.0
    return batch


def collate(examples: Sequence[Example], pad_multiple: int = 1,
            texts: Sequence[torch.Tensor] | None = None) -> PackedBatch:
    """Pack ``examples`` into one sequence, padded to a multiple of ``pad_multiple`` tokens.

    ``texts`` replaces the captions (caption dropout: the empty caption's embedding).
    """
    texts = list(texts) if texts is not None else [e.text for e in examples]
    n = sum(e.num_tokens for e in examples)
    length = -(-n // pad_multiple) * pad_multiple
    dim = examples[0].tokens.shape[1]
    x0 = torch.zeros(1, length, dim)
    pos = torch.zeros(1, length, 3, dtype=torch.long)
    seq = torch.full((1, length), -1, dtype=torch.long)
    lt = max(t.shape[0] for t in texts)
    text = torch.zeros(1, len(examples), lt, texts[0].shape[-1])
    text_mask = torch.zeros(1, len(examples), lt, dtype=torch.bool)
    at = 0
    for slot, (e, t) in enumerate(zip(examples, texts)):
        x0[0, at:at + e.num_tokens] = e.tokens
        pos[0, at:at + e.num_tokens] = grid_positions(e.grid)
        seq[0, at:at + e.num_tokens] = slot
        text[0, slot, :t.shape[0]] = t
        text_mask[0, slot, :t.shape[0]] = True
        at += e.num_tokens
    slot_tokens = torch.tensor([[e.num_tokens for e in examples]])
    return PackedBatch(x0, pos, seq, text, text_mask, slot_tokens, [e.clip_id for e in examples],
                       [e.grid for e in examples])
