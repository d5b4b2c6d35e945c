"""Encodings on disk: each clip's training tensors, written once by ``rushes encode`` and streamed by training.

Layout (plain Parquet, readable without rushes)::

    OUT/encodings/<key>/key.json                 everything that shaped the tensors (see :func:`key_inputs`),
                                                 and their widths (``tensors``: :func:`read_dims`)
    OUT/encodings/<key>/part-*.parquet           one row per clip (SCHEMA): ok rows carry tensors, error
                                                 rows carry ``error_message``; the only Parquet files of
                                                 the folder, so ``read_parquet('<key>/*.parquet')`` reads
                                                 exactly the clips
    OUT/encodings/<key>/guidance/null_caption.parquet
                                                 the empty caption's embedding (classifier-free guidance);
                                                 runs encoded before it moved have it at
                                                 ``<key>/null_caption.parquet``, still read there

A tensor is stored as raw bytes plus its shape and dtype; with numpy alone::

    np.frombuffer(row["video"], row["video_dtype"]).reshape(row["video_shape"])

``video`` is the clip as training consumes it: in pixel space the decoded frames (T, H, W, 3) uint8 at the
planned size (training maps them to [-1, 1]); with a VAE the normalised latent (C, T', H', W') float32.
``text`` is the caption embedding (Lt, D) float32, valid tokens only. Files appear by an atomic rename of a
temporary ``_``-prefixed file, so readers never see half a shard. OUT may be a folder or a bucket prefix
(``s3://bucket/run``): every file goes through :mod:`storage` (on object storage a shard is written under a
``_tmp-`` name and published by a server-side copy), so a folder here is a ``Path`` locally and a URI remotely.

The key is a hash of :func:`key_inputs`: a run whose settings differ in any of them uses another folder, and
:func:`find_encodings` names the setting that differs instead of reusing tensors made differently.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from rushes import storage
from rushes.manifests import store
from rushes.manifests.ids import make_id
from rushes.train.encoders import TensorDims, text_token_budget

# 2: frames sampled across the whole span of a long clip (not its head), the caption_tokens column, and stills
FORMAT_VERSION = 2
# Rows per Parquet row group: about ROW_GROUP_BYTES of rows, at most ROW_GROUP_ROWS. A training worker reads the
# groups that hold its own packs' clips, so groups of a few large rows (latents, frames) keep those reads
# selective, while tiny rows share a group (each group read has a fixed cost per column).
ROW_GROUP_ROWS = 16
ROW_GROUP_BYTES = 1 << 20

SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("caption", pa.string()),
    ("caption_hash", pa.string()),  # caption_hash(caption): a changed caption is encoded again
    ("status", pa.string()),  # "ok" or "error"
    ("error_stage", pa.string()),  # plan (too short), decode, vae or text
    ("error_message", pa.string()),
    ("num_tokens", pa.int64()),  # training tokens of the clip (packing reads this column alone)
    ("grid", pa.list_(pa.int32())),  # (gt, gh, gw) patch grid
    ("video", pa.binary()),
    ("video_shape", pa.list_(pa.int32())),
    ("video_dtype", pa.string()),
    ("text", pa.binary()),
    ("text_shape", pa.list_(pa.int32())),
    ("text_dtype", pa.string()),
    ("caption_tokens", pa.int64()),  # the caption's tokens before the cut to max_text_tokens (over it: cut)
    ("created_at", pa.timestamp("us", tz="UTC")),
])

# dtypes a stored tensor may have: uint8 frames (pixel space), float latents and caption embeddings.
TENSOR_DTYPES = ("uint8", "float32", "float16")

# DataConfig fields that shape an encoded tensor; batch size, steps and the like do not.
DATA_FIELDS = ("fps", "max_frames", "clip_tokens", "image_tokens", "max_side_px", "text_encoder", "max_text_tokens",
               "vae", "vae_subfolder")


class EncodingMismatch(ValueError):
    """Encodings exist for OUT but none were made with this run's settings; the message names the difference."""


def caption_hash(caption: str) -> str:
    return make_id("caption", caption, length=16)


def model_revision(id_or_path: str | None, subfolder: str | None = None) -> str | None:
    """What identifies a model's weights without loading them.

    A local folder: a hash of its config files and the names and sizes of every other file. A hub id: the
    commit of the snapshot in the local Hugging Face cache (None before the first download).
    """
    if not id_or_path:
        return None
    folder = Path(id_or_path) / (subfolder or "")
    if folder.is_dir():
        h = hashlib.blake2b(digest_size=8)
        for p in sorted(q for q in folder.rglob("*") if q.is_file()):
            rel = p.relative_to(folder).as_posix()
            h.update(rel.encode())
            h.update(p.read_bytes() if p.suffix == ".json" else str(p.stat().st_size).encode())
        return f"local:{h.hexdigest()}"
    try:
        from huggingface_hub import try_to_load_from_cache

        name = f"{subfolder}/config.json" if subfolder else "config.json"
        hit = try_to_load_from_cache(id_or_path, name)
    except Exception:  # noqa: BLE001 - an unparsable id is not cached; loading it reports the real error
        return None
    if isinstance(hit, str):
        parts = Path(hit).parts
        return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None
    return None


def key_inputs(data_cfg, patch: tuple[int, int, int]) -> dict:
    """Everything that shaped an encoded clip: the data settings, patch size and model revisions."""
    inputs = {"format": FORMAT_VERSION, **{f: getattr(data_cfg, f) for f in DATA_FIELDS},
              "patch_size": [int(p) for p in patch]}
    # the caption budget as decided (None: the encoder's default), so a config with and one without it agree
    inputs["max_text_tokens"] = text_token_budget(data_cfg.text_encoder, data_cfg.max_text_tokens,
                                                  data_cfg.text_encoder_subfolder)
    inputs["text_encoder_revision"] = model_revision(data_cfg.text_encoder, data_cfg.text_encoder_subfolder)
    inputs["vae_revision"] = model_revision(data_cfg.vae, data_cfg.vae_subfolder)
    inputs.update(optional_inputs(data_cfg))
    return inputs


def optional_inputs(data_cfg) -> dict:
    """Settings that shape tensors only when set: in a key only then, so older keys stay valid."""
    out = {}
    if data_cfg.text_encoder_subfolder:
        out["text_encoder_subfolder"] = data_cfg.text_encoder_subfolder
    if data_cfg.dtype != "auto":
        out["dtype"] = data_cfg.dtype
    return out


def encoding_key(inputs: dict) -> str:
    return make_id("encodings", inputs, length=12)


def encodings_root(out: str | os.PathLike) -> Path | str:
    return storage.join(out, "encodings")


def key_dir(out: str | os.PathLike, inputs: dict) -> Path | str:
    return storage.join(encodings_root(out), encoding_key(inputs))


# key.json's entry of the tensors' widths: what the encoders made, not an input of the key
TENSORS = "tensors"


def write_key(folder: Path | str, inputs: dict, dims: TensorDims | None = None) -> None:
    """``key.json``: the key's ``inputs``, and the ``dims`` of the tensors made with them (a trainer completes its
    config from them without loading an encoder)."""
    record = {**inputs, TENSORS: {"channels": dims.channels, "text_dim": dims.text_dim}} if dims else inputs
    store.write_json_atomic(storage.join(folder, "key.json"), record)


def read_dims(folder: Path | str) -> TensorDims:
    """The widths of the tensors in an encodings folder: from ``key.json``; a folder encoded before key.json
    recorded them, from the empty caption's embedding and the first ok row (light columns only)."""
    recorded = json.loads(storage.read_bytes(storage.join(folder, "key.json"))).get(TENSORS)
    if recorded:
        return TensorDims(int(recorded["channels"]), int(recorded["text_dim"]))
    text_dim = int(read_null_caption(folder).shape[-1])
    for path in shard_paths(folder):
        for row in iter_rows(path, ["status", "video_shape", "video_dtype"]):
            if row["status"] == "ok":  # pixel frames are (T, H, W, 3) uint8, a latent (C, T', H', W')
                return TensorDims(3 if row["video_dtype"] == "uint8" else int(row["video_shape"][0]), text_dim)
    raise ValueError(f"{folder} holds no encoded clip: run `rushes encode` for this run's clips (it resumes), or "
                     f"pass --no-encodings to decode on the fly")


def _differences(have: dict, want: dict) -> list[str]:
    return [f"{k}={have.get(k)!r} (this run: {want.get(k)!r})" for k in sorted(set(have) | set(want))
            if k != TENSORS and have.get(k) != want.get(k)]


def find_encodings(out: str | os.PathLike, inputs: dict) -> Path | str | None:
    """The encodings folder of OUT made with ``inputs``; None when OUT has no encodings at all.

    Raises :class:`EncodingMismatch` when encodings exist but none match, naming the settings that
    differ from the closest folder.
    """
    root = encodings_root(out)
    keys = [f for f in storage.list_files(root) if storage.name(f) == "key.json"]
    folders = sorted(storage.parent(k) for k in keys if storage.name(storage.parent(storage.parent(k))) == "encodings")
    if not folders:
        return None
    want = encoding_key(inputs)
    if any(storage.name(p) == want for p in folders):
        return storage.join(root, want)
    diffs = sorted((_differences(json.loads(storage.read_bytes(storage.join(p, "key.json"))), inputs),
                    storage.name(p)) for p in folders)
    closest, name = min(diffs, key=lambda d: len(d[0]))
    raise EncodingMismatch(
        f"{root} holds encodings made with other settings; the closest ({name}) differs in: "
        f"{'; '.join(closest)}. Run `rushes encode {out}` with this run's settings (it writes a new folder beside "
        f"the old), train with the settings of the encodings, or pass --no-encodings to decode on the fly")


def _write_table_atomic(table: pa.Table, final, **write_options) -> None:
    """Write ``table`` to a ``_tmp-`` sibling of ``final`` and publish it (a rename; remotely a copy)."""
    tmp = storage.temp_sibling(final)
    try:
        with storage.open_output(tmp) as fh:
            pq.write_table(table, fh, **write_options)
        if not storage.is_remote(tmp):
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        storage.publish(tmp, final)
    finally:
        storage.delete(tmp)  # a stream closed by an exception may have stored what was written so far


def write_shard(folder: Path | str, rows: list[dict] | pa.Table, name: str) -> Path | str:
    """Atomically write ``rows`` (SCHEMA) as ``folder/name.parquet``: a temporary file, then published."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=SCHEMA)
    final = storage.join(folder, f"{name}.parquet")
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    group = max(1, min(ROW_GROUP_ROWS, ROW_GROUP_BYTES // per_row))
    _write_table_atomic(table.cast(SCHEMA), final, row_group_size=group, compression="zstd")
    return final


def shard_paths(folder: Path | str) -> list:
    """Visible shards of an encodings folder, sorted by name (``Path`` locally, URIs remotely)."""
    names = [f for f in storage.list_files(folder, recursive=False)
             if storage.name(f).startswith("part-") and storage.name(f).endswith(".parquet")]
    return names if storage.is_remote(folder) else [Path(f) for f in names]


def _read_table(path, columns: list[str] | None = None) -> pa.Table:
    with storage.open_input(path, seekable=True) as fh:
        return pq.ParquetFile(fh).read(columns=columns)


def read_columns(path: Path | str, columns: list[str]) -> dict[str, list]:
    """Whole columns of one shard as lists (for the small columns: ids, hashes, status, token counts)."""
    table = _read_table(path, columns)
    return {c: table.column(c).to_pylist() for c in columns}


def tensor_row(tensor: torch.Tensor, prefix: str) -> dict:
    """``{prefix: bytes, prefix_shape: [...], prefix_dtype: "..."}`` of a CPU tensor."""
    arr = tensor.detach().cpu().contiguous().numpy()
    return {prefix: arr.tobytes(), f"{prefix}_shape": list(arr.shape), f"{prefix}_dtype": str(arr.dtype)}


def row_tensor(row: dict, prefix: str) -> torch.Tensor:
    """Inverse of :func:`tensor_row` (a writable copy)."""
    arr = np.frombuffer(row[prefix], dtype=row[f"{prefix}_dtype"]).reshape(row[f"{prefix}_shape"])
    return torch.from_numpy(arr.copy())


def null_caption_path(folder: Path | str) -> Path | str:
    """Where an encode run writes the empty caption's embedding: a subfolder, so a glob of the folder's Parquet
    files sees the clips' shards alone (it once sat beside them and a naive read counted one row too many)."""
    return storage.join(folder, "guidance", "null_caption.parquet")


def find_null_caption(folder: Path | str) -> Path | str | None:
    """The empty caption's embedding of an encodings folder: where it is written now, else where runs encoded
    before the move have it (``<key>/null_caption.parquet``); None when neither exists."""
    for path in (null_caption_path(folder), storage.join(folder, "null_caption.parquet")):
        if storage.is_file(path):
            return path
    return None


def write_null_caption(folder: Path | str, text: torch.Tensor) -> None:
    table = pa.Table.from_pylist([tensor_row(text, "text")], schema=pa.schema(
        [("text", pa.binary()), ("text_shape", pa.list_(pa.int32())), ("text_dtype", pa.string())]))
    _write_table_atomic(table, null_caption_path(folder))


def read_null_caption(folder: Path | str) -> torch.Tensor:
    path = find_null_caption(folder)
    if path is None:
        raise FileNotFoundError(f"{null_caption_path(folder)} is missing: the encode run that made {folder} did not "
                                f"finish; rerun `rushes encode` (it resumes)")
    return row_tensor(_read_table(path).to_pylist()[0], "text")


def read_status(folder: Path | str) -> dict[str, tuple[str, str, str | None]]:
    """clip_id -> (caption_hash, status, error_message), reading only those columns; an ok row wins."""
    out: dict[str, tuple[str, str, str | None]] = {}
    for path in shard_paths(folder):
        t = _read_table(path, columns=["clip_id", "caption_hash", "status", "error_message"])
        for cid, ch, st, err in zip(*(t.column(c).to_pylist() for c in t.column_names)):
            if cid not in out or st == "ok":
                out[cid] = (ch, st, err)
    return out


def over_budget(folder: Path | str, wanted: dict[str, str], budget: int) -> list[str]:
    """Ids among ``wanted`` (clip_id -> caption_hash) whose ok row's caption had more than ``budget`` tokens (cut
    to it when encoded); reads the light columns only. Shards written before caption_tokens count none."""
    out: set[str] = set()
    for path in shard_paths(folder):
        with storage.open_input(path, seekable=True) as fh:
            f = pq.ParquetFile(fh)
            if "caption_tokens" not in f.schema_arrow.names:
                continue
            t = f.read(columns=["clip_id", "caption_hash", "status", "caption_tokens"])
        for cid, ch, st, n in zip(*(t.column(c).to_pylist() for c in t.column_names)):
            if st == "ok" and wanted.get(cid) == ch and n is not None and n > budget:
                out.add(cid)
    return sorted(out)


def iter_rows(path: Path | str, columns: list[str] | None = None, skip_rows: int = 0) -> Iterator[dict]:
    """Rows of one shard, one row group in memory at a time, starting after ``skip_rows`` rows (a shard in a
    bucket is read by ranged requests: only the groups read are fetched)."""
    with storage.open_input(path, seekable=True) as fh:
        f = pq.ParquetFile(fh)
        seen = 0
        for g in range(f.num_row_groups):
            n = f.metadata.row_group(g).num_rows
            if seen + n <= skip_rows:
                seen += n
                continue
            rows = f.read_row_group(g, columns=columns).to_pylist()
            yield from rows[max(0, skip_rows - seen):]
            seen += n


class RowReader:
    """Reads chosen rows of one shard, keeping the file open between reads: only the row groups that hold the
    rows asked for are read (a shard in a bucket is read by ranged requests: the other groups are never
    fetched). Close it when done (or use it as a context manager)."""

    def __init__(self, path: Path | str):
        self._stream = storage.open_input(path, seekable=True)
        self._file = pq.ParquetFile(self._stream)
        sizes = [self._file.metadata.row_group(g).num_rows for g in range(self._file.num_row_groups)]
        self._starts = np.cumsum([0] + sizes).tolist()

    def rows_at(self, wanted: set[int], columns: list[str] | None = None) -> dict[int, dict]:
        """The rows numbered ``wanted`` (0-based), in one read of the row groups that hold them."""
        groups = sorted({bisect.bisect_right(self._starts, i) - 1 for i in wanted})
        if not groups:
            return {}
        rows = self._file.read_row_groups(groups, columns=columns).to_pylist()
        out, at = {}, 0
        for g in groups:
            first, n = self._starts[g], self._starts[g + 1] - self._starts[g]
            out.update((i, rows[at + i - first]) for i in wanted if first <= i < first + n)
            at += n
        return out

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> RowReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
