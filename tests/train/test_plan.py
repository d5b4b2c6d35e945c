"""A run's config is complete before it starts: `rushes train --dry-run` prints the config.json the run writes."""

from __future__ import annotations

import json
import shutil

import pytest

from rushes.cli import main
from rushes.testing.tiny import save_tiny_text_encoder, save_tiny_vae
from rushes.testing.train_shards import encode_in_process, write_random_run
from rushes.train import shards
from rushes.train.config import preset
from rushes.train.encoders import TensorDims
from rushes.train.loop import train
from rushes.train.plan import plan_run


def _printed_config(stdout: str) -> dict:
    """The first JSON document the dry run prints: the config."""
    return json.JSONDecoder().raw_decode(stdout[stdout.index("{"):])[0]


def _dry_run_then_run(out, run, flags: list[str], capsys) -> tuple[dict, dict, str]:
    args = ["train", str(out), "--run", str(run), "--preset", "tiny", "--steps", "1", *flags]
    assert main([*args, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert not run.exists()  # a dry run writes nothing
    assert main(args) == 0
    capsys.readouterr()
    return _printed_config(printed), json.loads((run / "config.json").read_text()), printed


def test_the_dry_run_prints_the_config_a_run_decoding_on_the_fly_saves(synth_out, tmp_path, capsys):
    # widths unlike the config's defaults (3 channels, 32-wide text): a placeholder cannot pass for them
    clip = save_tiny_text_encoder(tmp_path / "clip", kind="clip", hidden=48)
    vae = save_tiny_vae(tmp_path / "vae", kind="image")  # AutoencoderKL, 4 latent channels
    printed, saved, _ = _dry_run_then_run(synth_out, tmp_path / "run", [
        "--text-encoder", clip, "--vae", vae, "--max-frames", "2", "--clip-tokens", "64", "--batch-tokens", "256"],
        capsys)
    assert printed == saved
    assert (saved["model"]["in_channels"], saved["model"]["text_dim"]) == (4, 48)


def test_the_dry_run_prints_the_config_a_run_streaming_encodings_saves(synth_out, tmp_path, capsys):
    t5 = save_tiny_text_encoder(tmp_path / "t5", kind="t5", hidden=40)
    out = shutil.copytree(synth_out, tmp_path / "out")
    flags = ["--text-encoder", t5, "--max-frames", "4", "--clip-tokens", "128", "--batch-tokens", "256"]
    cfg = preset("tiny").with_overrides(data={"text_encoder": t5, "max_frames": 4, "clip_tokens": 128,
                                              "batch_tokens": 256})
    folder = encode_in_process(out, cfg)
    assert json.loads((folder / "key.json").read_text())["tensors"] == {"channels": 3, "text_dim": 40}
    printed, saved, stdout = _dry_run_then_run(out, tmp_path / "run", flags, capsys)
    assert f"streamed from {folder}" in stdout
    assert printed == saved and saved["model"]["text_dim"] == 40


def test_encodings_from_before_key_json_held_their_widths_still_plan(tiny_t5, tmp_path):
    cfg = preset("tiny").with_overrides(data={"text_encoder": tiny_t5})
    out = write_random_run(tmp_path / "out", cfg, 4)
    folder = shards.find_encodings(out, shards.key_inputs(cfg.data, cfg.model.patch_size))
    key = json.loads((folder / "key.json").read_text())
    (folder / "key.json").write_text(json.dumps({k: v for k, v in key.items() if k != "tensors"}))
    assert shards.read_dims(folder) == TensorDims(3, 32)  # from the empty caption and the first ok row
    assert plan_run(out, cfg).cfg.model.text_dim == 32
    with pytest.raises(shards.EncodingMismatch) as err:  # the widths are no setting a run could differ in
        shards.find_encodings(out, shards.key_inputs(cfg.with_overrides(data={"fps": 4.0}).data, (1, 4, 4)))
    assert "tensors" not in str(err.value)


def test_data_of_other_widths_than_the_plan_are_refused(tiny_t5, tmp_path):
    cfg = preset("tiny").with_overrides(data={"text_encoder": tiny_t5, "batch_tokens": 512},
                                        train={"steps": 1})
    out = write_random_run(tmp_path / "out", cfg, 4)
    folder = shards.find_encodings(out, shards.key_inputs(cfg.data, cfg.model.patch_size))
    shards.write_key(folder, shards.key_inputs(cfg.data, cfg.model.patch_size), TensorDims(3, 16))  # a wrong record
    with pytest.raises(ValueError, match=r"32-wide caption embeddings, but the key\.json .* text_dim 16"):
        train(out, tmp_path / "run", cfg, echo=lambda s: None)
