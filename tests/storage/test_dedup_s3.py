"""Near-duplicate search with runs in a bucket: --dedup-against s3://... is read only, a bucket OUT is rewritten."""

from __future__ import annotations

import numpy as np

from rushes import manifests
from rushes import storage
from rushes.curate.dedup import check_against, dedup_run


def _clips(rows):
    return manifests.conform([{"clip_id": c, "video_id": v, "signature": s, "width_px": 1280, "height_px": 720,
                               "duration_s": 6.0, "keep": True} for c, v, s in rows], "clips")


def test_dedup_against_a_bucket_run_and_in_a_bucket_out(bucket, tmp_path):
    rng = np.random.default_rng(0)
    shot, other = (rng.integers(1, 2**63, size=12, dtype=np.uint64).tolist() for _ in range(2))
    archive, out = f"{bucket}/runs/archive", f"{bucket}/runs/today"
    manifests.write_part(archive, "clips", _clips([("a1", "va", shot)]), part_name="part-va")
    manifests.write_part(out, "clips", _clips([("t1", "vt", shot), ("t2", "vu", other)]), part_name="part-vt")
    local = tmp_path / "local"
    manifests.write_part(local, "clips", _clips([("l1", "vl", shot)]), part_name="part-vl")
    archived = storage.read_bytes(manifests.part_location(archive, "clips", "part-va"))

    check_against([archive], out)
    assert dedup_run(out, against=[archive])["duplicates"] == 1
    assert dict(zip(*manifests.read(out, "clips").select(["clip_id", "duplicate_of"]).to_pydict().values())) == {
        "t1": "a1", "t2": None}
    assert dedup_run(local, against=[archive, out])["duplicates"] == 1
    assert manifests.read(local, "clips")["duplicate_of"].to_pylist() == ["a1"]
    assert storage.read_bytes(manifests.part_location(archive, "clips", "part-va")) == archived, "read only"
    assert not [f for f in storage.list_files(f"{out}/clips") if storage.name(f).startswith("_")]
    try:
        check_against([f"{bucket}/runs/nothing"], out)
    except manifests.ManifestError as exc:
        assert "no clips manifest" in str(exc)
    else:
        raise AssertionError("a prefix without a clips manifest must be refused")
