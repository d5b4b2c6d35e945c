"""Encoding shards written directly (random tiny clips), for stream tests and the memory bench.

The rows are what ``rushes encode`` writes in pixel space (uint8 frames, float32 caption embeddings); only
their content is random, so thousands of clips cost seconds instead of a decode and encode each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rushes.manifests import store
from rushes.train import shards
from rushes.train.encoders import TensorDims


def write_random_shards(folder: Path, num_clips: int, shard_rows: int = 64, seed: int = 0,
                        sizes: tuple[tuple[int, int, int], ...] = ((4, 16, 16), (2, 16, 24), (4, 24, 16), (3, 8, 8)),
                        text_dim: int = 32, patch: tuple[int, int, int] = (1, 4, 4)) -> dict[str, str]:
    """``num_clips`` ok rows of (T, H, W) frames cycling through ``sizes``; returns clip_id -> caption_hash."""
    rng = np.random.default_rng(seed)
    ids, rows, part = {}, [], 0
    for i in range(num_clips):
        t, h, w = sizes[i % len(sizes)]
        caption = f"random clip {i}"
        frames = torch.from_numpy(rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8))
        text = torch.from_numpy(rng.standard_normal((1 + i % 5, text_dim)).astype(np.float32))
        grid = [t // patch[0], h // patch[1], w // patch[2]]
        cid = f"clip{i:04d}"  # the ids train_manifests.write_manifest gives
        ids[cid] = shards.caption_hash(caption)
        rows.append({"clip_id": cid, "caption": caption, "caption_hash": ids[cid], "status": "ok",
                     "num_tokens": grid[0] * grid[1] * grid[2], "grid": grid, "created_at": store.now_utc(),
                     **shards.tensor_row(frames, "video"), **shards.tensor_row(text, "text")})
        if len(rows) == shard_rows or i == num_clips - 1:
            shards.write_shard(folder, rows, f"part-{part:05d}")
            rows, part = [], part + 1
    shards.write_null_caption(folder, torch.zeros(1, text_dim))
    return ids


def write_random_run(out: Path, cfg, num_clips: int, shard_rows: int = 64) -> Path:
    """OUT with ``num_clips`` tiny clips in its manifests and random encodings of them under ``cfg``'s key (the
    settings ``rushes train`` with ``cfg`` looks for), so training streams them without any decoding."""
    from rushes.testing.train_manifests import Clip, write_manifest

    write_manifest(out, [Clip("/nonexistent.mp4", 0.0, 1.0, 16, 16, f"random clip {i}") for i in range(num_clips)])
    inputs = shards.key_inputs(cfg.data, cfg.model.patch_size)
    write_random_shards(shards.key_dir(out, inputs), num_clips, shard_rows=shard_rows)
    shards.write_key(shards.key_dir(out, inputs), inputs, TensorDims(3, 32))  # pixel frames, write_random_shards' text
    return out


def encode_in_process(out: Path, cfg) -> Path:
    """What ``rushes encode`` does, in this process without Ray (the same plan, decode and encoder code):
    fast tests of training from encodings. Returns the encodings folder."""
    from rushes.train.encode import EncodeActor, decode_batch, plan_encode

    inputs = shards.key_inputs(cfg.data, cfg.model.patch_size)
    folder = shards.key_dir(out, inputs)
    actor = EncodeActor(cfg.data, cfg.model.patch_size, device="cpu")
    temporal, spatial = actor.factors()
    frames = decode_batch(plan_encode(out, cfg.data, folder).tasks, cfg.data, cfg.model.patch_size, temporal, spatial)
    shards.write_key(folder, inputs, actor.dims())
    shards.write_null_caption(folder, actor.embed([""])[0])
    shards.write_shard(folder, actor(frames), "part-local")
    return folder
