"""Contact-sheet thumbnails: per clip one JPEG strip of a few frames, decoded with rushes.media.frames.

Usage::

    tasks = thumb_tasks(run_dir, clip_rows, videos_by_id, ThumbConfig())
    results = extract_thumbnails(tasks, "report_files/thumbs", ThumbConfig())
    results["<clip_id>"].file   # 'abc123-4f72.jpg' or None with .error set

Clips that are spans of one source video and lie close together are decoded in one pass
(``sample_frames`` over all their times), so a run cut from a few long videos costs about one decode of
each video instead of one seek-and-decode per clip. Strips already on disk are reused: the name holds the
clip id, frame count and height, which fix its content. A clip that cannot be decoded gets an error, not
an exception: one bad file never stops a report.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rushes.manifests.ids import make_id
from rushes.manifests import clips
from rushes.inspect.config import ThumbConfig
from rushes.media.frames import DecodeError, even, sample_frames, uniform_times

_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class ThumbTask:
    """One clip's strip: the file to decode, the PTS times to show, the frame size (None: decode then resize)."""

    clip_id: str
    source: str
    times_s: tuple[float, ...]
    size: tuple[int, int] | None
    file: str  # strip file name inside the thumbnail folder


@dataclass(frozen=True)
class ThumbResult:
    """Outcome for one clip: ``file`` (name in the thumbnail folder) or ``error``."""

    file: str | None
    error: str | None = None
    times_s: tuple[float, ...] = ()


def _frame_size(width, height, height_px: int) -> tuple[int, int] | None:
    if not width or not height:
        return None
    return even(height_px * width / height), even(height_px)


def thumb_name(clip_id: str, cfg: ThumbConfig) -> str:
    """File name of a clip's strip: the clip id when it is a plain token, else a hash of it (an edited id such as
    ``../../x`` must not name a file outside the thumbnail folder)."""
    safe = clip_id if _PLAIN_ID.fullmatch(clip_id or "") else make_id("thumb", clip_id)
    return f"{safe}-{cfg.frames_per_clip}f{cfg.height_px}.jpg"


def thumb_tasks(run_dir: str | os.PathLike, clip_rows: list[dict], videos: dict[str, dict],
                cfg: ThumbConfig) -> tuple[list[ThumbTask], dict[str, ThumbResult]]:
    """Tasks for every clip that has a readable source, and error results for those that have none.

    Where a clip's pixels are is :func:`rushes.manifests.clips.locate`'s answer: its encoded clip file (which must
    resolve inside the run directory) or, with ``--no-encode`` or when that file is gone, its span of the source
    video (``videos``: videos rows by video_id). A clip refused there (a ``clip_path`` outside the run directory,
    a span that is not a time) gets an error result and is never opened.
    """
    tasks, missing = [], {}
    for row in clip_rows:
        clip_id = row["clip_id"]
        size = _frame_size(row.get("width_px"), row.get("height_px"), cfg.height_px)
        name = thumb_name(clip_id, cfg)
        clip = clips.locate(run_dir, row, videos.get(row["video_id"]))
        if clip.encoded and not clip.refused and not Path(clip.path).is_file():
            clip = clips.locate(run_dir, row, videos.get(row["video_id"]), use_clip_file=False)
        if clip.refused or not Path(clip.path).is_file():
            missing[clip_id] = ThumbResult(None, clip.refused or f"no readable source for the thumbnail "
                                                                 f"({clip.path} is missing)")
            continue
        if clip.still:  # a still image has no frame strip to decode with PyAV
            missing[clip_id] = ThumbResult(None, f"{clip.path} is a still image: the report draws no strip of it")
            continue
        times = uniform_times(clip.start_s, clip.end_s, cfg.frames_per_clip)
        tasks.append(ThumbTask(clip_id, clip.path, tuple(times), size, name))
    return tasks, missing


def plan_batches(tasks: list[ThumbTask], cfg: ThumbConfig) -> list[list[ThumbTask]]:
    """Group tasks of one source and size whose times lie within ``max_gap_s`` into one decode pass."""
    by_source: dict[tuple, list[ThumbTask]] = {}
    for t in tasks:
        by_source.setdefault((t.source, t.size), []).append(t)
    batches = []
    for group in by_source.values():
        group.sort(key=lambda t: t.times_s[0])
        batch = [group[0]]
        for t in group[1:]:
            near = t.times_s[0] - batch[-1].times_s[-1] <= cfg.max_gap_s
            if near and len(batch) < cfg.max_batch_clips:
                batch.append(t)
            else:
                batches.append(batch)
                batch = [t]
        batches.append(batch)
    return batches


def _strip(frames: list[np.ndarray], height_px: int) -> np.ndarray:
    """Frames side by side (RGB), each scaled to ``height_px``, with a thin dark gap between them."""
    scaled = []
    for rgb in frames:
        if rgb.shape[0] != height_px:
            width = even(rgb.shape[1] * height_px / rgb.shape[0])
            rgb = cv2.resize(rgb, (width, height_px), interpolation=cv2.INTER_AREA)
        scaled.append(rgb)
    gap = np.full((height_px, 2, 3), 17, dtype=np.uint8)
    parts = []
    for i, rgb in enumerate(scaled):
        parts += [gap, rgb] if i else [rgb]
    return np.concatenate(parts, axis=1)


def _write_strip(path: Path, frames: list[np.ndarray], cfg: ThumbConfig) -> None:
    strip = _strip(frames, cfg.height_px)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
    if not ok:
        raise OSError(f"JPEG encoding of {path.name} failed")
    tmp = path.with_name(f"_{path.name}.tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


def run_batch(batch: list[ThumbTask], out_dir: str, cfg: ThumbConfig) -> dict[str, ThumbResult]:
    """Decode one batch in a single pass and write its strips; on failure retry each clip on its own."""
    out = Path(out_dir)
    times = [t for task in batch for t in task.times_s]
    try:
        frames = sample_frames(batch[0].source, times, size=batch[0].size)
    except (DecodeError, OSError, ValueError) as exc:
        if len(batch) > 1:
            results = {}
            for task in batch:
                results.update(run_batch([task], out_dir, cfg))
            return results
        return {batch[0].clip_id: ThumbResult(None, f"thumbnail decode failed: {exc}")}
    results, k = {}, 0
    for task in batch:
        picked = frames[k:k + len(task.times_s)]
        k += len(task.times_s)
        try:
            _write_strip(out / task.file, [f.rgb for f in picked], cfg)
            results[task.clip_id] = ThumbResult(task.file, None, tuple(f.pts_s for f in picked))
        except (OSError, cv2.error) as exc:
            results[task.clip_id] = ThumbResult(None, f"thumbnail write failed: {exc}")
    return results


def extract_thumbnails(tasks: list[ThumbTask], out_dir: str | os.PathLike, cfg: ThumbConfig) -> dict[str, ThumbResult]:
    """Write a strip per task into ``out_dir`` (reusing strips already there) and return results by clip id."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {t.clip_id: ThumbResult(t.file, None, t.times_s) for t in tasks if (out_dir / t.file).is_file()}
    todo = [t for t in tasks if t.clip_id not in results]
    batches = plan_batches(todo, cfg) if todo else []
    workers = min(cfg.resolved_workers(), len(batches))
    if workers <= 1 or len(todo) < cfg.min_clips_for_pool:
        for batch in batches:
            results.update(run_batch(batch, str(out_dir), cfg))
        return results
    # Largest batches first so one long pass does not finish last on an idle pool.
    batches.sort(key=len, reverse=True)
    # forkserver: children start from a clean process, not a fork of one whose decoder and Arrow threads
    # may hold locks; preloading this module there makes each child start without re-importing av and cv2.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        for part in pool.map(run_batch, batches, [str(out_dir)] * len(batches), [cfg] * len(batches)):
            results.update(part)
    return results
