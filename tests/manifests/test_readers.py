"""Every manifest kind opens as it is in Ray Data and Hugging Face datasets (DuckDB/Polars/pandas: test_store)."""

from __future__ import annotations

import datetime as dt

import pytest

from rushes import manifests


def _run_with_every_kind(tmp_path):
    t = manifests.now_utc()
    manifests.write_part(tmp_path, "videos", [{"video_id": "v0", "path": "/a.mp4", "status": "ok", "created_at": t,
                                               "duration_s": 3.5}], part_name="part-v0")
    manifests.write_part(tmp_path, "videos", [{"video_id": "v1", "path": "/b.mp4", "status": "error",
                                               "error_stage": "probe", "error_message": "bad"}], part_name="part-v1")
    manifests.write_part(tmp_path, "clips", [{"clip_id": "c0", "video_id": "v0", "keep": True, "start_s": 0.0,
                                              "end_s": 2.0, "motion_mean": 0.1, "camera_motion": "static"}])
    manifests.write_part(tmp_path, "clips", [{"clip_id": "c1", "video_id": "v0", "keep": False,
                                              "reject_reason": "too_short"}])
    manifests.write_part(tmp_path, "captions", [{"caption_id": "k0", "clip_id": "c0", "caption": "a dog",
                                                 "status": "ok", "frame_times_s": [0.25, 1.75],
                                                 "created_at": t + dt.timedelta(seconds=1)}])
    return tmp_path


def test_ray_data_reads_every_manifest(tmp_path, ray_local):
    run = _run_with_every_kind(tmp_path)
    for kind, n in (("videos", 2), ("clips", 2), ("captions", 1)):
        ds = ray_local.data.read_parquet(str(run / kind))
        assert ds.count() == n
        assert set(manifests.schema_for(kind).names) <= set(ds.schema().names)
    rows = ray_local.data.read_parquet(str(run / "captions")).take_all()
    assert list(rows[0]["frame_times_s"]) == [0.25, 1.75]


def test_hugging_face_datasets_reads_every_manifest(tmp_path):
    datasets = pytest.importorskip("datasets", reason="pip install datasets (in the test extra) to run this check")
    run = _run_with_every_kind(tmp_path)
    for kind, n in (("videos", 2), ("clips", 2), ("captions", 1)):
        files = sorted(str(p) for p in manifests.part_paths(run, kind))
        ds = datasets.load_dataset("parquet", data_files=files, split="train",
                                   cache_dir=str(tmp_path / "hf_cache"))
        assert ds.num_rows == n
        assert set(ds.column_names) == set(manifests.schema_for(kind).names)
    caps = datasets.load_dataset("parquet", data_files=[str(p) for p in manifests.part_paths(run, "captions")],
                                 split="train", cache_dir=str(tmp_path / "hf_cache"))
    assert caps[0]["frame_times_s"] == [0.25, 1.75]
