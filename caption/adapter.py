"""Rows in, rows out: clip rows -> frame batches -> model calls -> caption rows.

Per-clip failures never stop a job; they become caption rows with ``status='error'``:

- ``frames``: the clip file or source span does not decode (missing, truncated, empty span);
- ``generate``: the model call failed for this clip (after retrying it alone) or returned nothing;
- ``parse``: a structured prompt's output is not the JSON asked for (the raw text is kept in
  ``caption_json``).

A batch that runs out of memory is retried in halves down to one clip. The functions here take and
return pyarrow tables so Ray Data passes them between stages without conversions; nothing here
imports ray.

Usage (what ``caption/pipeline.py`` wires into Ray Data)::

    plan = plan_run(out, resolved.captioner, prompt.version, limit=10)
    frames = decode_batch(plan.tasks, spec=spec, num_frames=8, fps=None)
    rows = CaptionActor(cfg, resolved, prompt.version, config_hash, tool_versions)(frames)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rushes import storage

from rushes.caption.captioner import Captioner, Generation, ResolvedModel, is_out_of_memory
from rushes.caption.config import CaptionConfig
from rushes.caption.frames import ClipFrames, FrameSpec, decode_clip, decode_still, display_dims, frame_times
from rushes.caption.prompts import ParseError, get_prompt, parse_output
from rushes.manifests import clips, store
from rushes.manifests.ids import make_id
from rushes.media.frames import DecodeError

# What the decode stage hands to the model actors: frames travel as raw bytes plus their shape.
FRAMES_SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("frames", pa.binary()),
    ("frames_shape", pa.list_(pa.int32())),
    ("frame_times_s", pa.list_(pa.float64())),
    ("error_message", pa.string()),
    ("still", pa.bool_()),  # a still image (kind 'image'): captioned as one image, not a video
])

# One row per clip to caption: where its frames come from (``path``, with ``offset_s`` the clip's start on
# that file's timeline: the clip start for an encoded clip, 0 for a span of the source video), or why they
# cannot be read (``error_message``, e.g. a clip_path that points outside the run directory).
TASK_SCHEMA = pa.schema([("clip_id", pa.string()), ("path", pa.string()), ("offset_s", pa.float64()),
                         ("start_s", pa.float64()), ("end_s", pa.float64()), ("width_px", pa.int32()),
                         ("height_px", pa.int32()), ("error_message", pa.string()), ("kind", pa.string())])


@dataclass(frozen=True)
class Plan:
    """What a run will do: ``tasks`` to caption, clips skipped as already done, error rows to retry."""

    tasks: pa.Table  # TASK_SCHEMA, one row per clip to caption
    kept: int  # kept clips in the run
    skipped_done: int  # already captioned OK by this captioner and prompt version
    retry_caption_ids: list[str]  # earlier error rows of the clips in ``tasks`` (replaced by this run)


def caption_id(clip_id: str, captioner: str, prompt_version: str) -> str:
    """Deterministic id of one caption version of a clip."""
    return make_id(clip_id, captioner, prompt_version)


def plan_run(out: str | os.PathLike, captioner: str, prompt_version: str, limit: int | None = None) -> Plan:
    """Kept clips of ``out`` that still need a caption from ``captioner`` with ``prompt_version``."""
    kept = clips.kept_clips(out)
    existing = store.read(out, "captions")
    mine = existing.filter(pc.and_(pc.equal(existing.column("captioner"), captioner),
                                   pc.equal(existing.column("prompt_version"), prompt_version)))
    done = set(mine.filter(pc.equal(mine.column("status"), "ok")).column("clip_id").to_pylist())
    todo = [c for c in kept if c.clip_id not in done][:limit]
    tasks = _task_table(todo)
    todo_ids = {c.clip_id for c in todo}
    failed = mine.filter(pc.not_equal(mine.column("status"), "ok")).to_pylist()
    retry = [r["caption_id"] for r in failed if r["clip_id"] in todo_ids]
    skipped = sum(1 for c in kept if c.clip_id in done)
    return Plan(tasks, len(kept), skipped, retry)


def _task_table(todo: list[clips.KeptClip]) -> pa.Table:
    # Frame times are the source video's (what the captions manifest records); ``offset_s`` is the source time of
    # the decoded file's time 0 (the clip's start for an encoded clip file, 0 for a span of the source).
    rows = [{"clip_id": c.clip_id, "start_s": c.source_start_s, "end_s": c.source_start_s + c.duration_s,
             "path": None if c.refused else c.path, "offset_s": c.source_start_s - c.start_s,
             "width_px": c.width_px or None, "height_px": c.height_px or None, "error_message": c.refused,
             "kind": c.kind}
            for c in todo]
    return pa.Table.from_pylist(rows, schema=TASK_SCHEMA)


def decode_batch(tasks: pa.Table, spec: FrameSpec, num_frames: int, fps: float | None,
                 scratch: storage.Scratch | None = None) -> pa.Table:
    """Decode the frames of each task row; a clip that does not decode gets ``error_message`` instead.

    A clip in a bucket is decoded from a local copy in ``scratch`` (bounded, removed after the clip, also when
    decoding fails); a copy that does not fit the cap is that clip's error row.
    """
    out = []
    for task in tasks.to_pylist():
        if task.get("error_message"):
            out.append({"clip_id": task["clip_id"], "error_message": task["error_message"]})
            continue
        try:
            if not task["path"]:
                raise DecodeError(f"no clip file and no source video path for clip {task['clip_id']}; "
                                  f"rerun curate so its videos manifest lists the source")
            still = task.get("kind") == clips.IMAGE
            times = [] if still else frame_times(task["start_s"], task["end_s"], num_frames, fps)
            with storage.readable(task["path"], scratch) as path:  # a clip in a bucket: a local copy while it decodes
                if still:  # one image, in display orientation, at the model's size
                    clip = decode_still(path, spec, task["width_px"], task["height_px"])
                else:
                    width, height = display_dims(path, task["width_px"], task["height_px"])
                    clip = decode_clip(path, times, offset_s=task["offset_s"], size=spec.size_for(width, height))
            out.append({"clip_id": task["clip_id"], "frames": clip.rgb.tobytes(),
                        "frames_shape": list(clip.rgb.shape), "frame_times_s": clip.times_s, "still": clip.still})
        except (DecodeError, ValueError, OSError) as exc:  # ImageError is a ValueError
            out.append({"clip_id": task["clip_id"], "error_message":
                        f"clip {task['clip_id']}: cannot decode frames from {task['path']}: {exc}"})
    return pa.Table.from_pylist(out, schema=FRAMES_SCHEMA)


def frames_from_row(row: dict) -> ClipFrames:
    """Rebuild a :class:`ClipFrames` from a decode-stage row."""
    # A writable copy: torch warns on (and must not write into) read-only Arrow buffers.
    rgb = np.frombuffer(row["frames"], dtype=np.uint8).reshape(row["frames_shape"]).copy()
    return ClipFrames(rgb=rgb, times_s=list(row["frame_times_s"]), still=bool(row.get("still")))


class CaptionActor:
    """Ray Data callable class: loads the model once, turns decoded-frame batches into caption rows."""

    def __init__(self, cfg: CaptionConfig, resolved: ResolvedModel, prompt_version: str, config_hash: str,
                 tool_versions: dict, captioner_cls: type = Captioner):
        self.cfg = cfg
        self.prompt = get_prompt(prompt_version)
        self.captioner = captioner_cls(cfg, resolved)
        self.name = resolved.captioner
        self.provenance = {"config_hash": config_hash, "tool_versions": json.dumps(tool_versions, sort_keys=True)}

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows, ready = [], []
        for row in batch.to_pylist():
            if row["error_message"]:
                rows.append(self._error(row, "frames", row["error_message"]))
            else:
                ready.append(row)
        # Equal frame counts per generate call: SmolVLM pads shorter clips and miscounts their frames. Stills are
        # images, not one-frame videos: a call of their own.
        by_count: dict[tuple, list[dict]] = {}
        for row in ready:
            by_count.setdefault((bool(row.get("still")), row["frames_shape"][0]), []).append(row)
        for group in by_count.values():
            rows.extend(self._caption(group))
        order = {cid: i for i, cid in enumerate(batch.column("clip_id").to_pylist())}
        rows.sort(key=lambda r: order[r["clip_id"]])
        return store.conform(rows, "captions")

    def _caption(self, group: list[dict]) -> list[dict]:
        results = self._generate_safe(group)
        return [self._row(row, result) for row, result in zip(group, results)]

    def _generate_safe(self, group: list[dict]) -> list[tuple[Generation, float] | Exception]:
        """One result per clip: (generation, seconds) or the exception that clip's generate raised."""
        start = time.perf_counter()
        try:
            gens = self.captioner.generate([frames_from_row(r) for r in group], self.prompt.text)
        except Exception as exc:  # noqa: BLE001 - narrowed below: OOM halves, others retried per clip
            if len(group) == 1:
                return [exc]
            if not is_out_of_memory(exc):
                return [res for r in group for res in self._generate_safe([r])]
            _free_accelerator_memory()
            half = len(group) // 2
            return self._generate_safe(group[:half]) + self._generate_safe(group[half:])
        per_clip = (time.perf_counter() - start) / len(group)
        return [(g, per_clip) for g in gens]

    def _row(self, row: dict, result: tuple[Generation, float] | Exception) -> dict:
        if isinstance(result, Exception):
            return self._error(row, "generate", f"clip {row['clip_id']}: generate failed: "
                               f"{type(result).__name__}: {result}")
        gen, seconds = result
        base = self._base(row) | {"input_tokens": gen.input_tokens, "output_tokens": gen.output_tokens,
                                  "generate_s": seconds}
        if not gen.text.strip():
            return base | self._error_fields("generate", f"clip {row['clip_id']}: the model returned an empty "
                                             f"caption; raise --max-new-tokens or try another model")
        try:
            parsed = parse_output(self.prompt, gen.text)
        except ParseError as exc:
            return base | {"caption_json": gen.text} | self._error_fields(
                "parse", f"clip {row['clip_id']}: {self.prompt.version} output is malformed ({exc}); "
                         f"the raw text is in caption_json")
        return base | {"status": "ok", "caption": parsed.caption, "caption_short": parsed.caption_short,
                       "caption_json": parsed.caption_json, "camera_motion_text": parsed.camera_motion_text,
                       "shot_type": parsed.shot_type}

    def _base(self, row: dict) -> dict:
        shape = row.get("frames_shape") or [None]
        return {"caption_id": caption_id(row["clip_id"], self.name, self.prompt.version),
                "clip_id": row["clip_id"], "captioner": self.name, "prompt_version": self.prompt.version,
                "frames_used": shape[0], "frame_times_s": row.get("frame_times_s"),
                "created_at": store.now_utc(), **self.provenance}

    def _error(self, row: dict, stage: str, message: str) -> dict:
        return self._base(row) | self._error_fields(stage, message)

    @staticmethod
    def _error_fields(stage: str, message: str) -> dict:
        return {"status": "error", "error_stage": stage, "error_message": message}


def _free_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
