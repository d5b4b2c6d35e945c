"""gs:// goes through the same storage layer, on pyarrow's GcsFileSystem (no GCS server here: no request is made)."""

from __future__ import annotations

import contextlib

import pyarrow.fs as pafs
import pytest

from rushes import storage
from rushes.manifests import store
from rushes.manifests.lock import writer_lock


@pytest.mark.parametrize("scheme", ["gs", "gcs"])
def test_gs_uris_resolve_to_pyarrows_gcs_filesystem_and_keep_their_kind(scheme):
    if not hasattr(pafs, "GcsFileSystem"):
        pytest.skip("this pyarrow build has no GCS support")
    fs, path = storage.resolve(f"{scheme}://footage-bucket/raw/day one/take 1.mp4")
    assert isinstance(fs, pafs.GcsFileSystem) and path == "footage-bucket/raw/day one/take 1.mp4"
    run = f"{scheme}://footage-bucket/runs/a"
    assert storage.is_remote(run)
    # Manifest locations, parts and the writer's lock stay in the bucket (URIs), as for s3://.
    assert store.part_location(run, "clips", "part-0") == f"{run}/clips/part-0.parquet"
    assert storage.parent(store.manifest_dir(run, "captions")) == run
    assert not isinstance(writer_lock(run, "rushes caption"), contextlib.nullcontext)  # the lease, not a no-op


def test_a_pyarrow_without_gcs_names_the_fix(monkeypatch):
    monkeypatch.delattr(pafs, "GcsFileSystem", raising=False)
    with pytest.raises(storage.StorageError, match="no GCS support"):
        storage.resolve("gs://b/k")
