"""`rushes train --workers N` on Ray Train: the same loss curve as one worker, and a checkpoint of N resumes on 1."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from train.config import preset
from train.loop import train
from rushes.testing.train_shards import encode_in_process


@pytest.mark.slow
def test_two_workers_follow_one_worker_and_their_checkpoint_resumes_on_one(synth_out, tiny_t5, tmp_path, ray_local):
    from train.pipeline import run_train_workers

    cfg = preset("tiny").with_overrides(
        data={"text_encoder": tiny_t5, "max_frames": 4, "clip_tokens": 128, "batch_tokens": 128,
              "packs_per_step": 2, "caption_dropout": 0.5, "val_clips": 0},
        train={"steps": 6, "log_every": 1, "checkpoint_every": 4, "warmup_steps": 2})
    out = shutil.copytree(synth_out, tmp_path / "out")
    encode_in_process(out, cfg)
    one = train(out, tmp_path / "one", cfg, echo=lambda s: None)  # one process, both packs of each step
    two = run_train_workers(out, tmp_path / "two", cfg.with_overrides(train={"steps": 4}), workers=2,
                            torch_threads=1)
    assert two.step == 4 and len(two.losses) == 4
    np.testing.assert_allclose(two.losses, one.losses[:4], rtol=1e-4)  # same global batch, same data order
    assert json.loads((tmp_path / "two" / "config.json").read_text())["workers"] == 2
    assert all(json.loads(line)["workers"] == 2 for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines())
    resumed = train(out, tmp_path / "two", cfg, echo=lambda s: None)  # the 2-worker checkpoint on 1 worker
    assert resumed.start_step == 4
    np.testing.assert_allclose(resumed.losses, one.losses[4:], rtol=1e-4)
