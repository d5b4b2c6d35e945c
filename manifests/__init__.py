"""The manifest contract: Parquet schemas, ids and atomic read/write. Depends on pyarrow alone."""

from manifests.ids import config_hash, content_hash, make_id
from manifests.schema import KINDS, SCHEMA_VERSIONS, schema_for
from manifests.store import (
    ManifestError,
    conform,
    now_utc,
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
    "KINDS", "SCHEMA_VERSIONS", "ManifestError", "config_hash", "conform", "content_hash", "make_id",
    "now_utc", "part_paths", "read", "read_part", "read_summary", "remove_temp_files", "update_summary", "schema_for", "validate_table", "write_json_atomic",
    "write_part",
]
