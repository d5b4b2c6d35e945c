"""Training data streamed from encoding shards: bounded memory, a global pack order, an exact position.

Each epoch visits the shards in an order shuffled with ``seed + epoch`` and reads their rows in turn.
Training clips are gathered into a window of at most ``window`` clips (the bounded shuffle buffer) from
the light columns alone (id, caption hash, status, tokens); the window is shuffled, packed first-fit
decreasing into ``budget``-token packs, and the packs are shuffled. Memory holds one window, whatever the
number of clips.

The pack order depends on the seed and the shards only, never on the number of workers: a step takes the
next ``n`` packs of that global order and worker ``rank`` of ``world`` turns packs ``rank, rank + world, ...``
of them into tensors. A worker reads tensors only from the row groups that hold its own packs' clips, each
group once per window: with groups of g clips (``shards.ROW_GROUP_BYTES``) and N workers on a bucket, each
fetches about ``1 - (1 - 1/N) ** g`` of the tensor bytes (g = 4, 8 workers: ~41%, 64: ~6%), not all of them.
The position (epoch, where the current window starts, packs taken from it) is all a checkpoint needs:
:meth:`PackStream.load_state_dict` re-reads that window and skips the packs taken.

Usage::

    data = open_encodings(folder, sources, patch=(1, 4, 4), val_clips=1)
    stream = PackStream(folder, data.train_ids, patch, budget=1024, window=256, seed=0)
    packs = stream.next_packs(2, rank=0, world=1)          # [[Example, ...], [Example, ...]]
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rushes import storage
from rushes.train import shards
from rushes.manifests.clips import KeptClip
from rushes.train.data import Example, rgb_to_video, split_validation
from rushes.train.model import patchify
from rushes.train.packing import pack_first_fit

log = logging.getLogger(__name__)

COLUMNS = ["clip_id", "caption", "caption_hash", "status", "num_tokens", "grid", "video", "video_shape",
           "video_dtype", "text", "text_shape", "text_dtype"]
LIGHT = ["clip_id", "caption_hash", "status", "num_tokens"]  # what packing a window needs


class BadRow(ValueError):
    """An encodings row that does not hold what its own columns say (shape, dtype, bytes, tokens) or holds a
    value that is not finite: the clip is skipped, never trained on."""


def row_problem(row: dict, patch: tuple[int, int, int]) -> str | None:
    """Why a shard row cannot be trained on, from its columns alone (before any tensor is built), or None."""
    for prefix, ndim in (("video", 4), ("text", 2)):
        shape, dtype, data = row.get(f"{prefix}_shape"), row.get(f"{prefix}_dtype"), row.get(prefix)
        if dtype not in shards.TENSOR_DTYPES:
            return f"{prefix}_dtype {dtype!r} is not one of {', '.join(shards.TENSOR_DTYPES)}"
        if not shape or len(shape) != ndim or any(d is None or d <= 0 for d in shape):
            return f"{prefix}_shape {shape} is not {ndim} positive sizes"
        need = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if data is None or len(data) != need:
            got = 0 if data is None else len(data)
            return f"{prefix} holds {got} bytes, {prefix}_shape {shape} of {dtype} needs {need}"
    shape = row["video_shape"]
    t, h, w = shape[:3] if row["video_dtype"] == "uint8" else shape[1:]
    grid = [t // patch[0], h // patch[1], w // patch[2]]
    if row["video_dtype"] == "uint8" and shape[3] != 3:
        return f"video_shape {shape}: pixel frames have 3 channels last"
    if list(row.get("grid") or []) != grid or row.get("num_tokens") != int(np.prod(grid)):
        return (f"grid {row.get('grid')} and num_tokens {row.get('num_tokens')} do not match video_shape {shape} "
                f"cut into {list(patch)} patches ({grid})")
    return None


def row_example(row: dict, patch: tuple[int, int, int]) -> Example:
    """A shard row as the trainer takes it: pixel frames mapped to [-1, 1] (or the latent), cut into patches.
    Raises :class:`BadRow` naming the clip when the row is inconsistent or holds NaN or infinite values."""
    problem = row_problem(row, patch)
    if problem is None and not (_finite(row, "video") and _finite(row, "text")):
        problem = "its tensors hold NaN or infinite values"
    if problem:
        raise BadRow(f"clip {row.get('clip_id')}: {problem}; rerun `rushes encode` for it (delete its row's shard "
                     f"to encode it again)")
    video = shards.row_tensor(row, "video")
    if video.dtype == torch.uint8:  # pixel space: (T, H, W, 3) frames
        video = rgb_to_video(video)
    tokens, grid = patchify(video, patch)
    return Example(row["clip_id"], row.get("caption") or "", tokens.contiguous(), grid, shards.row_tensor(row, "text"))


def _finite(row: dict, prefix: str) -> bool:
    if row[f"{prefix}_dtype"] == "uint8":
        return True
    return bool(np.isfinite(np.frombuffer(row[prefix], dtype=row[f"{prefix}_dtype"])).all())


@dataclass
class EncodedSet:
    """The clips of a run found in an encodings folder, split into training ids and validation examples."""

    folder: Path
    train_ids: dict[str, str]  # clip_id -> caption_hash
    val: list[Example]
    null_text: torch.Tensor
    skipped: list[dict] = field(default_factory=list)  # clips whose encoding failed, with the reason
    channels: int = 3
    text_dim: int = 0
    over_budget: list[str] = field(default_factory=list)  # ids of clips whose caption was cut to max_text_tokens

    @property
    def num_clips(self) -> int:
        return len(self.train_ids) + len(self.val)


def open_encodings(folder: Path, sources: Sequence[KeptClip], patch: tuple[int, int, int],
                   val_clips: int, text_budget: int | None = None) -> EncodedSet:
    """Check that ``folder`` holds every clip of ``sources`` (with its current caption) and split them.

    Raises ValueError naming the missing clips and the fix when some were never encoded.
    """
    status = shards.read_status(folder)
    good, skipped, missing = [], [], []
    for src in sources:
        have = status.get(src.clip_id)
        if have is None or have[0] != shards.caption_hash(src.caption):
            missing.append(src.clip_id)
        elif have[1] != "ok":
            skipped.append({"clip_id": src.clip_id, "path": src.path, "error": have[2]})
        else:
            good.append(src)
    if missing:
        raise ValueError(f"{len(missing)} of {len(sources)} clips (e.g. {missing[0]}) have no encoding with their "
                         f"current caption in {folder}: run `rushes encode` again with this run's settings (it "
                         f"encodes only what is missing), or pass --no-encodings to decode on the fly")
    if not good:
        raise ValueError(f"every clip failed to encode in {folder}; first error: {skipped[0]['error']}")
    train, val = split_validation(good, val_clips)
    val_hashes = {s.clip_id: shards.caption_hash(s.caption) for s in val}
    val_rows = list(select_rows(folder, val_hashes))
    ex = []
    for r in sorted(val_rows, key=lambda r: r["clip_id"]):
        try:
            ex.append(row_example(r, patch))
        except BadRow as exc:  # a damaged validation row: skipped and reported like a failed encoding
            skipped.append({"clip_id": r["clip_id"], "path": str(folder), "error": str(exc)})
    first = val_rows[0] if val_rows else next(select_rows(folder, {good[0].clip_id: shards.caption_hash(
        good[0].caption)}))
    channels = 3 if first["video_dtype"] == "uint8" else int(first["video_shape"][0])
    hashes = {s.clip_id: shards.caption_hash(s.caption) for s in good}
    over = shards.over_budget(folder, hashes, text_budget) if text_budget else []
    return EncodedSet(folder, {s.clip_id: hashes[s.clip_id] for s in train}, ex, shards.read_null_caption(folder),
                      skipped, channels, int(first["text_shape"][-1]), over)


def select_rows(folder: Path, wanted: dict[str, str]) -> Iterator[dict]:
    """Ok rows of ``wanted`` (clip_id -> caption_hash), once each, streaming the shards."""
    seen = set()
    for path in shards.shard_paths(folder):
        for row in shards.iter_rows(path, COLUMNS):
            cid = row["clip_id"]
            if row["status"] == "ok" and wanted.get(cid) == row["caption_hash"] and cid not in seen:
                seen.add(cid)
                yield row


@dataclass
class _Window:
    """One window of the stream: its packs as (shard index, row number) of each clip, in the order they are
    taken, and the rows read and not yet taken. Only the light columns are read to pack it; a worker reads
    the tensors of its own packs only, so N workers do not each read every clip of a window."""

    packs: list[list[tuple[int, int]]]
    end: tuple[int, int]  # (shard position in the epoch's order, row) where the next window starts
    rows: dict[tuple[int, int], dict] = field(default_factory=dict)
    readers: dict[int, shards.RowReader] = field(default_factory=dict)  # open shards, closed with the window

    def load(self, paths: list, index: int, world: int) -> list[dict]:
        """The full rows of pack ``index``. Reading it reads this worker's later packs of the window too (every
        ``world``-th: a step takes a multiple of ``world`` packs), one read per shard, so a row group is read
        once per window; memory holds at most the window's rows."""
        pack = self.packs[index]
        if any(ref not in self.rows for ref in pack):
            wanted: dict[int, set[int]] = {}
            for shard, row in (ref for p in self.packs[index::world] for ref in p if ref not in self.rows):
                wanted.setdefault(shard, set()).add(row)
            for shard, rows in wanted.items():
                if shard not in self.readers:
                    self.readers[shard] = shards.RowReader(paths[shard])
                self.rows.update(((shard, i), r) for i, r in self.readers[shard].rows_at(rows, COLUMNS).items())
        return [self.rows.pop(ref) for ref in pack]

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()
        self.readers.clear()


def _tokens_ok(n, budget: int) -> bool:
    """A row's token count can be packed: a positive number no larger than a pack (a negative or oversized
    count in a damaged shard would break the packing of every clip beside it)."""
    return isinstance(n, int) and 0 < n <= budget


class PackStream:
    """Endless, deterministic stream of packs read lazily from the shards of an encodings folder."""

    def __init__(self, folder: Path, train_ids: dict[str, str], patch: tuple[int, int, int], budget: int,
                 window: int = 256, seed: int = 0):
        self.folder, self.ids, self.patch = folder, train_ids, tuple(patch)  # a Path, or a URI (not a Path)
        self.budget, self.window, self.seed = budget, window, seed
        self.paths = shards.shard_paths(self.folder)
        self.epoch, self.start, self.taken = 0, (0, 0), 0  # the position
        self._current: _Window | None = None
        self._light: tuple[int, dict[str, list]] | None = None  # the last shard's light columns
        self.bad: dict[str, str] = {}  # "part-... row N" -> why that row was left out

    def _order(self, epoch: int) -> list[int]:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.paths)).tolist()

    def _read_window(self, epoch: int, start: tuple[int, int]) -> _Window:
        """Up to ``window`` training rows from ``start`` on, packed; empty packs at the end of the epoch."""
        order, refs, tokens = self._order(epoch), [], []
        shard, row = start
        seen: set[str] = set()
        while shard < len(order) and len(refs) < self.window:
            light = self._light_columns(order[shard])
            for cid, chash, status, n in zip(*(light[c][row:] for c in LIGHT)):
                row += 1
                if status == "ok" and self.ids.get(cid) == chash and cid not in seen and _tokens_ok(n, self.budget):
                    seen.add(cid)
                    refs.append((order[shard], row - 1))
                    tokens.append(n)
                    if len(refs) == self.window:
                        break
            else:
                shard, row = shard + 1, 0
        rng = np.random.default_rng([self.seed, epoch, start[0], start[1]])
        packs = pack_first_fit(tokens, self.budget, rng.permutation(len(refs)).tolist())
        return _Window([[refs[i] for i in packs[k]] for k in rng.permutation(len(packs))], (shard, row))

    def _light_columns(self, index: int) -> dict[str, list]:
        """The light columns of shard ``index``, kept while windows read it: a shard larger than a window is
        read once, not once per window."""
        if self._light is None or self._light[0] != index:
            self._light = (index, shards.read_columns(self.paths[index], LIGHT))
        return self._light[1]

    def _next_rows(self) -> tuple[_Window, int]:
        """The window of the next pack of the global order, and the pack's index in it."""
        for _ in range(len(self.paths) + 2):  # an empty window only at an epoch's end; two in a row: no data
            if self._current is None:
                self._current = self._read_window(self.epoch, self.start)
            if self.taken < len(self._current.packs):
                self.taken += 1
                return self._current, self.taken - 1
            end = self._current.end
            self._current.close()
            self.epoch, self.start = (self.epoch + 1, (0, 0)) if end[0] >= len(self.paths) else (self.epoch, end)
            self.taken, self._current = 0, None
        raise ValueError(f"no training clip found in the shards of {self.folder}")

    def next_packs(self, n: int, rank: int = 0, world: int = 1) -> list[list[Example]]:
        """This worker's share of the next ``n`` packs of the global order (packs rank, rank + world, ...): every
        worker takes all ``n`` packs' places in the order, and reads the tensors of its own packs only. A row
        that fails :func:`row_example`'s checks is left out of its pack and logged once with its shard."""
        mine = []
        for i in range(n):
            window, index = self._next_rows()  # a window's shards are closed when its last pack has been taken
            if i % world == rank:
                refs = window.packs[index]
                mine.append(list(zip(refs, window.load(self.paths, index, world))))
        return [[ex for ref, row in pack if (ex := self._example(ref, row)) is not None] for pack in mine]

    def _example(self, ref: tuple[int, int], row: dict) -> Example | None:
        try:
            return row_example(row, self.patch)
        except BadRow as exc:
            where = f"{storage.name(self.paths[ref[0]])} row {ref[1]}"
            if where not in self.bad:
                self.bad[where] = str(exc)
                log.warning("skipping a bad encodings row (%s of %s): %s", where, self.folder, exc)
            return None

    def state_dict(self) -> dict:
        return {"kind": "stream", "epoch": self.epoch, "shard": self.start[0], "row": self.start[1],
                "taken": self.taken, "seed": self.seed, "budget": self.budget, "window": self.window}

    def load_state_dict(self, state: dict) -> None:
        if state.get("kind") != "stream":
            raise ValueError("this checkpoint's data position is not a shard stream position (it was trained "
                             "without encodings); resume it with --no-encodings")
        self.epoch, self.start, self.taken = int(state["epoch"]), (int(state["shard"]), int(state["row"])), \
            int(state["taken"])
        self.close()

    def close(self) -> None:
        """Close the shards the current window has open (a run that stops mid-window; on a bucket, open
        connections). The position stays: a later :meth:`next_packs` re-reads the window and goes on."""
        if self._current is not None:
            self._current.close()
        self._current = None
