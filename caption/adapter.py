"""Rows in, rows out: clip rows -> frame batches -> model calls -> caption rows.

Per-clip failures never stop a job; they become caption rows with ``status='error'``:

- ``frames``: the clip file or source span does not decode (missing, truncated, empty span);
- ``generate``: the model call failed for this clip (after retrying it alone) or returned nothing;
- ``parse``: a structured prompt's output is not the JSON asked for (the raw text is kept in
  ``caption_json``).

Every caption is checked (:mod:`rushes.caption.checks`: empty, truncated, repetition, refusal, language) and
the outcome recorded as columns; a flagged caption (or an empty one, or malformed JSON) is generated once more
with the next seed and sampling on, and the better of the two is kept, with its flags and ``attempts = 2``.
Each row records ``frames_sha256``, the hash of the exact frames its generation was given. With ``window_s``,
a long clip also gets one caption per window (``window_start_s``/``window_end_s``) beside its clip-level caption.

A batch that runs out of memory is retried in halves down to one clip. The functions here take and
return pyarrow tables so Ray Data passes them between stages without conversions; nothing here
imports ray.

Usage (what ``caption/pipeline.py`` wires into Ray Data)::

    plan = plan_run(out, resolved.captioner, prompt.version, limit=10, window_s=None)
    frames = decode_batch(plan.tasks, spec=spec, num_frames=8, fps=None)
    rows = CaptionActor(cfg, resolved, prompt, config_hash, tool_versions)(frames)
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

from rushes.caption.captioner import ResolvedModel, is_out_of_memory
from rushes.caption.checks import check_caption
from rushes.caption.config import CaptionConfig
from rushes.caption.engine import Generation, Sampling, engine_class, retry_sampling, sampling_of
from rushes.caption.frames import (ClipFrames, FrameSpec, decode_clip, decode_still, display_dims, frame_times,
                                   frames_sha256, window_spans)
from rushes.caption.prompts import ParseError, Prompt, get_prompt, parse_output
from rushes.manifests import clips, store
from rushes.manifests.ids import make_id
from rushes.media.frames import DecodeError

# What the decode stage hands to the model actors: frames travel as raw bytes plus their shape.
FRAMES_SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("window_start_s", pa.float64()),
    ("window_end_s", pa.float64()),
    ("frames", pa.binary()),
    ("frames_shape", pa.list_(pa.int32())),
    ("frame_times_s", pa.list_(pa.float64())),
    ("error_message", pa.string()),
    ("still", pa.bool_()),  # a still image (kind 'image'): captioned as one image, not a video
])

# One row per caption to make: a clip (``window_*`` null) or one window of it; where its frames come from (``path``,
# with ``offset_s`` the clip's start on that file's timeline: the clip start for an encoded clip, 0 for a span of the
# source video; ``start_s``/``end_s`` the span to sample, source seconds), or why they cannot be read
# (``error_message``, e.g. a clip_path that points outside the run directory).
TASK_SCHEMA = pa.schema([("clip_id", pa.string()), ("path", pa.string()), ("offset_s", pa.float64()),
                         ("start_s", pa.float64()), ("end_s", pa.float64()), ("window_start_s", pa.float64()),
                         ("window_end_s", pa.float64()), ("width_px", pa.int32()), ("height_px", pa.int32()),
                         ("error_message", pa.string()), ("kind", pa.string())])


@dataclass(frozen=True)
class Plan:
    """What a run will do: ``tasks`` to caption, clips skipped as already done, error rows to retry."""

    tasks: pa.Table  # TASK_SCHEMA, one row per caption to make (a clip, or a window of one)
    kept: int  # kept clips in the run
    skipped_done: int  # clips whose every caption is already ok for this captioner and prompt version
    retry_caption_ids: list[str]  # earlier error rows of the tasks in ``tasks`` (replaced by this run)

    @property
    def windows(self) -> int:
        """Window captions among the tasks."""
        return self.tasks.num_rows - (pc.sum(pc.is_null(self.tasks.column("window_start_s"))).as_py() or 0)


def caption_id(clip_id: str, captioner: str, prompt_version: str, window: tuple[float, float] | None = None) -> str:
    """Deterministic id of one caption version of a clip (or of one window of it)."""
    if window is None or window[0] is None:
        return make_id(clip_id, captioner, prompt_version)
    return make_id(clip_id, captioner, prompt_version, f"{window[0]:.3f}", f"{window[1]:.3f}")


def plan_run(out: str | os.PathLike, captioner: str, prompt_version: str, limit: int | None = None,
             window_s: float | None = None) -> Plan:
    """Kept clips of ``out`` that still need a caption (and, with ``window_s``, window captions) from
    ``captioner`` with ``prompt_version``; ``limit`` counts clips."""
    kept = clips.kept_clips(out)
    existing = store.read(out, "captions")
    mine = existing.filter(pc.and_(pc.equal(existing.column("captioner"), captioner),
                                   pc.equal(existing.column("prompt_version"), prompt_version)))
    done = set(mine.filter(pc.equal(mine.column("status"), "ok")).column("caption_id").to_pylist())
    rows, todo_clips, skipped = [], 0, 0
    for clip in kept:
        wanted = [r for r in _task_rows(clip, window_s)
                  if caption_id(clip.clip_id, captioner, prompt_version, _window(r)) not in done]
        if not wanted:
            skipped += 1
        elif limit is None or todo_clips < limit:
            todo_clips += 1
            rows.extend(wanted)
    tasks = pa.Table.from_pylist(rows, schema=TASK_SCHEMA)
    todo_ids = {caption_id(r["clip_id"], captioner, prompt_version, _window(r)) for r in rows}
    failed = mine.filter(pc.not_equal(mine.column("status"), "ok")).column("caption_id").to_pylist()
    return Plan(tasks, len(kept), skipped, [c for c in failed if c in todo_ids])


def _window(row: dict) -> tuple[float, float] | None:
    return None if row.get("window_start_s") is None else (row["window_start_s"], row["window_end_s"])


def _task_rows(c: clips.KeptClip, window_s: float | None) -> list[dict]:
    # Frame times are the source video's (what the captions manifest records); ``offset_s`` is the source time of
    # the decoded file's time 0 (the clip's start for an encoded clip file, 0 for a span of the source).
    start, end = c.source_start_s, c.source_start_s + c.duration_s
    base = {"clip_id": c.clip_id, "path": None if c.refused else c.path, "offset_s": c.source_start_s - c.start_s,
            "width_px": c.width_px or None, "height_px": c.height_px or None, "error_message": c.refused,
            "kind": c.kind}
    spans = window_spans(start, end, window_s) if window_s and not c.refused and not c.still else []
    return [{**base, "start_s": start, "end_s": end, "window_start_s": None, "window_end_s": None}] + [
        {**base, "start_s": a, "end_s": b, "window_start_s": a, "window_end_s": b} for a, b in spans]


def decode_batch(tasks: pa.Table, spec: FrameSpec, num_frames: int, fps: float | None,
                 scratch: storage.Scratch | None = None) -> pa.Table:
    """Decode the frames of each task row; a clip that does not decode gets ``error_message`` instead.

    A clip in a bucket is decoded from a local copy in ``scratch`` (bounded, removed after the clip, also when
    decoding fails); a copy that does not fit the cap is that clip's error row.
    """
    out = []
    for task in tasks.to_pylist():
        key = {"clip_id": task["clip_id"], "window_start_s": task.get("window_start_s"),
               "window_end_s": task.get("window_end_s")}
        if task.get("error_message"):
            out.append({**key, "error_message": task["error_message"]})
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
            out.append({**key, "frames": clip.rgb.tobytes(), "frames_shape": list(clip.rgb.shape),
                        "frame_times_s": clip.times_s, "still": clip.still})
        except (DecodeError, ValueError, OSError) as exc:  # ImageError is a ValueError
            out.append({**key, "error_message":
                        f"clip {task['clip_id']}: cannot decode frames from {task['path']}: {exc}"})
    return pa.Table.from_pylist(out, schema=FRAMES_SCHEMA)


def frames_from_row(row: dict) -> ClipFrames:
    """Rebuild a :class:`ClipFrames` from a decode-stage row."""
    # A writable copy: torch warns on (and must not write into) read-only Arrow buffers.
    rgb = np.frombuffer(row["frames"], dtype=np.uint8).reshape(row["frames_shape"]).copy()
    return ClipFrames(rgb=rgb, times_s=list(row["frame_times_s"]), still=bool(row.get("still")))


@dataclass
class _Outcome:
    """One generation turned into a caption row, and how bad it is (0: clean; flags count; 100: an error)."""

    row: dict
    badness: int
    retry: bool  # a flagged caption, an empty one or malformed JSON: worth one more try


def _key(row: dict) -> tuple:
    return row["clip_id"], row.get("window_start_s"), row.get("window_end_s")


class CaptionActor:
    """Ray Data callable class: loads the engine once, turns decoded-frame batches into caption rows.

    ``prompt`` is a :class:`Prompt` (or a version name); ``captioner_cls`` defaults to the config's engine;
    ``api_key`` (a :class:`rushes.caption.chat.Secret`) reaches the openai engine only.
    """

    def __init__(self, cfg: CaptionConfig, resolved: ResolvedModel, prompt: Prompt | str, config_hash: str,
                 tool_versions: dict, captioner_cls: type | None = None, api_key=None):
        self.cfg = cfg
        self.prompt = prompt if isinstance(prompt, Prompt) else get_prompt(prompt)
        cls = captioner_cls or engine_class(cfg)
        self.captioner = cls(cfg, resolved, **({"api_key": api_key} if api_key is not None else {}))
        self.engine = getattr(self.captioner, "engine", cfg.engine)
        self.name = resolved.captioner
        self.sampling = sampling_of(cfg)
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
        order = {_key(r): i for i, r in enumerate(batch.select(["clip_id", "window_start_s", "window_end_s"])
                                                  .to_pylist())}
        rows.sort(key=lambda r: order[_key(r)])
        return store.conform(rows, "captions")

    def _caption(self, group: list[dict]) -> list[dict]:
        """Caption a group; flagged captions are tried once more with the next seed, the better row kept."""
        clips_ = [frames_from_row(r) for r in group]
        results = self._generate_safe(clips_, self.prompt.text, self.sampling)
        outcomes = [self._outcome(row, clip, res, self.sampling, 1) for row, clip, res in zip(group, clips_, results)]
        again = [i for i, o in enumerate(outcomes) if o.retry] if self.cfg.retry_flagged else []
        if again:
            sampling = retry_sampling(self.sampling)
            retried = self._generate_safe([clips_[i] for i in again], self._retry_text(), sampling)
            for i, res in zip(again, retried):
                second = self._outcome(group[i], clips_[i], res, sampling, 2)
                kept = second if second.badness < outcomes[i].badness else outcomes[i]
                outcomes[i] = _Outcome({**kept.row, "attempts": 2}, kept.badness, False)
        return [o.row for o in outcomes]

    def _retry_text(self) -> str:
        """The retry's prompt: the same text, asking for the language when one is expected."""
        from rushes.caption.checks import LANGUAGE_NAMES

        if not self.cfg.language:
            return self.prompt.text
        return f"{self.prompt.text} Write the answer in {LANGUAGE_NAMES[self.cfg.language]}."

    def _generate_safe(self, clips_: list[ClipFrames], text: str,
                       sampling: Sampling) -> list[tuple[Generation, float] | Exception]:
        """One result per clip: (generation, seconds) or the exception that clip's generate raised."""
        start = time.perf_counter()
        try:
            gens = self.captioner.generate(clips_, text, sampling)
        except Exception as exc:  # noqa: BLE001 - narrowed below: OOM halves, others retried per clip
            if len(clips_) == 1:
                return [exc]
            if not is_out_of_memory(exc):
                return [res for c in clips_ for res in self._generate_safe([c], text, sampling)]
            _free_accelerator_memory()
            half = len(clips_) // 2
            return self._generate_safe(clips_[:half], text, sampling) + \
                self._generate_safe(clips_[half:], text, sampling)
        if len(gens) != len(clips_):
            raise RuntimeError(f"{self.engine} engine returned {len(gens)} results for {len(clips_)} clips")
        per_clip = (time.perf_counter() - start) / len(clips_)
        return [(g, per_clip) if isinstance(g, Generation) else g for g in gens]

    def _outcome(self, row: dict, clip: ClipFrames, result, sampling: Sampling, attempt: int) -> _Outcome:
        base = self._base(row) | {"frames_sha256": frames_sha256(clip.rgb), "sampling": sampling.to_json(),
                                  "attempts": attempt}
        label = _label(row)
        if isinstance(result, Exception):
            return _Outcome(base | self._error_fields("generate", f"{label}: generate failed: "
                                                      f"{type(result).__name__}: {result}"), 100, False)
        gen, seconds = result
        base |= {"input_tokens": gen.input_tokens, "output_tokens": gen.output_tokens, "generate_s": seconds,
                 "finish_reason": gen.finish_reason, "engine_version": gen.engine_version or base["engine_version"]}
        try:
            parsed = parse_output(self.prompt, gen.text) if gen.text.strip() else None
        except ParseError as exc:
            check = check_caption(gen.text, gen.finish_reason, self.cfg.language)
            return _Outcome(base | check.columns() | {"caption_json": gen.text} | self._error_fields(
                "parse", f"{label}: {self.prompt.version} output is malformed ({exc}); the raw text is in "
                         f"caption_json"), 100, True)
        check = check_caption(parsed.caption if parsed else "", gen.finish_reason, self.cfg.language)
        if parsed is None:
            return _Outcome(base | check.columns() | self._error_fields(
                "generate", f"{label}: the model returned an empty caption; raise --max-new-tokens or try "
                            f"another model"), 100, True)
        fields = {k: v for k, v in vars(parsed).items() if k != "caption"}
        return _Outcome(base | check.columns() | fields | {"status": "ok", "caption": parsed.caption},
                        len(check.flags), bool(check.flags))

    def _base(self, row: dict) -> dict:
        shape = row.get("frames_shape") or [None]
        window = _window(row)
        return {"caption_id": caption_id(row["clip_id"], self.name, self.prompt.version, window),
                "clip_id": row["clip_id"], "captioner": self.name, "prompt_version": self.prompt.version,
                "window_start_s": row.get("window_start_s"), "window_end_s": row.get("window_end_s"),
                "engine": self.engine, "engine_version": getattr(self.captioner, "engine_version", None),
                "frames_used": shape[0], "frame_times_s": row.get("frame_times_s"),
                "created_at": store.now_utc(), **self.provenance}

    def _error(self, row: dict, stage: str, message: str) -> dict:
        return self._base(row) | self._error_fields(stage, message)

    @staticmethod
    def _error_fields(stage: str, message: str) -> dict:
        return {"status": "error", "error_stage": stage, "error_message": message}


def _label(row: dict) -> str:
    """``clip ID`` or ``clip ID window [a, b) s``: how messages name a caption."""
    if row.get("window_start_s") is None:
        return f"clip {row['clip_id']}"
    return f"clip {row['clip_id']} window [{row['window_start_s']:g}, {row['window_end_s']:g}) s"


def _free_accelerator_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
