"""caption, encode, train and sample on a run in a bucket (moto's S3 server on loopback), against a local copy.

The run is written by hand (rushes.testing.grey_clips: four 2-second clips of a grey-level video, two of them
encoded clip files under OUT/media, two spans of the source video, which lies in the bucket too), so no curate
run is needed; the captioner is a tiny random-weight Qwen2.5-VL and the text encoder a tiny T5, both loaded with
from_pretrained.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest
from s3_server import SECRETS, all_objects, make_bucket, rushes

from rushes import manifests
from rushes import storage
from rushes.testing.grey_clips import make_grey_video, make_run

REPO = Path(__file__).resolve().parents[2]
SPANS = [(0, 2), (2, 4), (4, 6), (6, 8)]
pytestmark = pytest.mark.slow  # six `rushes` processes with Ray and a tiny VLM: about 4 minutes on 2 cores

# `rushes caption` flushing a part every 2 captions that SIGKILLs itself when the second part is written but not
# yet published: on a bucket that leaves a complete `_tmp-` object and its lease behind.
KILL_BEFORE_PUBLISH = """
import os, signal, sys
from rushes import storage
import rushes.caption.pipeline
rushes.caption.pipeline.FLUSH_ROWS = 2
_publish, _parts = storage.publish, []
def publish_or_die(tmp, final):
    if "/captions/" in str(final) and str(final).endswith(".parquet"):
        _parts.append(final)
        if len(_parts) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return _publish(tmp, final)
storage.publish = publish_or_die
from rushes.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _upload_run(local: Path, source_uri: str, dest: str) -> None:
    """Copy the run ``local`` to the prefix ``dest``, its videos manifest naming the source video's URI."""
    videos = [{**row, "path": source_uri} for row in manifests.read(local, "videos").to_pylist()]
    manifests.write_part(dest, "videos", videos, part_name="part-0")
    for f in storage.list_files(local / "media"):
        storage.copy_file(f, f"{dest}/media/{Path(f).name}")
    storage.copy_file(local / "clips" / "part-0.parquet", f"{dest}/clips/part-0.parquet")


@pytest.fixture(scope="module")
def env(s3_server, tmp_path_factory):
    """A bucket with the grey video under a key with spaces, a local run and a fresh bucket run per call."""
    from rushes.testing.tiny import build_tiny_qwen25_vl, save_tiny_text_encoder

    tmp = tmp_path_factory.mktemp("stages-s3")
    video = make_grey_video(tmp / "grey.mp4")
    local = tmp / "local run"
    ids = make_run(local, video, SPANS, encoded={0, 2})
    bucket = make_bucket(s3_server, f"rushes-{uuid.uuid4().hex[:10]}")
    source = f"{bucket}/raw/day one/grey take.mp4"
    storage.copy_file(video, source)

    def bucket_run(name: str) -> str:
        run = f"{bucket}/runs/{name}"
        _upload_run(local, source, run)
        return run

    return {"tmp": tmp, "local": local, "ids": ids, "bucket": bucket, "bucket_run": bucket_run,
            "vlm": str(build_tiny_qwen25_vl(tmp / "tiny-qwen")), "t5": save_tiny_text_encoder(tmp / "tiny-t5")}


def _caption_args(run: str, env: dict) -> list[str]:
    return ["caption", run, "--preset", "debug", "--model", env["vlm"], "--batch-size", "2",
            "--scratch", str(env["tmp"] / "scratch"), "--scratch-max-gb", "0.1"]


def _captions(run) -> list[dict]:
    keep = ("caption_id", "clip_id", "status", "caption", "error_stage", "frames_used", "frame_times_s",
            "output_tokens")
    return sorted(({k: r[k] for k in keep} for r in manifests.read(run, "captions").to_pylist()),
                  key=lambda r: r["caption_id"])


def _no_secret_no_temp_no_lease(bucket: str) -> None:
    objects = all_objects(bucket)
    assert not [k for k in objects if storage.TEMP_PREFIX in k or k.endswith("/.lock")], sorted(objects)
    for key, data in objects.items():
        assert not any(s.encode() in data for s in SECRETS), f"{key} holds a credential"


@pytest.fixture(scope="module")
def captioned(env):
    """The same clips captioned in the bucket and in the local folder."""
    run = env["bucket_run"]("captioned run")
    res = {where: rushes(*_caption_args(where, env)) for where in (run, str(env["local"]))}
    for where, r in res.items():
        assert r.returncode == 0, f"caption {where}:\n{r.stderr[-4000:]}"
    return {"run": run, "stderr": res[run].stderr}


def test_caption_on_a_bucket_run_equals_the_local_run(env, captioned):
    remote = _captions(captioned["run"])
    assert sorted(r["clip_id"] for r in remote) == sorted(env["ids"])
    assert remote == _captions(env["local"])  # same caption ids, text, frames and token counts
    assert not [r for r in remote if r["status"] != "ok" and r["error_stage"] == "frames"], remote
    # Live progress, as one log line when stderr is not a terminal.
    assert "caption progress: 4/4 clips, " in captioned["stderr"]
    # Scratch copies of the clip files are gone; nothing unpublished, no lease, no credential in the bucket.
    scratch = env["tmp"] / "scratch"
    assert not [p for p in scratch.iterdir() if p.name.startswith(("rushes-", ".rushes-"))]
    _no_secret_no_temp_no_lease(env["bucket"])


def test_caption_killed_on_a_bucket_then_rerun_completes(env, captioned):  # compared with the local captions
    run = env["bucket_run"]("killed run")
    killed = rushes(*_caption_args(run, env), script=KILL_BEFORE_PUBLISH)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    left = [u for u in storage.list_files(f"{run}/captions") if storage.TEMP_PREFIX in u]
    assert len(left) == 1, "the second part was written but never published"
    assert manifests.read(run, "captions").num_rows == 2, "readers see only the published part"
    assert storage.is_file(f"{run}/.lock"), "the killed writer's lease is still there"
    rerun = rushes(*_caption_args(run, env))
    assert rerun.returncode == 0, rerun.stderr[-4000:]  # the dead writer's lease is taken over at once
    assert _captions(run) == _captions(env["local"])
    assert manifests.read_summary(run)["caption"]["skipped_done"] == 2  # only the missing clips were captioned
    assert not [u for u in storage.list_files(run) if storage.TEMP_PREFIX in u or u.endswith("/.lock")]
    # Copies the killed processes held in scratch were reclaimed by the rerun's reservations.
    assert not [p for p in (env["tmp"] / "scratch").iterdir() if p.name.startswith(("rushes-", ".rushes-"))]


def test_a_second_writer_on_a_bucket_run_is_refused_at_once(env, captioned):
    from rushes.manifests.lock import lease

    with lease(captioned["run"], "rushes encode", settle_s=0):
        res = rushes(*_caption_args(captioned["run"], env))
    assert res.returncode == 2 and "is being written by pid" in res.stderr and "(rushes encode)" in res.stderr


def _train_cfg(env, steps: int):
    from rushes.train.config import preset

    return preset("tiny").with_overrides(
        data={"text_encoder": env["t5"], "max_frames": 4, "clip_tokens": 192, "batch_tokens": 256, "val_clips": 1},
        train={"steps": steps, "log_every": 1, "val_every": steps, "checkpoint_every": steps, "warmup_steps": 1})


def test_encode_writes_shards_to_the_bucket_train_streams_them_and_sample_reads_the_checkpoint(env, captioned):
    pytest.importorskip("torch")
    from rushes.train import shards
    from rushes.train.loop import train
    from rushes.train.sample import sample_to_file

    run = captioned["run"]
    ok = [r["clip_id"] for r in _captions(run) if r["status"] == "ok"]
    assert len(ok) >= 2, "the tiny captioner wrote too few ok captions to train on"
    scratch = env["tmp"] / "encode scratch"
    res = rushes("encode", run, "--text-encoder", env["t5"], "--max-frames", "4", "--clip-tokens", "192",
                 "--shard-rows", "2", "--scratch", str(scratch))
    assert res.returncode == 0, res.stderr[-4000:]
    assert scratch.is_dir() and not [p for p in scratch.iterdir() if p.name.startswith(("rushes-", ".rushes-"))]
    cfg = _train_cfg(env, 2)
    folder = shards.find_encodings(run, shards.key_inputs(cfg.data, cfg.model.patch_size))
    assert str(folder).startswith(f"{run}/encodings/") and len(shards.shard_paths(folder)) >= 1
    assert sorted(shards.read_status(folder)) == sorted(ok)
    streamed = train(run, env["tmp"] / "train streamed", cfg, echo=lambda s: None)
    assert len(streamed.losses) == 2 and streamed.skipped == 0
    assert manifests.read_summary(run)["train"]["encodings"] == str(folder)
    # Without encodings the clips are decoded from scratch copies of the bucket's clip files and source video.
    fly = train(run, env["tmp"] / "train on the fly", cfg, echo=lambda s: None, use_encodings=False)
    assert fly.num_clips == len(ok) and fly.skipped == 0 and len(fly.losses) == 2
    video = sample_to_file(env["tmp"] / "train streamed", "a grey clip", env["tmp"] / "sample.mp4", frames=2,
                           size=(16, 16), steps=2)
    assert video.stat().st_size > 0
    _no_secret_no_temp_no_lease(env["bucket"])
