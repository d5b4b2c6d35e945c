"""Where files live: local paths and object storage (``s3://``, ``gs://``) through the same calls.

The one owner of pyarrow.fs (docs/design.md: no stage opens ``s3://`` on its own). Depends on pyarrow alone;
``manifests/``, ``media/`` and the stages use it. Credentials and endpoint come from the standard AWS
environment and config (see :func:`rushes.storage.fs.filesystem`); they are never logged or written.
"""

from rushes.storage.fs import (
    TEMP_PREFIX,
    StorageError,
    copy_file,
    delete,
    exists,
    filesystem,
    glob,
    is_dir,
    is_file,
    is_remote,
    is_uri,
    join,
    list_files,
    makedirs,
    name,
    open_input,
    open_output,
    parent,
    publish,
    read_bytes,
    resolve,
    size,
    temp_sibling,
    write_bytes_atomic,
)
from rushes.storage.scratch import (
    LocalCopy,
    Scratch,
    ScratchError,
    local_copy,
    readable,
    staging_dir,
)

__all__ = [
    "TEMP_PREFIX", "LocalCopy", "Scratch", "ScratchError", "StorageError", "copy_file", "delete", "exists",
    "filesystem", "glob", "is_dir", "is_file", "is_remote", "is_uri", "join", "list_files", "local_copy", "makedirs", "name",
    "open_input", "open_output", "parent", "publish", "read_bytes", "readable", "resolve", "size", "staging_dir", "temp_sibling",
    "write_bytes_atomic",
]
