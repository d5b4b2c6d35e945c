"""The manifest contract: Parquet schemas, ids and atomic read/write, on local disk or in a bucket.

Depends on pyarrow and :mod:`storage` (itself pyarrow alone) only.
"""

from rushes.manifests.ids import config_hash, content_hash, content_hasher, make_id
from rushes.manifests.schema import KINDS, SCHEMA_VERSIONS, schema_for
from rushes.manifests.store import (
    ManifestError,
    conform,
    dataset,
    delete_part,
    manifest_dir,
    now_utc,
    part_location,
    part_paths,
    read,
    read_part,
    read_summary,
    remove_temp_files,
    update_summary,
    validate_table,
    write_json_atomic,
    write_part,
)

__all__ = [
    "KINDS", "SCHEMA_VERSIONS", "ManifestError", "config_hash", "conform", "content_hash", "content_hasher",
    "dataset", "delete_part", "make_id", "manifest_dir", "now_utc", "part_location", "part_paths", "read", "read_part",
    "read_summary", "remove_temp_files", "schema_for", "update_summary", "validate_table", "write_json_atomic",
    "write_part",
]
