"""``rushes export`` with a bucket: into a bucket prefix (atomic objects, a rerun continues) and from a run in one."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rushes import storage
from rushes.testing.curated_run import NAMES, make_curated_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return make_curated_run(tmp_path_factory.mktemp("export-s3"))


def _export(*args) -> int:
    from rushes.cli import main

    return main(["export", *map(str, args)])


@pytest.mark.slow  # about 20 s on 2 cores (a lease per run, uploads); the local resume test is in the default run
def test_export_into_a_bucket_is_atomic_and_resumable(run, bucket, tmp_path):
    wds = pytest.importorskip("webdataset", reason="pip install webdataset (the test extra)")
    dest = f"{bucket}/exports/wds"
    assert _export(run, dest, "--format", "webdataset", "--shard-size", "2") == 0
    names = sorted(storage.name(u) for u in storage.list_files(dest))
    assert names == ["export.json", "shard-000000.tar", "shard-000001.tar"]
    # A crash: the second shard lost, a half-uploaded temporary left behind, the record not complete.
    storage.delete(f"{dest}/shard-000001.tar")
    storage.write_bytes_atomic(f"{dest}/_tmp-shard-000001.tar-dead", b"half")
    first = storage.read_bytes(f"{dest}/shard-000000.tar")
    assert _export(run, dest, "--format", "webdataset", "--shard-size", "2") == 0
    names = sorted(storage.name(u) for u in storage.list_files(dest))
    assert names == ["export.json", "shard-000000.tar", "shard-000001.tar"]
    assert storage.read_bytes(f"{dest}/shard-000000.tar") == first
    assert json.loads(storage.read_bytes(f"{dest}/export.json"))["complete"]
    for name in ("shard-000000.tar", "shard-000001.tar"):
        (tmp_path / name).write_bytes(storage.read_bytes(f"{dest}/{name}"))
    keys = [s["__key__"] for s in wds.WebDataset(str(tmp_path / "shard-{000000..000001}.tar"), shardshuffle=False)]
    assert sorted(keys) == sorted(NAMES.values())


def test_export_of_a_run_in_a_bucket(run, bucket, tmp_path):
    out = f"{bucket}/runs/a"
    for f in run.rglob("*"):
        if f.is_file():
            storage.copy_file(f, f"{out}/{f.relative_to(run).as_posix()}")
    dest = tmp_path / "from-bucket"
    assert _export(out, dest, "--format", "csv") == 0
    with open(dest / "metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["clip_id"] for r in rows) == sorted(NAMES)
    # cb1's clip file came out of the bucket byte for byte
    assert (dest / "videos" / f"{NAMES['cb1']}.mp4").read_bytes() == (run / "media" / "vb000000" / "cb1.mp4").read_bytes()
