"""Training from `rushes encode` output: streamed without the videos, exact resume, refused on a mismatch."""

from __future__ import annotations

import json
import shutil

import pytest

from rushes.cli import main
from rushes.train import checkpoint
from rushes.train.config import preset
from rushes.train.loop import train
from rushes.testing.train_shards import encode_in_process


def _cfg(tiny_t5, **train_kw):
    kw = {"steps": 8, "log_every": 1, "val_every": 4, "checkpoint_every": 3, "warmup_steps": 2, **train_kw}
    return preset("tiny").with_overrides(data={"text_encoder": tiny_t5, "max_frames": 4, "clip_tokens": 192,
                                               "batch_tokens": 256, "caption_dropout": 0.5, "stream_window": 2},
                                         train=kw)


@pytest.fixture
def encoded_out(synth_out, tiny_t5, tmp_path):
    """A private OUT with encodings of the tiny config, and its source videos gone."""
    out = shutil.copytree(synth_out, tmp_path / "out")
    encode_in_process(out, _cfg(tiny_t5))
    (out / "media" / "c.mp4").unlink()  # the encoded clip file: training must not need it
    return out


def test_training_streams_encodings_and_resumes_exactly(encoded_out, tiny_t5, tmp_path):
    cfg = _cfg(tiny_t5)
    full = train(encoded_out, tmp_path / "full", cfg, echo=lambda s: None)
    assert full.num_clips == 3 and len(full.losses) == 8
    part = train(encoded_out, tmp_path / "part", cfg.with_overrides(train={"steps": 5}), echo=lambda s: None)
    state = json.loads((checkpoint.latest(tmp_path / "part") / "state.json").read_text())["data"]
    assert state["kind"] == "stream"
    resumed = train(encoded_out, tmp_path / "part", cfg, echo=lambda s: None)
    assert part.losses + resumed.losses == full.losses  # bit-exact, through the stream position
    assert resumed.val_losses == full.val_losses[-1:]
    summary = json.loads((encoded_out / "summary.json").read_text())["train"]
    assert summary["encodings"].startswith(str(encoded_out / "encodings"))
    fly = train(encoded_out, tmp_path / "fly", cfg.with_overrides(train={"steps": 1}), echo=lambda s: None,
                use_encodings=False)
    assert fly.skipped == 1  # decoding on the fly needs the clip file the stream did without


def test_train_refuses_encodings_of_other_settings_naming_the_difference(encoded_out, tiny_t5, tmp_path, capsys):
    args = [str(encoded_out), "--run", str(tmp_path / "run"), "--text-encoder", tiny_t5, "--max-frames", "4",
            "--clip-tokens", "192", "--batch-tokens", "256", "--steps", "1"]
    assert main(["train", *args, "--fps", "4"]) == 2
    err = capsys.readouterr().err
    assert "fps=8.0 (this run: 4.0)" in err and "rushes encode" in err
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert main(["train", *args]) == 0  # the matching settings stream the encodings
    assert "from " + str(encoded_out / "encodings") in capsys.readouterr().out


def test_a_run_that_streamed_encodings_will_not_resume_without_them(encoded_out, tiny_t5, tmp_path):
    cfg = _cfg(tiny_t5, steps=2)
    train(encoded_out, tmp_path / "run", cfg, echo=lambda s: None)
    shutil.rmtree(encoded_out / "encodings")
    with pytest.raises(ValueError, match="rushes encode"):
        train(encoded_out, tmp_path / "run", cfg.with_overrides(train={"steps": 3}), echo=lambda s: None)


def test_a_pack_whose_every_row_is_damaged_trains_nothing_and_the_run_goes_on(encoded_out, tiny_t5, tmp_path):
    """One clip a pack (256-token budget, 192-token clips): a damaged row leaves its pack empty. That step still
    runs a forward and backward pass that learns nothing (every worker must take part in each pass), and the
    run trains the other clips."""
    import numpy as np
    import pyarrow.parquet as pq

    from rushes.train import shards

    from types import SimpleNamespace

    from rushes.train.data import split_validation

    folder = next(p for p in (encoded_out / "encodings").iterdir() if p.is_dir())
    ids = [r["clip_id"] for p in shards.shard_paths(folder) for r in pq.read_table(p, columns=["clip_id"]).to_pylist()]
    cfg = _cfg(tiny_t5, steps=6)
    _, val = split_validation([SimpleNamespace(clip_id=i) for i in ids], cfg.data.val_clips)
    val = {e.clip_id for e in val}
    damaged = None
    for path in shards.shard_paths(folder):
        rows = pq.read_table(path).to_pylist()
        for row in rows:
            if damaged is None and row.get("clip_id") not in val and row.get("text"):
                text = np.frombuffer(row["text"], np.float32).copy()
                text[0] = np.nan
                row["text"], damaged = text.tobytes(), row["clip_id"]
                shards.write_shard(folder, rows, path.stem)
    assert damaged and len(set(ids)) == 3
    result = train(encoded_out, tmp_path / "run", cfg, echo=lambda s: None)
    assert len(result.losses) == 6 and all(np.isfinite(result.losses))
    assert 0.0 in result.losses, "the empty pack's step learns nothing"
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("clips") == 0 for r in log if "step" in r), log
