"""The manifest contract: declared schemas, atomic parts, validation, readers beyond pyarrow."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rushes import manifests
from rushes.manifests import store
from rushes.manifests.select import kept_clips, ok_captions


def _clip(i: int, keep: bool = True, **kw) -> dict:
    row = {"clip_id": f"c{i}", "video_id": "v0", "start_s": float(i), "end_s": i + 1.0, "keep": keep,
           "reject_reason": None if keep else "too_short"}
    row.update(kw)
    return row


def test_conform_fills_missing_columns_with_declared_types():
    table = manifests.conform([_clip(0), _clip(1, keep=False)], "clips")
    assert table.schema.equals(manifests.schema_for("clips"), check_metadata=False)
    assert table.column("motion_mean").type == pa.float32()
    assert table.column("clip_path").null_count == 2


def test_parts_written_in_separate_batches_read_together_with_other_tools(tmp_path):
    # One part has every reject_reason null: without conform pyarrow would infer type null for it.
    manifests.write_part(tmp_path, "clips", [_clip(0), _clip(1)], part_name="part-a")
    manifests.write_part(tmp_path, "clips", [_clip(2, keep=False)], part_name="part-b")
    glob = str(tmp_path / "clips" / "*.parquet")
    import duckdb
    import pandas as pd
    import polars as pl

    assert duckdb.sql(f"SELECT count(*) FROM '{glob}' WHERE NOT keep").fetchall()[0][0] == 1
    assert pl.read_parquet(glob).height == 3
    assert len(pd.read_parquet(tmp_path / "clips")) == 3
    assert manifests.read(tmp_path, "clips").num_rows == 3
    assert kept_clips(tmp_path).column("clip_id").to_pylist() == ["c0", "c1"]


def test_unknown_column_and_missing_required_value_are_named():
    with pytest.raises(manifests.ManifestError, match="unknown column.*motion_score"):
        manifests.conform([_clip(0, motion_score=1.0)], "clips")
    with pytest.raises(manifests.ManifestError, match="clips.keep is required"):
        manifests.conform([{"clip_id": "c", "video_id": "v", "keep": None}], "clips")


def test_rewriting_a_part_name_replaces_it_and_temp_files_are_invisible(tmp_path):
    manifests.write_part(tmp_path, "clips", [_clip(0)], part_name="part-v0")
    manifests.write_part(tmp_path, "clips", [_clip(0, keep=False)], part_name="part-v0")
    (tmp_path / "clips" / "_tmp-part-x-123").write_bytes(b"half written")
    table = manifests.read(tmp_path, "clips")
    assert table.num_rows == 1 and table.column("keep").to_pylist() == [False]
    assert [p.name for p in manifests.part_paths(tmp_path, "clips")] == ["part-v0.parquet"]


def test_duplicate_ids_across_parts_and_wrong_types_are_rejected(tmp_path):
    manifests.write_part(tmp_path, "clips", [_clip(0)], part_name="a")
    manifests.write_part(tmp_path, "clips", [_clip(0)], part_name="b")
    with pytest.raises(manifests.ManifestError, match="duplicate clip_id"):
        manifests.read(tmp_path, "clips")
    bad = tmp_path / "bad"
    (bad / "clips").mkdir(parents=True)
    pq.write_table(pa.table({"clip_id": ["x"]}), bad / "clips" / "p.parquet")
    with pytest.raises(manifests.ManifestError, match="missing"):
        manifests.read(bad, "clips")


def test_missing_manifest_says_which_stage_to_run(tmp_path):
    assert manifests.read(tmp_path, "videos").num_rows == 0
    with pytest.raises(manifests.ManifestError, match="run the stage"):
        manifests.read(tmp_path, "captions", missing_ok=False)


def test_schema_version_and_column_docs_travel_in_the_file(tmp_path):
    path = manifests.write_part(tmp_path, "videos", [{"video_id": "v", "path": "/x.mp4", "status": "ok"}])
    schema = pq.read_schema(path)
    assert schema.metadata[b"rushes.schema_version"] == str(manifests.SCHEMA_VERSIONS["videos"]).encode()
    assert schema.field("duration_s").metadata[b"unit"] == b"s"


def test_ids_are_deterministic_and_sensitive_to_every_part(tmp_path):
    a = manifests.make_id("v", 1.0, 2.5, {"t": 3})
    assert a == manifests.make_id("v", 1.0, 2.5, {"t": 3})
    assert a != manifests.make_id("v", 1.0, 2.5, {"t": 4})
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(3 << 20))
    h = manifests.content_hash(f)
    assert h == manifests.content_hash(f) and len(h) == 32


def test_ok_captions_keeps_newest_version_per_clip(tmp_path):
    t0 = manifests.now_utc()
    import datetime as dt

    t1 = t0 + dt.timedelta(seconds=5)
    rows = [
        {"caption_id": "a", "clip_id": "c0", "caption": "old", "status": "ok", "created_at": t0},
        {"caption_id": "b", "clip_id": "c0", "caption": "new", "status": "ok", "created_at": t1},
        {"caption_id": "c", "clip_id": "c1", "caption": None, "status": "error", "created_at": t1},
    ]
    manifests.write_part(tmp_path, "captions", rows)
    got = ok_captions(tmp_path)
    assert got.column("caption").to_pylist() == ["new"]


def test_write_json_atomic_replaces_whole_file(tmp_path):
    p = store.write_json_atomic(tmp_path / "summary.json", {"a": 1})
    store.write_json_atomic(p, {"b": 2})
    assert p.read_text().strip().startswith("{") and '"b": 2' in p.read_text()
    assert [x.name for x in tmp_path.iterdir()] == ["summary.json"]


def test_remove_temp_files_deletes_only_leftover_temporaries(tmp_path):
    manifests.write_part(tmp_path, "clips", [_clip(0)], part_name="part-v0")
    (tmp_path / "clips" / "_tmp-part-v1-deadbeef").write_bytes(b"killed mid-write")
    assert manifests.remove_temp_files(tmp_path, "clips") == 1
    assert [p.name for p in (tmp_path / "clips").iterdir()] == ["part-v0.parquet"]
    assert manifests.remove_temp_files(tmp_path, "videos") == 0


def test_numpy_scalars_give_the_same_id_as_python_numbers():
    import numpy as np

    assert manifests.make_id("v", np.float32(0.5), np.int64(3)) == manifests.make_id("v", 0.5, 3)


def test_a_part_of_an_older_schema_reads_without_the_columns_added_since(tmp_path):
    # videos v3 added path_bytes: a v2 part (an earlier rushes) still reads, with nulls there; a v3 part without
    # it is damaged and refused.
    row = {"video_id": "v1", "path": "/data/a.mp4", "status": "ok"}
    table = store.conform([row], "videos").drop_columns(["path_bytes"])
    (tmp_path / "videos").mkdir()
    pq.write_table(table.replace_schema_metadata({b"rushes.kind": b"videos", b"rushes.schema_version": b"2"}),
                   tmp_path / "videos" / "part-old.parquet")
    assert store.read(tmp_path, "videos").to_pylist()[0]["path_bytes"] is None
    pq.write_table(table, tmp_path / "videos" / "part-old.parquet")  # metadata says v3
    with pytest.raises(store.ManifestError, match="missing \\['path_bytes'\\]"):
        store.read(tmp_path, "videos")


def test_training_selection_skips_flagged_captions_and_window_captions_unless_asked(tmp_path):
    from rushes.manifests.clips import captioned_clips
    from rushes.testing.train_manifests import Clip, write_manifest

    write_manifest(tmp_path, [Clip("/v.mp4", 0, 8, 64, 48, "clean"), Clip("/v.mp4", 8, 12, 64, 48, "loop")])
    now = manifests.now_utc()
    manifests.write_part(tmp_path, "captions", [
        {"caption_id": "f", "clip_id": "clip0001", "caption": "loop loop", "status": "ok", "created_at": now,
         "caption_flags": "repetition", "flag_repetition": True},
        {"caption_id": "w", "clip_id": "clip0000", "caption": "first window", "status": "ok", "created_at": now,
         "window_start_s": 0.0, "window_end_s": 4.0}], part_name="part-1")
    # The newest caption of clip0001 is flagged: training falls back to its older clean one ("loop").
    assert {c.clip_id: c.caption for c in captioned_clips(tmp_path)} == {"clip0000": "clean", "clip0001": "loop"}
    assert {c.clip_id: c.caption for c in captioned_clips(tmp_path, include_flagged=True)}["clip0001"] == "loop loop"
    assert ok_captions(tmp_path, include_flagged=False).column("caption_id").to_pylist() == ["cap0000", "cap0001"]
    windows = ok_captions(tmp_path, windows=True)
    assert windows.column("caption").to_pylist() == ["first window"] and windows["window_end_s"][0].as_py() == 4.0
    import shutil

    shutil.rmtree(tmp_path / "captions")  # only flagged captions left: none to train on, and the error says how
    manifests.write_part(tmp_path, "captions", [
        {"caption_id": "g", "clip_id": "clip0000", "caption": "truncated", "status": "ok", "created_at": now,
         "caption_flags": "truncated"}], part_name="part-0")
    with pytest.raises(ValueError, match="--include-flagged-captions"):
        captioned_clips(tmp_path)


def test_a_captions_part_of_schema_v1_reads_with_the_new_columns_null(tmp_path):
    import pyarrow.parquet as pq

    from rushes.manifests.schema import ADDED_IN

    table = manifests.conform([{"caption_id": "a", "clip_id": "c0", "caption": "x", "status": "ok"}], "captions")
    old = table.drop_columns(list(ADDED_IN["captions"]))
    (tmp_path / "captions").mkdir()
    pq.write_table(old.replace_schema_metadata({b"rushes.kind": b"captions", b"rushes.schema_version": b"1"}),
                   tmp_path / "captions" / "part-old.parquet")
    got = store.read(tmp_path, "captions")
    assert got.column("caption_flags").to_pylist() == [None] and got.column("window_start_s").null_count == 1
    assert ok_captions(tmp_path, include_flagged=False).num_rows == 1
