"""Rows in, rows out for ``rushes encode``: clip rows -> planned frames -> VAE latents and caption embeddings.

Nothing here imports ray; ``train/pipeline.py`` wires these into Ray Data (CPU decode tasks feeding an
actor pool that loads the encoders once). A clip that fails becomes a row with ``status='error'``, an
``error_stage`` and a message, never a failed job:

- ``plan``: too short for one token in time at the run's fps (or no size);
- ``decode``: the clip file or source span does not decode;
- ``vae``: the VAE could not encode this clip.

Usage::

    plan = plan_encode(out, cfg.data, folder)
    frames = decode_batch(plan.tasks, data_cfg=cfg.data, patch=(1, 2, 2), temporal_factor=1, spatial_factor=1)
    rows = EncodeActor(cfg.data)(frames)        # shards.SCHEMA rows
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch

from rushes.manifests import store
from rushes.media.frames import DecodeError
from rushes.train import shards
from rushes.train.config import EncodeConfig  # noqa: F401 - re-exported: the encode stage's config
from rushes.manifests.clips import KeptClip, captioned_clips
from rushes.train.data import decode_rgb, plan_source, rgb_to_video
from rushes.train.encoders import TensorDims
from rushes.train.model import patchify
from rushes.train.parallel import torch_device

TASK_SCHEMA = pa.schema([("clip_id", pa.string()), ("caption", pa.string()), ("caption_hash", pa.string()),
                         ("path", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()),
                         ("width_px", pa.int32()), ("height_px", pa.int32()), ("refused", pa.string()),
                         ("kind", pa.string())])

# What decode tasks hand to the encoder actors: planned frames as raw bytes plus their shape.
FRAMES_SCHEMA = pa.schema([("clip_id", pa.string()), ("caption", pa.string()), ("caption_hash", pa.string()),
                           ("frames", pa.binary()), ("frames_shape", pa.list_(pa.int32())),
                           ("error_stage", pa.string()), ("error_message", pa.string())])


@dataclass(frozen=True)
class EncodePlan:
    """What an encode run will do: ``tasks`` to encode; clips already done are skipped."""

    tasks: pa.Table  # TASK_SCHEMA
    selected: int  # kept clips with an ok caption
    skipped_done: int  # already encoded ok with the same caption
    retrying_errors: int  # failed before; tried again


def plan_encode(out: str | os.PathLike, data_cfg, folder: Path, limit: int | None = None) -> EncodePlan:
    """Kept, captioned clips of ``out`` that ``folder`` has no ok encoding of (with their current caption)."""
    sources = captioned_clips(out, data_cfg.captioner, data_cfg.prompt_version, data_cfg.limit,
                              include_flagged=data_cfg.include_flagged_captions, level=data_cfg.caption_level)
    status = shards.read_status(folder)
    todo, done, retry = [], 0, 0
    for src in sources:
        ch = shards.caption_hash(src.caption)
        have = status.get(src.clip_id)
        if have and have[1] == "ok" and have[0] == ch:
            done += 1
            continue
        retry += bool(have and have[1] != "ok")
        todo.append({"clip_id": src.clip_id, "caption": src.caption, "caption_hash": ch, "path": src.path,
                     "start_s": src.start_s, "end_s": src.end_s, "width_px": src.width_px,
                     "height_px": src.height_px, "refused": src.refused, "kind": src.kind})
    todo = todo[:limit] if limit is not None else todo
    return EncodePlan(pa.Table.from_pylist(todo, schema=TASK_SCHEMA), len(sources), done, retry)


def _error(task: dict, stage: str, message: str) -> dict:
    return {"clip_id": task["clip_id"], "caption": task["caption"], "caption_hash": task["caption_hash"],
            "error_stage": stage, "error_message": message}


def decode_batch(tasks: pa.Table, data_cfg, patch: tuple[int, int, int], temporal_factor: int = 1,
                 spatial_factor: int = 1, scratch=None) -> pa.Table:
    """Plan and decode each task's frames as training plans them (clips in a bucket from bounded copies in
    ``scratch``, a ``storage.Scratch``); failures become error rows."""
    out = []
    for task in tasks.to_pylist():
        src = KeptClip(task["clip_id"], "", task["path"], task["start_s"], task["end_s"], task["start_s"],
                       task["width_px"] or 0, task["height_px"] or 0, False, task["caption"], task["refused"],
                       task["kind"] or "video")
        if src.refused:  # never opened: a clip_path outside OUT, a span that is not a time
            out.append(_error(task, "input", src.refused))
            continue
        try:
            plan = plan_source(src, data_cfg, patch, temporal_factor, spatial_factor)
        except ValueError as exc:  # too short, no size, a still with a patch of several frames
            out.append(_error(task, "plan", str(exc)))
            continue
        try:
            rgb = decode_rgb(src, plan, data_cfg.fps, scratch)  # (T, H, W, 3) uint8
        except (DecodeError, ValueError, OSError) as exc:
            out.append(_error(task, "decode", f"{type(exc).__name__}: {exc}"))
            continue
        out.append({"clip_id": src.clip_id, "caption": src.caption, "caption_hash": task["caption_hash"],
                    "frames": rgb.tobytes(), "frames_shape": list(rgb.shape)})
    return pa.Table.from_pylist(out, schema=FRAMES_SCHEMA)


def resolve_device(device: str | None) -> str:
    return str(torch_device(device))


class EncodeActor:
    """Loads the text encoder (and VAE) once; turns decoded frame rows into :data:`shards.SCHEMA` rows."""

    def __init__(self, data_cfg, patch: tuple[int, int, int], device: str | None = None,
                 torch_threads: int | None = None):
        from rushes.train.encoders import text_encoder_of, vae_of

        if torch_threads:
            torch.set_num_threads(torch_threads)
        dev = resolve_device(device)
        self.patch = tuple(patch)
        self.text = text_encoder_of(data_cfg, dev)
        self.vae = vae_of(data_cfg, dev)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        decoded = [r for r in rows if r["error_stage"] is None]
        captions = [r["caption"] for r in decoded]
        texts = self.embed(captions) if decoded else []
        lengths = self.text.token_counts(captions) if decoded else []  # over max_tokens: cut, and counted
        out = [self._encode_one(r, text, n) for r, text, n in zip(decoded, texts, lengths)]
        out += [_row(r, status="error") for r in rows if r["error_stage"] is not None]
        now = store.now_utc()
        for r in out:
            r["created_at"] = now
        return pa.Table.from_pylist(out, schema=shards.SCHEMA)

    def embed(self, captions: list[str]) -> list[torch.Tensor]:
        """Embeddings of ``captions``, valid tokens only: a list of (Lt, D) float32."""
        emb, mask = self.text.encode(captions)
        return [e[m].contiguous() for e, m in zip(emb, mask)]

    def dims(self) -> TensorDims:
        """The widths of the tensors this actor makes (recorded in the encodings' key.json)."""
        return TensorDims(self.vae.channels if self.vae is not None else 3, self.text.hidden_size)

    def factors(self) -> tuple[int, int]:
        """(temporal, spatial) compression of the VAE; (1, 1) in pixel space."""
        return (self.vae.temporal_factor, self.vae.spatial_factor) if self.vae is not None else (1, 1)

    def _encode_one(self, r: dict, text: torch.Tensor, caption_tokens: int) -> dict:
        rgb = torch.frombuffer(bytearray(r["frames"]), dtype=torch.uint8).reshape(r["frames_shape"])
        if self.vae is None:
            video = rgb  # pixel space: the frames themselves, uint8 (training maps them to [-1, 1])
            _, grid = patchify(rgb_to_video(rgb), self.patch)
        else:
            try:
                video = self.vae.encode(rgb_to_video(rgb))  # (C, T', H', W') float32
                _, grid = patchify(video, self.patch)
            except (RuntimeError, ValueError) as exc:  # one clip the VAE cannot take: a row, not a failed job
                return _row(r, status="error", error_stage="vae", error_message=f"{type(exc).__name__}: {exc}")
        return _row(r, status="ok", num_tokens=grid[0] * grid[1] * grid[2], grid=list(grid),
                    caption_tokens=caption_tokens, **shards.tensor_row(video, "video"), **shards.tensor_row(text, "text"))


def _row(r: dict, **values) -> dict:
    """A shards.SCHEMA row of a decoded (or failed) frame row."""
    return {"clip_id": r["clip_id"], "caption": r["caption"], "caption_hash": r["caption_hash"], "error_stage": r.get("error_stage"),
            "error_message": r.get("error_message"), **values}


def probe_encoders(data_cfg, patch: tuple[int, int, int], device: str | None = None) -> dict:
    """Load the encoders once: the empty caption's embedding, the VAE's compression factors and the tensors'
    widths."""
    actor = EncodeActor(data_cfg, patch, device)
    temporal, spatial = actor.factors()
    return {"null_text": actor.embed([""])[0], "temporal_factor": temporal, "spatial_factor": spatial,
            "dims": actor.dims()}
