"""One set of calls for local paths and object-store URIs, on pyarrow.fs.

A *location* is a local path (``str`` or ``os.PathLike``) or a URI ``s3://bucket/key`` (``gs://`` and
``gcs://`` go to pyarrow's GCS filesystem where the installed pyarrow has it; only s3 is tested). Every
function takes either; functions returning a location return a ``Path`` for a local one and a ``str``
URI for a remote one, so ``join(out, "clips")`` keeps the kind of ``out``.

Object stores have no rename. :func:`publish` makes a temporary object visible under its final name
with a server-side copy and then deletes the temporary: writers put data under a ``_tmp-`` name that
readers ignore and publish it only after the write completed. Writing straight to the final key would
be unsafe: a stream closed while unwinding an exception completes the upload with whatever was written.
Locally, :func:`publish` is an atomic ``os.replace``.

S3 settings come from the standard AWS environment and config files: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE`` (read by the AWS SDK's default chain),
``AWS_REGION``/``AWS_DEFAULT_REGION`` and ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` (passed on here,
since pyarrow does not read the endpoint variables itself). No credential is ever logged or stored.
"""

from __future__ import annotations

import fnmatch
import functools
import glob as _glob
import os
import re
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

REMOTE_SCHEMES = ("s3", "gs", "gcs")
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
TEMP_PREFIX = "_tmp-"


class StorageError(ValueError):
    """A location that cannot be used (unsupported scheme, missing bucket); the message says how to fix it."""


def _scheme(where) -> str | None:
    m = _URI.match(str(where))
    return m.group(1).lower() if m else None


def is_remote(where) -> bool:
    """True for an object-store URI (``s3://``, ``gs://``, ``gcs://``)."""
    return _scheme(where) in REMOTE_SCHEMES


def is_uri(where) -> bool:
    """True for anything with a ``scheme://`` prefix, supported or not."""
    return _scheme(where) is not None


@functools.lru_cache(maxsize=8)
def _s3(endpoint: str | None, region: str | None) -> pafs.FileSystem:
    kwargs: dict = {}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=parsed.netloc + parsed.path.rstrip("/"), scheme=parsed.scheme)
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def filesystem(scheme: str | None) -> pafs.FileSystem:
    """The pyarrow filesystem for ``scheme`` (``None`` = local), built from the AWS/GCS environment."""
    if scheme is None:
        return pafs.LocalFileSystem()
    if scheme == "s3":
        env = os.environ
        return _s3(env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
                   env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None)
    if scheme in ("gs", "gcs"):
        if not hasattr(pafs, "GcsFileSystem"):
            raise StorageError("this pyarrow build has no GCS support; install a pyarrow wheel built with GCS")
        return pafs.GcsFileSystem()
    raise StorageError(f"unsupported location scheme {scheme}://; use a local path, s3://bucket/key or gs://bucket/key")


def resolve(where) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path inside it)`` for a location; local paths are made absolute."""
    text = os.fspath(where)
    scheme = _scheme(text)
    if scheme is None:
        return filesystem(None), os.path.abspath(os.path.expanduser(text))
    if scheme not in REMOTE_SCHEMES:
        filesystem(scheme)  # raises the unsupported-scheme error
    path = text[len(scheme) + 3:].strip("/")
    if not path:
        raise StorageError(f"{text} names no bucket; use {scheme}://BUCKET/PREFIX")
    return filesystem(scheme), path


def join(base, *names: str):
    """``base/name/...`` keeping the kind of ``base`` (``Path`` locally, ``str`` URI remotely)."""
    if is_remote(base):
        return "/".join([str(base).rstrip("/"), *(n.strip("/") for n in names)])
    return Path(base).joinpath(*names)


def parent(where):
    """The folder holding ``where``, of the same kind."""
    if is_remote(where):
        return str(where).rstrip("/").rsplit("/", 1)[0]
    return Path(where).parent


def name(where) -> str:
    """Last component of a location (file or object name)."""
    return str(where).rstrip("/").rsplit("/", 1)[-1] if is_remote(where) else Path(where).name


def _location(where, fs_path: str):
    """A location of the kind of ``where`` for a path inside its filesystem."""
    scheme = _scheme(where)
    return f"{scheme}://{fs_path}" if scheme in REMOTE_SCHEMES else fs_path


def _info(where) -> pafs.FileInfo:
    fs, path = resolve(where)
    return fs.get_file_info(path)


def exists(where) -> bool:
    """True when a file, object or folder (a non-empty prefix, remotely) is at ``where``."""
    return _info(where).type != pafs.FileType.NotFound


def is_file(where) -> bool:
    """True when ``where`` is a file (an object, remotely)."""
    return _info(where).type == pafs.FileType.File


def is_dir(where) -> bool:
    """True when ``where`` is a folder (remotely: a prefix with objects under it)."""
    return _info(where).type == pafs.FileType.Directory


def size(where) -> int:
    """Size in bytes; raises ``FileNotFoundError`` when absent."""
    info = _info(where)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"{where} is not a file")
    return int(info.size)


def makedirs(where) -> None:
    """Create a local folder and its parents; a no-op remotely (object stores have no folders)."""
    if not is_remote(where):
        Path(where).mkdir(parents=True, exist_ok=True)


def open_input(where, seekable: bool = False):
    """A binary file object for reading; ``seekable`` for random access (Parquet footers)."""
    fs, path = resolve(where)
    return fs.open_input_file(path) if seekable else fs.open_input_stream(path)


def open_output(where):
    """A binary stream for writing ``where`` (local parents are created). Prefer :func:`write_bytes_atomic`
    or a temporary name plus :func:`publish` for anything a reader may look at while it is written."""
    fs, path = resolve(where)
    if not is_remote(where):
        fs.create_dir(os.path.dirname(path), recursive=True)
    return fs.open_output_stream(path)


def read_bytes(where) -> bytes:
    """Whole content of a (small) file."""
    with open_input(where) as fh:
        return fh.read()


def temp_sibling(where):
    """A temporary name beside ``where`` that readers ignore (starts with ``_tmp-``, no final suffix)."""
    return join(parent(where), f"{TEMP_PREFIX}{name(where)}-{uuid.uuid4().hex[:8]}")


def publish(tmp, final) -> None:
    """Make the complete file ``tmp`` visible as ``final`` (replacing it) and remove ``tmp``.

    Locally an atomic rename. Remotely a server-side copy (a reader sees the old object or the whole new
    one, never a part) followed by deleting ``tmp``; a writer killed between the two leaves only a
    ``_tmp-`` object behind, which readers ignore and the next run's cleanup deletes.
    """
    if not is_remote(final):
        os.replace(tmp, final)
        return
    fs, src = resolve(tmp)
    _, dst = resolve(final)
    fs.copy_file(src, dst)
    fs.delete_file(src)


def write_bytes_atomic(where, data: bytes) -> None:
    """Write ``data`` to ``where`` so readers see the old content or all of the new one."""
    tmp = temp_sibling(where)
    try:
        if is_remote(where):
            with open_output(tmp) as fh:
                fh.write(data)
        else:
            makedirs(parent(where))
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        publish(tmp, where)
    finally:
        delete(tmp)


def delete(where) -> None:
    """Delete one file or object; absent is fine."""
    fs, path = resolve(where)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def copy_file(src, dst) -> None:
    """Copy one file between any two locations (upload, download or server-side copy)."""
    src_fs, src_path = resolve(src)
    dst_fs, dst_path = resolve(dst)
    if not is_remote(dst):
        os.makedirs(os.path.dirname(dst_path), exist_ok=True)
    pafs.copy_files(src_path, dst_path, source_filesystem=src_fs, destination_filesystem=dst_fs)


def list_files(where, recursive: bool = True) -> list:
    """Files (objects) under the folder or prefix ``where``, sorted; ``[]`` when there is none.

    Remote results are URIs, local results ``str`` paths. Names are returned as stored: keys with spaces
    or other characters come back unchanged.
    """
    fs, path = resolve(where)
    selector = pafs.FileSelector(path, recursive=recursive, allow_not_found=True)
    try:
        infos = fs.get_file_info(selector)
    except NotADirectoryError:
        return []
    return sorted(_location(where, i.path) for i in infos if i.type == pafs.FileType.File)


def _glob_parts(pattern: str) -> tuple[str, list[str]]:
    """Split a remote pattern into its literal prefix and the glob segments after it."""
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if any(ch in part for ch in "*?["):
            return "/".join(parts[:i]), parts[i:]
    return pattern, []


def _match(parts: list[str], pats: list[str]) -> bool:
    if not pats:
        return not parts
    if pats[0] == "**":
        return any(_match(parts[i:], pats[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pats[0]) and _match(parts[1:], pats[1:])


def glob(pattern) -> list:
    """Files matching a glob (``*``, ``?``, ``[...]``, ``**`` for any depth), sorted.

    Locally the standard library's recursive glob; remotely the literal prefix is listed once and the
    keys are matched segment by segment. Folders that match are not expanded here.
    """
    text = os.fspath(pattern)
    if not is_remote(text):
        return sorted(p for p in _glob.glob(os.path.expanduser(text), recursive=True) if os.path.isfile(p))
    base, pats = _glob_parts(text.rstrip("/"))
    if not pats:
        return [text] if is_file(text) else []
    found = []
    for uri in list_files(base, recursive=True):
        rest = uri[len(base):].lstrip("/").split("/")
        if _match(rest, pats):
            found.append(uri)
    return found
