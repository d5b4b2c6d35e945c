"""`rushes encode` on Ray Data: shards readable without rushes, exact frames, resume, failures as rows, keys."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from rushes.testing.train_manifests import Clip, write_manifest

from rushes.train import shards
from rushes.train.config import preset
from rushes.manifests.clips import captioned_clips
from rushes.train.data import plan_clip
from rushes.train.encode import EncodeConfig


def _cfg(tiny_t5, **data):
    return preset("tiny").with_overrides(data={"text_encoder": tiny_t5, "max_frames": 4, "clip_tokens": 192,
                                               "batch_tokens": 512, **data})


@pytest.fixture
def out_copy(synth_out, tmp_path):
    """A private copy of the synthetic OUT: encodings are written into OUT."""
    return shutil.copytree(synth_out, tmp_path / "out")


def _read_all(folder):
    return pq.read_table([str(p) for p in shards.shard_paths(folder)]).to_pylist() if shards.shard_paths(
        folder) else []


def test_encode_writes_what_training_plans_readable_without_rushes(out_copy, tiny_t5, ray_local):
    from rushes.train.data import decode_rgb
    from rushes.train.encoders import TextEncoder
    from rushes.train.pipeline import run_encode

    cfg = _cfg(tiny_t5)
    summary = run_encode(out_copy, cfg, EncodeConfig(batch_size=2))
    assert summary["ok"] == 3 and summary["error"] == 0 and summary["shards"] == 1
    folder = out_copy / "encodings" / summary["key"]
    key = json.loads((folder / "key.json").read_text())
    assert key["fps"] == 8.0 and key["patch_size"] == [1, 4, 4] and key["text_encoder"] == tiny_t5
    assert key["text_encoder_revision"].startswith("local:") and key["vae"] is None
    rows = {r["clip_id"]: r for r in _read_all(folder)}  # plain pyarrow + numpy from here on
    assert sorted(rows) == ["clip0000", "clip0001", "clip0002"]
    enc = TextEncoder(tiny_t5, cfg.data.max_text_tokens)
    for src in captioned_clips(out_copy):
        row = rows[src.clip_id]
        frames = np.frombuffer(row["video"], row["video_dtype"]).reshape(row["video_shape"])
        plan = plan_clip(src.width_px, src.height_px, src.end_s - src.start_s, 8.0, 4, 192, (1, 4, 4), 128)
        assert np.array_equal(frames, decode_rgb(src, plan, 8.0))  # bit-exact: the frames training decodes
        assert row["num_tokens"] == plan.tokens and row["caption"] == src.caption
        emb, mask = enc.encode([src.caption])
        text = np.frombuffer(row["text"], row["text_dtype"]).reshape(row["text_shape"])
        assert np.allclose(text, emb[0][mask[0]].numpy(), atol=1e-5)
    assert shards.read_null_caption(folder).shape[-1] == 32
    assert not [p for p in folder.iterdir() if p.name.startswith("_")]  # no temporary file left


def test_encode_resumes_records_failures_and_retries_them(tmp_path, synth_out, tiny_t5, ray_local):
    from rushes.testing.synth import make_cut_video

    from rushes.train.pipeline import run_encode

    good = make_cut_video(tmp_path / "good.mp4", [1.0], fps=16, size=(64, 48))
    out = write_manifest(tmp_path / "out", [Clip(good.path, 0.0, 1.0, 64, 48, "a test pattern"),
                                            Clip(str(tmp_path / "gone.mp4"), 0.0, 1.0, 64, 48, "a missing file"),
                                            Clip(good.path, 0.0, 0.05, 64, 48, "far too short")])
    cfg = _cfg(tiny_t5)
    first = run_encode(out, cfg, EncodeConfig(batch_size=2))
    assert (first["ok"], first["error"]) == (1, 2)
    assert first["error_by_stage"] == {"decode": 1, "plan": 1}
    folder = out / "encodings" / first["key"]
    errors = {r["clip_id"]: r for r in _read_all(folder) if r["status"] == "error"}
    assert "gone.mp4" in errors["clip0001"]["error_message"] and "too short" in errors["clip0002"]["error_message"]

    shutil.copy(good.path, tmp_path / "gone.mp4")  # the missing file appears: its retry succeeds
    again = run_encode(out, cfg, EncodeConfig(batch_size=2))
    assert again["skipped_done"] == 1 and again["retrying_errors"] == 2 and again["to_encode"] == 2
    assert (again["ok"], again["error_by_stage"]) == (1, {"plan": 1})
    assert shards.read_status(folder)["clip0001"][1] == "ok"
    assert len(shards.shard_paths(folder)) == 2  # the first run's shard is kept; the retry wrote its own


@pytest.mark.slow
def test_encode_with_a_vae_stores_latents_under_another_key(out_copy, tiny_t5, tmp_path, ray_local):
    from rushes.testing.tiny import save_tiny_vae
    from rushes.train.pipeline import run_encode

    vae = save_tiny_vae(tmp_path / "wan", kind="wan")
    cfg = _cfg(tiny_t5, vae=vae, max_frames=5, clip_tokens=64)
    latent = run_encode(out_copy, cfg, EncodeConfig())
    pixel_key = shards.encoding_key(shards.key_inputs(_cfg(tiny_t5).data, cfg.model.patch_size))
    assert latent["key"] != pixel_key and latent["ok"] == 3
    assert json.loads((out_copy / "encodings" / latent["key"] / "key.json").read_text())["vae_revision"]
    row = _read_all(out_copy / "encodings" / latent["key"])[0]
    assert row["video_dtype"] == "float32" and row["video_shape"][0] == 4  # (C, T', H', W') latent
    assert row["video_shape"][1] == 2  # 5 frames through a 4x causal VAE -> 2 latent frames
    video = np.frombuffer(row["video"], np.float32)
    assert np.isfinite(video).all() and video.std() > 0


def test_find_encodings_names_the_setting_that_differs(tmp_path, tiny_t5):
    cfg = _cfg(tiny_t5)
    patch = cfg.model.patch_size
    inputs = shards.key_inputs(cfg.data, patch)
    assert shards.find_encodings(tmp_path, inputs) is None  # no encodings: training decodes on the fly
    shards.write_key(shards.key_dir(tmp_path, inputs), inputs)
    assert shards.find_encodings(tmp_path, inputs) == shards.key_dir(tmp_path, inputs)
    other = _cfg(tiny_t5, fps=4.0)
    with pytest.raises(shards.EncodingMismatch, match=r"fps=8\.0 \(this run: 4\.0\)"):
        shards.find_encodings(tmp_path, shards.key_inputs(other.data, patch))
    with pytest.raises(shards.EncodingMismatch, match=r"patch_size"):
        shards.find_encodings(tmp_path, shards.key_inputs(cfg.data, (1, 2, 2)))


def test_a_changed_model_folder_changes_the_revision(tiny_t5, tmp_path):
    copy = shutil.copytree(tiny_t5, tmp_path / "t5")
    assert shards.model_revision(str(copy)) == shards.model_revision(tiny_t5)
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**cfg, "dropout_rate": 0.2}))
    assert shards.model_revision(str(copy)) != shards.model_revision(tiny_t5)


def test_encode_command_line_help_and_dry_run(out_copy, tiny_t5, capsys):
    from rushes.cli import main

    with pytest.raises(SystemExit):
        main(["encode", "--help"])
    text = capsys.readouterr().out
    for flag in ("--text-encoder", "--vae", "--fps", "--clip-tokens", "--batch-size", "--concurrency", "--num-gpus",
                 "--address", "--dry-run"):
        assert flag in text
    assert main(["encode", str(out_copy), "--text-encoder", tiny_t5, "--max-frames", "4", "--clip-tokens", "192",
                 "--dry-run"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["to_encode"] == 3 and summary["dry_run"] and not (out_copy / "encodings").exists()
    assert summary["key"] == shards.encoding_key(shards.key_inputs(_cfg(tiny_t5).data, (1, 4, 4)))


def test_encode_refuses_a_second_writer_on_one_out(out_copy, tiny_t5, capsys):
    from rushes.manifests.lock import acquire
    from rushes.cli import main

    with acquire(out_copy, "rushes caption"):  # another writer holds OUT
        code = main(["encode", str(out_copy), "--text-encoder", tiny_t5, "--max-frames", "4", "--clip-tokens", "192"])
    err = capsys.readouterr().err
    assert code == 2 and "is being written by" in err and "rushes caption" in err
    assert not (out_copy / "encodings").exists()
