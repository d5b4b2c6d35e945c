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
