"""The storage layer and manifests on a real S3 server (moto on 127.0.0.1): listing, publish, scratch copies."""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from s3_server import SECRETS, all_objects

from rushes import manifests
from rushes import storage
from rushes.manifests import store

REPO = Path(__file__).resolve().parents[2]


def _clip(i: int, keep: bool = True) -> dict:
    return {"clip_id": f"c{i}", "video_id": "v0", "start_s": float(i), "end_s": i + 1.0, "keep": keep,
            "reject_reason": None if keep else "too_short"}


def test_listing_and_globs_keep_keys_with_spaces(bucket):
    keys = ["raw/day one/take 1.mp4", "raw/day one/take 2.MOV", "raw/day two/notes.txt", "raw/top.mp4"]
    for k in keys:
        storage.write_bytes_atomic(f"{bucket}/{k}", k.encode())
    assert storage.list_files(f"{bucket}/raw") == [f"{bucket}/{k}" for k in sorted(keys)]
    assert storage.list_files(f"{bucket}/raw/day one", recursive=False) == [
        f"{bucket}/raw/day one/take 1.mp4", f"{bucket}/raw/day one/take 2.MOV"]
    assert storage.glob(f"{bucket}/raw/**/*.mp4") == [f"{bucket}/raw/day one/take 1.mp4", f"{bucket}/raw/top.mp4"]
    assert storage.glob(f"{bucket}/raw/*/take ?.*") == [f"{bucket}/raw/day one/take 1.mp4",
                                                         f"{bucket}/raw/day one/take 2.MOV"]
    assert storage.list_files(f"{bucket}/nothing-here") == [] and storage.glob(f"{bucket}/nope/*.mp4") == []
    assert storage.is_dir(f"{bucket}/raw/day one") and storage.is_file(f"{bucket}/raw/top.mp4")
    assert storage.read_bytes(f"{bucket}/raw/day one/take 1.mp4") == b"raw/day one/take 1.mp4"
    # No temporary object is left behind by the atomic writes.
    assert not [u for u in storage.list_files(bucket) if storage.TEMP_PREFIX in u]


def test_curate_inputs_expand_prefixes_globs_and_txt_lists_in_a_bucket(bucket, tmp_path):
    from rushes.curate.inputs import expand_inputs

    for k in ["raw/day one/take 1.mp4", "raw/day one/take 2.MOV", "raw/day one/notes.md", "raw/b/c.mkv",
              "runs/a/media/v/clip.mp4"]:
        storage.write_bytes_atomic(f"{bucket}/{k}", b"x")
    storage.write_bytes_atomic(f"{bucket}/lists/day one.txt", "\n".join([
        "# relative lines resolve against the list's prefix", f"{bucket}/raw/b/", "../raw/nope.mp4  # kept as given",
        f"{bucket}/raw/day one/*.MOV", f"{bucket}/lists/day one.txt"]).encode())
    local_list = tmp_path / "list.txt"
    local_list.write_text(f"{bucket}/raw/day one/take 1.mp4\n")
    got = expand_inputs([f"{bucket}/lists/day one.txt", str(local_list), f"{bucket}/raw", f"{bucket}/runs"],
                        exclude_dir=f"{bucket}/runs/a")
    assert got == [f"{bucket}/raw/b/c.mkv", f"{bucket}/lists/../raw/nope.mp4", f"{bucket}/raw/day one/take 2.MOV",
                   f"{bucket}/raw/day one/take 1.mp4"]


def test_inspect_sql_and_summary_read_a_bucket_run(bucket):
    from rushes.inspect.sql import query
    from rushes.inspect.summary import summarize

    run = f"{bucket}/runs/a run"
    manifests.write_part(run, "videos", [{"video_id": "v0", "path": f"{bucket}/raw/a b.mp4", "status": "ok",
                                          "duration_s": 4.0}], part_name="part-v0")
    manifests.write_part(run, "clips", [_clip(0), _clip(1, keep=False), _clip(2)], part_name="part-v0")
    _unpublished(run)
    result = query(run, "SELECT count(*), count(*) FILTER (WHERE keep) FROM clips JOIN videos USING (video_id)")
    assert result.rows == [(3, 2)]
    assert query(run, "SELECT count(*) FROM captions").rows == [(0,)]
    s = summarize(run)
    assert (s.videos_total, s.videos_ok, s.clips_total, s.clips_kept) == (1, 1, 3, 2)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        query(f"{bucket}/runs/none", "SELECT 1")
    res = subprocess.run([sys.executable, "-m", "rushes.cli", "inspect", run, "--sql", "SELECT count(*) n FROM clips",
                          "--format", "csv"], cwd=REPO, capture_output=True, text=True, check=False, timeout=300)
    assert (res.returncode, res.stdout) == (0, "n\n3\n"), res.stderr


def test_unsupported_scheme_and_bucketless_uri_name_the_fix():
    with pytest.raises(storage.StorageError, match="unsupported location scheme ftp://"):
        storage.list_files("ftp://host/x")
    with pytest.raises(storage.StorageError, match="names no bucket"):
        storage.resolve("s3://")


def _unpublished(bucket_run: str) -> None:
    """What a writer killed mid-write leaves: a complete but unpublished part and a half-written one."""
    good = manifests.conform([_clip(9)], "clips")
    with storage.open_output(f"{bucket_run}/clips/_tmp-part-late.parquet-1a2b3c4d") as fh:
        pq.write_table(good, fh)
    storage.write_bytes_atomic(f"{bucket_run}/clips/_tmp-part-half.parquet-5e6f7a8b", b"PAR1 half written")
    with storage.open_output(f"{bucket_run}/clips/_tmp-part-late.parquet") as fh:  # even with the final suffix
        pq.write_table(good, fh)


def test_manifests_in_a_bucket_show_only_published_parts(bucket):
    run = f"{bucket}/runs/first run"
    manifests.write_part(run, "clips", [_clip(0), _clip(1)], part_name="part-a")
    manifests.write_part(run, "clips", [_clip(2, keep=False)], part_name="part-b")
    manifests.write_part(run, "clips", [_clip(0, keep=False), _clip(1)], part_name="part-a")  # replaces part-a
    _unpublished(run)
    assert [storage.name(p) for p in manifests.part_paths(run, "clips")] == ["part-a.parquet", "part-b.parquet"]
    table = manifests.read(run, "clips")
    assert sorted(table.column("clip_id").to_pylist()) == ["c0", "c1", "c2"]
    assert dict(zip(table["clip_id"].to_pylist(), table["keep"].to_pylist()))["c0"] is False
    # DuckDB and pyarrow.dataset read through this layer (no DuckDB extension): the same visible rows.
    import duckdb

    con = duckdb.connect()
    con.register("clips", store.dataset(run, "clips"))
    assert con.execute("SELECT count(*), count(*) FILTER (WHERE keep) FROM clips").fetchone() == (3, 1)
    assert store.dataset(run, "clips").to_table().num_rows == 3
    assert store.dataset(run, "captions").to_table().num_rows == 0  # absent manifest: empty, declared schema
    assert manifests.remove_temp_files(run, "clips") == 3
    assert not [u for u in storage.list_files(run) if "_tmp-" in u]


def test_a_write_that_fails_midway_leaves_no_visible_part_and_no_temp(bucket, monkeypatch):
    run = f"{bucket}/run"

    def broken_write(table, where, **kw):
        where.write(b"PAR1 first bytes of a part")
        raise OSError("connection reset while uploading")

    monkeypatch.setattr(store.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="connection reset"):
        manifests.write_part(run, "videos", [{"video_id": "v0", "path": "s3://x/a.mp4", "status": "ok"}],
                             part_name="part-v0")
    assert manifests.part_paths(run, "videos") == [] and storage.list_files(run) == []


def test_summary_config_and_parts_in_a_bucket_hold_no_secret(bucket):
    run = f"{bucket}/run"
    manifests.write_part(run, "videos", [{"video_id": "v0", "path": f"{bucket}/raw/a b.mp4", "status": "ok"}],
                         part_name="part-v0")
    manifests.update_summary(run, "curate", {"videos": 1})
    manifests.update_summary(run, "filter", {"kept": 0})
    manifests.write_json_atomic(f"{run}/config/curate.json", {"config": {"x": 1}})
    assert manifests.read_summary(run) == {"curate": {"videos": 1}, "filter": {"kept": 0}}
    objects = all_objects(bucket)
    assert sorted(objects) == ["run/config/curate.json", "run/summary.json", "run/videos/part-v0.parquet"]
    for key, data in objects.items():
        for secret in SECRETS:
            assert secret.encode() not in data, f"{key} contains a credential"


def test_content_hash_streams_objects_and_scratch_copies_are_removed(bucket, tmp_path):
    data = os.urandom(3 * 2**20 + 17)
    local = tmp_path / "a.mp4"
    local.write_bytes(data)
    uri = f"{bucket}/in/a b.mp4"
    storage.copy_file(local, uri)
    assert manifests.content_hash(uri) == manifests.content_hash(local) == hashlib.blake2b(data, digest_size=16).hexdigest()
    scratch = storage.Scratch(tmp_path / "scratch", max_bytes=8 * 2**20)
    with pytest.raises(RuntimeError, match="decoder crashed"), \
            storage.local_copy(uri, scratch, hasher=manifests.content_hasher()) as copy:
        assert Path(copy.path).read_bytes() == data and copy.path.endswith(".mp4")
        assert copy.digest == manifests.content_hash(local) and copy.size_bytes == len(data)
        raise RuntimeError("decoder crashed")
    assert [p.name for p in (tmp_path / "scratch").iterdir()] == [".lock"]  # copy and reservation gone
    with storage.readable(uri, scratch) as path:  # what decoders get: a local path, removed afterwards
        assert Path(path).read_bytes() == data and Path(path).is_relative_to(tmp_path / "scratch")
    assert not Path(path).exists()
    with storage.local_copy(local, scratch, hasher=manifests.content_hasher()) as copy:  # local: read in place
        assert copy.path == str(local) and copy.workdir is None and copy.digest == manifests.content_hash(local)


def test_scratch_cap_refuses_large_objects_and_reclaims_dead_reservations(bucket, tmp_path):
    uri = f"{bucket}/in/big.mp4"
    storage.write_bytes_atomic(uri, b"x" * 5000)
    small = storage.Scratch(tmp_path / "s", max_bytes=4000, wait_s=0)
    with pytest.raises(storage.ScratchError, match=r"more than the scratch cap.*Scratch\.max_bytes") as refused, \
            storage.local_copy(uri, small):
        pass
    assert (refused.value.reason, refused.value.nbytes, refused.value.cap_bytes) == ("too_large", 5000, 4000)
    # The command line's scratch names its flags in the message (storage itself knows no flag names).
    from rushes.settings import ScratchSettings

    flagged = ScratchSettings(str(tmp_path / "s"), 4000 / 2**30).to_scratch()
    with pytest.raises(storage.ScratchError, match="more than the scratch cap.*raise --scratch-max-gb.*--scratch"), \
            storage.local_copy(uri, flagged):
        pass
    scratch = storage.Scratch(tmp_path / "s", max_bytes=8000, wait_s=0)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(dead.stdout)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / f".rushes-reserve-{dead_pid}-0123abcd-6000").touch()  # left by a process killed mid-copy
    (tmp_path / "s" / f"rushes-{dead_pid}-0123abcd").mkdir()
    (tmp_path / "s" / "not ours 123-4").mkdir()
    (tmp_path / "s" / f".rushes-reserve-{os.getpid()}-0123abcd-6000").touch()  # a live copy holding 6000 bytes
    with pytest.raises(storage.ScratchError, match="no room in scratch folder"), storage.local_copy(uri, scratch):
        pass
    (tmp_path / "s" / f".rushes-reserve-{os.getpid()}-0123abcd-6000").unlink()
    with storage.local_copy(uri, scratch) as copy:
        assert Path(copy.path).stat().st_size == 5000
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [".lock", "not ours 123-4"]


def test_a_staging_folder_removes_those_of_dead_processes_first(tmp_path):
    """A worker killed with -9 leaves its staging folder (a bucket run's working copy, GBs of checkpoints): the
    next staging folder on the machine removes it; live processes' folders and others' files stay."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    root = tmp_path / "s"
    (root / f"rushes-{int(dead.stdout)}-0123abcd" / "checkpoints").mkdir(parents=True)
    (root / f"rushes-{os.getpid()}-4567cdef").mkdir()  # a live process's working copy
    (root / "not ours 123-4").mkdir()
    with storage.staging_dir(storage.Scratch(root)) as mine:
        assert mine.is_dir() and mine.parent == root
        assert sorted(p.name for p in root.iterdir()) == sorted(
            [".lock", mine.name, f"rushes-{os.getpid()}-4567cdef", "not ours 123-4"])
    assert not mine.exists()


def test_only_storage_touches_object_store_libraries():
    """docs/design.md: object storage has one owner; no stage opens s3:// on its own."""
    owners = {"pyarrow.fs", "s3fs", "fsspec", "boto3", "botocore", "gcsfs"}
    for package in ("manifests", "curate", "caption", "train", "rushes"):
        for mod in sorted((REPO / package).rglob("*.py")):
            if mod.is_relative_to(REPO / "rushes" / "storage"):
                continue
            tree = ast.parse(mod.read_text())
            names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            names |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                      for a in n.names}
            assert not names & owners, f"{mod.relative_to(REPO)} imports {names & owners}; go through storage/"
    for mod in (REPO / "rushes" / "storage").rglob("*.py"):
        src = mod.read_text()
        assert "import boto" not in src and "fsspec" not in src, f"{mod.name}: storage/ depends on pyarrow alone"
