"""`rushes train --run s3://...`: a run directory in a bucket (moto's S3 server on loopback) trains, resumes
and samples exactly as a folder run does, and a checkpoint whose upload was cut short is never read."""

from __future__ import annotations

import io
import json
import threading

import numpy as np
import pytest
import torch
from s3_server import rushes
from safetensors.torch import load as load_safetensors

from rushes import storage
from rushes.manifests.lock import LockError, writer_lock
from rushes.cli import main
from rushes.testing.tiny import save_tiny_text_encoder
from rushes.testing.train_shards import write_random_run
from rushes.train import rundir
from rushes.train.config import RunConfig, preset
from rushes.train.loop import train
from rushes.train.sample import sample_video


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def t5(tmp_path_factory) -> str:
    return save_tiny_text_encoder(tmp_path_factory.mktemp("t5") / "tiny-t5", kind="t5")


def _cfg(t5: str, steps: int):
    return preset("tiny").with_overrides(
        data={"text_encoder": t5, "max_frames": 4, "clip_tokens": 96, "batch_tokens": 256, "val_clips": 1,
              "packs_per_step": 2, "stream_window": 16},
        train={"steps": steps, "log_every": 1, "val_every": 2, "checkpoint_every": 1, "warmup_steps": 2})


@pytest.fixture
def out(tmp_path, t5):
    """A local OUT with 24 tiny random clips and their encodings (the RUN is what lies in the bucket)."""
    return write_random_run(tmp_path / "out", _cfg(t5, 1), 24, shard_rows=8)


def _quiet(_):
    pass


def _objects(run: str) -> list[str]:
    return [o[len(run) + 1:] for o in storage.list_files(run)]


def _tensors(where) -> dict[str, torch.Tensor]:
    return load_safetensors(storage.read_bytes(where))


def test_a_bucket_run_resumes_exactly_like_a_folder_run(out, t5, bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in a local folder named after the URI
    folder = train(out, tmp_path / "folder", _cfg(t5, 4), echo=_quiet)
    run = f"{bucket}/runs/a"
    first = train(out, run, _cfg(t5, 2), echo=_quiet)
    assert first.run_dir == run and rundir.latest_step(run) == 2
    said = []
    second = train(out, run, _cfg(t5, 4), echo=said.append)
    assert second.start_step == 2 and f"resumed from {run}/checkpoints/step-0000002 at step 2" in said
    np.testing.assert_allclose(first.losses + second.losses, folder.losses, rtol=1e-6)

    objects = _objects(run)  # keep=2 as on disk: the older checkpoints are deleted from the bucket
    assert sorted({o.split("/")[1] for o in objects if o.startswith("checkpoints/step-")}) == \
        ["step-0000003", "step-0000004"]
    assert storage.read_bytes(f"{run}/checkpoints/latest").decode() == "step-0000004"
    assert {"config.json", "selection.json", "skipped.jsonl", "log.jsonl"} <= set(objects)
    local = (tmp_path / "folder" / "checkpoints" / "step-0000004" / "ema.safetensors").read_bytes()
    for name, value in load_safetensors(local).items():
        assert torch.equal(_tensors(f"{run}/checkpoints/step-0000004/ema.safetensors")[name], value)
    log = [json.loads(line) for line in storage.read_bytes(f"{run}/log.jsonl").decode().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3, 4]  # one run, each step once
    np.testing.assert_allclose([r["loss"] for r in log if "loss" in r], folder.losses, rtol=1e-6)
    assert json.loads(storage.read_bytes(f"{run}/config.json"))["train"]["steps"] == 4
    assert json.loads((out / "summary.json").read_text())["train"]["run_dir"] == run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "out"]

    # rushes sample reads the bucket run's newest checkpoint: the same video as from the folder run
    kwargs = {"frames": 2, "size": (16, 16), "steps": 2, "device": "cpu"}
    np.testing.assert_array_equal(sample_video(run, "random clip 3", **kwargs)[0],
                                  sample_video(tmp_path / "folder", "random clip 3", **kwargs)[0])


def test_a_checkpoint_cut_short_in_the_bucket_is_never_read(out, t5, bucket, tmp_path):
    folder = train(out, tmp_path / "folder", _cfg(t5, 4), echo=_quiet)
    run = f"{bucket}/runs/b"
    train(out, run, _cfg(t5, 2), echo=_quiet)
    # a run killed while uploading step 3: a part of its files, and latest still naming step 2
    storage.write_bytes_atomic(f"{run}/checkpoints/step-0000003/model.safetensors", b"cut short")
    assert rundir.latest_step(run) == 2
    resumed = train(out, run, _cfg(t5, 4), echo=_quiet)
    assert resumed.start_step == 2
    np.testing.assert_allclose(resumed.losses, folder.losses[2:], rtol=1e-6)
    assert sorted(o.split("/")[-1] for o in _objects(run) if o.startswith("checkpoints/step-0000003/")) == \
        ["ema.safetensors", "model.safetensors", "optimizer.pt", "rng.safetensors", "state.json"]
    torch.load(io.BytesIO(storage.read_bytes(f"{run}/checkpoints/step-0000004/optimizer.pt")), weights_only=True)


def test_train_and_sample_a_bucket_run_from_the_command_line(out, t5, bucket, tmp_path, capsys):
    run = f"{bucket}/runs/c"
    common = [str(out), "--run", run, "--preset", "tiny", "--text-encoder", t5, "--max-frames", "4",
              "--clip-tokens", "96", "--batch-tokens", "256", "--log-every", "1", "--progress-every", "0"]
    assert main(["train", *common, "--steps", "1"]) == 0
    assert f"checkpoints in {run}/checkpoints" in capsys.readouterr().out
    assert main(["train", *common, "--steps", "2", "--lr", "0.5"]) == 0  # resumes with the saved config
    said = capsys.readouterr().out
    assert "trained steps 1 -> 2" in said and "train progress: step 2/2," in said
    assert json.loads(storage.read_bytes(f"{run}/config.json"))["train"]["lr"] != 0.5
    video = tmp_path / "s.mp4"
    assert main(["sample", run, "--prompt", "random clip 1", "--frames", "2", "--size", "16x16", "--steps", "2",
                 "--out", str(video)]) == 0
    assert video.stat().st_size > 0
    assert main(["sample", f"{bucket}/runs/none", "--prompt", "x", "--out", str(video)]) == 2
    assert f"{bucket}/runs/none/config.json not found" in capsys.readouterr().err


@pytest.mark.slow
def test_two_ray_train_workers_train_a_bucket_run_and_one_process_resumes_it(out, t5, bucket, tmp_path):
    """`rushes train --workers 2` with nothing but the bucket for RUN: each worker trains in its own working copy;
    worker 0 uploads, and the records it logs reach the driver's progress; a rerun in one process resumes the bucket's
    checkpoint with the losses of an uninterrupted run."""
    run = f"{bucket}/runs/workers"
    flags = [str(out), "--run", run, "--preset", "tiny", "--text-encoder", t5, "--max-frames", "4",
             "--clip-tokens", "96", "--batch-tokens", "256", "--log-every", "1", "--checkpoint-every", "1",
             "--packs-per-step", "2"]
    done = rushes("train", *flags, "--steps", "2", "--workers", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained steps 0 -> 2" in done.stdout
    said = done.stdout  # worker 0's log records, through a Ray queue to the driver's progress
    assert "train progress: step 2/2," in said and "step=2 loss=" in said
    saved = json.loads(storage.read_bytes(f"{run}/config.json"))
    assert saved["workers"] == 2 and rundir.latest_step(run) == 2
    cfg = RunConfig.from_dict(saved).with_overrides(train={"steps": 4})
    folder = train(out, tmp_path / "folder", cfg, echo=_quiet)  # the same config, one process, uninterrupted
    log = [json.loads(line) for line in storage.read_bytes(f"{run}/log.jsonl").decode().splitlines()]
    assert [r["workers"] for r in log if "loss" in r] == [2, 2]
    np.testing.assert_allclose([r["loss"] for r in log if "loss" in r], folder.losses[:2], rtol=1e-4)
    resumed = train(out, run, cfg, echo=_quiet)
    assert resumed.start_step == 2
    np.testing.assert_allclose(resumed.losses, folder.losses[2:], rtol=1e-4)


@pytest.mark.parametrize("kind", ["folder", "bucket"])
def test_a_second_trainer_on_a_run_is_refused_at_once_naming_the_first(out, t5, bucket, tmp_path, capsys, kind):
    run = str(tmp_path / "run") if kind == "folder" else f"{bucket}/runs/locked"
    with writer_lock(run, "rushes train"):  # the first trainer (a file lock, or a lease in the bucket)
        with pytest.raises(LockError, match=r"is being written by pid \d+ on host .*\(rushes train\).*another run "
                           r"directory") as refused:  # the library names no flag ...
            train(out, run, _cfg(t5, 1), echo=_quiet)
        assert refused.value.reason == "busy" and "--run" not in str(refused.value)
        assert main(["train", str(out), "--run", run, "--text-encoder", t5, "--steps", "1"]) == 2
        assert "another --run" in capsys.readouterr().err  # ... the command line does
        assert not storage.exists(storage.join(run, "checkpoints"))
    assert train(out, run, _cfg(t5, 1), echo=_quiet).step == 1  # released: the run trains


def test_checkpoint_uploads_run_beside_training_in_order_and_raise_their_errors(bucket, tmp_path, monkeypatch):
    """Uploads (worker 0's) against the real server, with its file copies held at a gate: push returns at once,
    the bucket shows the checkpoint only when its marker is written last, the log is the one of the pushed step,
    and an upload's error is raised by the next wait."""
    run, local = f"{bucket}/runs/uploads", tmp_path / "work"
    FAKE = ("model.safetensors",)  # the one file these stand-in checkpoints hold
    (local / "checkpoints" / "step-0000001").mkdir(parents=True)
    (local / "checkpoints" / "step-0000001" / "model.safetensors").write_bytes(b"weights")
    (local / "log.jsonl").write_text('{"step": 1}\n')
    gate, copy = threading.Event(), storage.copy_file
    def gated(src, dst):
        assert gate.wait(60), "the test never opened the gate"
        copy(src, dst)
    monkeypatch.setattr(storage, "copy_file", gated)
    uploads = rundir.Uploads(local, run)
    uploads.push("step-0000001")  # returns while the upload waits at the gate
    with open(local / "log.jsonl", "a") as fh:  # training goes on: a later line is not in this upload
        fh.write('{"step": 2}\n')
    assert rundir.latest_name(run, need=FAKE) is None
    gate.set()
    uploads.wait()
    assert rundir.latest_name(run, need=FAKE) == "step-0000001"
    assert storage.read_bytes(f"{run}/log.jsonl") == b'{"step": 1}\n'
    assert storage.read_bytes(f"{run}/checkpoints/step-0000001/model.safetensors") == b"weights"

    def broken(src, dst):
        raise OSError("the bucket refused the upload")
    monkeypatch.setattr(storage, "copy_file", broken)
    (local / "checkpoints" / "step-0000002").mkdir()
    (local / "checkpoints" / "step-0000002" / "model.safetensors").write_bytes(b"weights 2")
    uploads.push("step-0000002")
    with pytest.raises(OSError, match="refused"):
        uploads.close()
    assert rundir.latest_name(run, need=FAKE) == "step-0000001"  # the marker still names the complete checkpoint


def test_a_bucket_refusing_the_upload_fails_the_run_with_its_error(out, t5, bucket, monkeypatch, capsys):
    """The upload runs beside training, yet its error ends the run (exit 2 with the bucket's message): a run that
    cannot save its checkpoints never looks done."""
    def refused(src, dst):
        raise OSError(f"AWS Error ACCESS_DENIED during PutObject operation: {dst}")
    monkeypatch.setattr(storage, "copy_file", refused)
    run = f"{bucket}/runs/refused"
    with pytest.raises(OSError, match="ACCESS_DENIED"):
        train(out, run, _cfg(t5, 2), echo=_quiet)
    assert main(["train", str(out), "--run", run, "--text-encoder", t5, "--max-frames", "4", "--clip-tokens", "96",
                 "--batch-tokens", "256", "--steps", "1"]) == 2
    assert "rushes train: AWS Error ACCESS_DENIED" in capsys.readouterr().err
    assert rundir.latest_name(run) is None
