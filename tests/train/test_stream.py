"""Streaming from shards: every clip once per epoch, bounded window, exact resume, worker shares of one order."""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
import pytest
import torch

from rushes.train import shards
from rushes.train.stream import PackStream
from rushes.testing.train_shards import write_random_shards

PATCH = (1, 4, 4)


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enc") / "key"
    return folder, write_random_shards(folder, 90, shard_rows=16)


def _ids(packs):
    return [[e.clip_id for e in p] for p in packs]


def test_an_epoch_takes_every_clip_once_in_packs_within_the_budget(shard_set):
    folder, ids = shard_set
    stream = PackStream(folder, ids, PATCH, budget=96, window=20, seed=3)
    seen, packs = Counter(), 0
    while True:
        pack = stream.next_packs(1)[0]
        if stream.epoch == 1:  # the position is the taken pack's: this one opens epoch 1
            break
        assert sum(e.num_tokens for e in pack) <= 96
        assert sum(len(p) for p in stream._current.packs) <= 20  # memory holds one window of clips
        seen.update(e.clip_id for e in pack)
        packs += 1
    assert seen == Counter({cid: 1 for cid in ids})
    again = PackStream(folder, ids, PATCH, budget=96, window=20, seed=3)
    first = _ids(again.next_packs(packs))
    assert Counter(c for p in first for c in p) == Counter({cid: 1 for cid in ids})
    assert _ids(PackStream(folder, ids, PATCH, budget=96, window=20, seed=3).next_packs(5)) == first[:5]
    assert _ids(PackStream(folder, ids, PATCH, budget=96, window=20, seed=4).next_packs(5)) != first[:5]
    assert _ids(again.next_packs(5)) != first[:5]  # epoch 1 is shuffled anew


def test_only_the_selected_clips_with_their_caption_are_streamed(shard_set):
    folder, ids = shard_set
    chosen = dict(list(ids.items())[:30])
    chosen["clip0001"] = "another caption"  # re-captioned since encoding: not this row
    stream = PackStream(folder, chosen, PATCH, budget=128, window=8)
    got = [e.clip_id for p in stream.next_packs(40) for e in p]
    assert set(got) == set(chosen) - {"clip0001"}


def test_the_saved_position_resumes_exactly(shard_set):
    folder, ids = shard_set
    full = PackStream(folder, ids, PATCH, budget=96, window=12, seed=1)
    expected = full.next_packs(60)  # crosses windows, shards and an epoch
    part = PackStream(folder, ids, PATCH, budget=96, window=12, seed=1)
    head = part.next_packs(37)
    state = part.state_dict()
    resumed = PackStream(folder, ids, PATCH, budget=96, window=12, seed=1)
    resumed.load_state_dict(state)
    tail = resumed.next_packs(23)
    assert _ids(head + tail) == _ids(expected)
    for got, want in zip(tail, expected[37:]):
        for g, w in zip(got, want):
            assert torch.equal(g.tokens, w.tokens) and torch.equal(g.text, w.text) and g.grid == w.grid


def test_workers_split_one_global_order(shard_set):
    folder, ids = shard_set
    one = _ids(PackStream(folder, ids, PATCH, budget=96, window=16, seed=2).next_packs(24))
    streams = [PackStream(folder, ids, PATCH, budget=96, window=16, seed=2) for _ in range(3)]
    for step in range(4):  # each step: 6 packs of the global order, 2 per worker, none twice, none left out
        shares = [_ids(s.next_packs(6, rank=r, world=3)) for r, s in enumerate(streams)]
        assert all(len(share) == 2 for share in shares)
        assert sorted(p for share in shares for p in share) == sorted(one[step * 6:step * 6 + 6])
    assert len({str(s.state_dict()) for s in streams}) == 1  # every worker holds the same position


def test_a_stream_position_is_refused_by_another_kind_of_loader(shard_set):
    folder, ids = shard_set
    with pytest.raises(ValueError, match="--no-encodings"):
        PackStream(folder, ids, PATCH, budget=96).load_state_dict({"epoch": 0, "index": 3})


def test_a_worker_reads_the_tensors_of_its_own_packs_and_each_row_group_once(tmp_path, monkeypatch):
    folder = tmp_path / "key"
    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 12_000)  # ~4 of these tiny rows, as ~1 MiB is of latents
    ids = write_random_shards(folder, 128, shard_rows=128)  # one shard
    num_groups = pq.ParquetFile(shards.shard_paths(folder)[0]).num_row_groups
    assert 24 <= num_groups <= 64
    groups: list[int] = []
    real = pq.ParquetFile.read_row_groups

    def counted(self, wanted, *args, **kwargs):
        if "video" in (kwargs.get("columns") or []):  # a read of tensors, not of the columns packing needs
            groups.extend(wanted)
        return real(self, wanted, *args, **kwargs)
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", counted)
    one = PackStream(folder, ids, PATCH, budget=96, window=128, seed=5)
    whole = one.next_packs(8)
    while one.taken < len(one._current.packs):  # the rest of the first window (a multiple of 8 packs)
        whole += one.next_packs(8)
    assert sum(len(p) for p in whole) == 128
    assert sorted(groups) == list(range(num_groups))  # one worker: every group read once
    groups.clear()
    rank = PackStream(folder, ids, PATCH, budget=96, window=128, seed=5)
    mine = [p for _ in range(len(whole) // 8) for p in rank.next_packs(8, rank=3, world=8)]
    assert [[e.clip_id for e in p] for p in mine] == [[e.clip_id for e in p] for p in whole[3::8]]
    assert len(set(groups)) == len(groups) < 0.6 * num_groups  # worker 3 of 8: the groups of its clips only


def test_a_shard_larger_than_a_window_is_listed_once(tmp_path, monkeypatch):
    folder = tmp_path / "key"
    ids = write_random_shards(folder, 64, shard_rows=64)  # one shard, eight windows of 8 clips
    reads = []
    real = shards.read_columns
    monkeypatch.setattr(shards, "read_columns", lambda path, columns: reads.append(path) or real(path, columns))
    stream = PackStream(folder, ids, PATCH, budget=96, window=8, seed=0)
    got = []
    while stream.epoch == 0:
        got += [e.clip_id for p in stream.next_packs(1) for e in p]
    assert sorted(got[:64]) == sorted(ids) and len(reads) == 1  # not once per window (8 of them)


def test_closing_mid_window_closes_its_shards_and_keeps_the_position(shard_set, monkeypatch):
    """A run that stops mid-window (the loop closes its data source) leaves no shard open; a stream used again
    after close goes on with the packs it would have given."""
    folder, ids = shard_set
    opened = []
    real = shards.RowReader

    def spy(path):
        opened.append(real(path))
        return opened[-1]
    monkeypatch.setattr(shards, "RowReader", spy)
    stream = PackStream(folder, ids, PATCH, budget=96, window=20, seed=3)
    stream.next_packs(1)
    assert opened and len(stream._current.packs) > 1  # mid-window: its shards are open
    stream.close()
    assert all(r._stream.closed for r in opened)
    assert _ids(stream.next_packs(4)) == _ids(PackStream(folder, ids, PATCH, budget=96, window=20, seed=3)
                                              .next_packs(5))[1:]


def _damage(folder, tmp_path):
    """A copy of ``folder`` whose first shard has a NaN caption embedding, a swapped shape, a truncated tensor,
    a negative token count and a dtype nobody writes, one per row."""
    import shutil

    import numpy as np

    copy = tmp_path / "damaged"
    shutil.copytree(folder, copy)
    first = shards.shard_paths(copy)[0]
    rows = pq.read_table(first).to_pylist()
    text = np.frombuffer(rows[0]["text"], np.float32).copy()
    text[0] = np.nan
    rows[0]["text"] = text.tobytes()
    rows[1]["video_shape"] = list(reversed(rows[1]["video_shape"]))
    rows[2]["video"] = rows[2]["video"][: len(rows[2]["video"]) // 2]
    rows[3]["num_tokens"] = -5
    rows[4]["video_dtype"] = "complex128"
    shards.write_shard(copy, rows, first.stem)
    return copy, {r["clip_id"] for r in rows[:5]}


def test_damaged_rows_are_skipped_naming_shard_and_clip_and_the_rest_trains(shard_set, tmp_path, caplog):
    folder, ids = shard_set
    copy, bad = _damage(folder, tmp_path)
    stream = PackStream(copy, ids, PATCH, budget=96, window=20, seed=3)
    seen = Counter()
    while stream.epoch == 0:
        for pack in stream.next_packs(1):
            assert all(torch.isfinite(e.tokens).all() and torch.isfinite(e.text).all() for e in pack)
            seen.update(e.clip_id for e in pack)
    assert set(seen) == set(ids) - bad, "every good clip trains, no damaged one does"
    assert len(stream.bad) == 4, stream.bad  # the negative token count never reaches a pack: not even read
    named = "\n".join(stream.bad.values())
    assert "NaN or infinite" in named and "needs" in named and "complex128" in named and "video_shape" in named
    assert all(w.startswith(shards.shard_paths(copy)[0].name) for w in stream.bad)
    assert "skipping a bad encodings row" in caplog.text
