"""The empty caption's embedding lives outside the clips' shards: a glob of an encodings folder's Parquet files
reads the clips alone; folders encoded before the move are still read."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import torch

from rushes.testing.train_shards import write_random_shards
from rushes.train import shards


def test_a_glob_of_the_parquet_files_reads_the_clips_alone(tmp_path):
    folder = tmp_path / "encodings" / "k"
    write_random_shards(folder, 5, shard_rows=2)
    tables = [pq.read_table(p) for p in sorted(folder.glob("*.parquet"))]  # what a user's naive read does
    assert sum(t.num_rows for t in tables) == 5
    assert shards.find_null_caption(folder) == folder / "guidance" / "null_caption.parquet"
    assert shards.read_null_caption(folder).shape == (1, 32)


def test_a_folder_encoded_before_the_move_is_read(tmp_path):
    folder = tmp_path / "encodings" / "old"
    write_random_shards(folder, 2)
    shutil.move(folder / "guidance" / "null_caption.parquet", folder / "null_caption.parquet")
    shards.write_null_caption(tmp_path / "x", torch.ones(1, 4))  # the writer uses the new place only
    assert not (tmp_path / "x" / "null_caption.parquet").exists()
    assert shards.find_null_caption(folder) == folder / "null_caption.parquet"
    assert shards.read_null_caption(folder).shape == (1, 32)
