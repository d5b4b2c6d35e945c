"""Clip encoding with ffmpeg (the one owner of it): all clips of a source video in ONE ffmpeg process.

How: a single decode of the source (per 64 clips), a ``select`` filter keeping only the frames of the clips (trims
and rejected spans drop out), rotation applied by ffmpeg's autorotate, a scale to square pixels and
even sizes, one libx264 encoder with a keyframe forced at each clip start, and the ``segment`` muxer
cutting the stream into one file per clip at those keyframes. Files are written under temporary names
and renamed to ``<clip_id>.mp4`` only after ffmpeg succeeded and every segment checked out, so no
partial clip file ever carries a final name.

Usage::

    done, (w, h) = encode_clips(src, [EncodeJob(clip_id, start_s, end_s), ...], out_dir,
                                display_w, display_h, cfg.encode)
"""

from __future__ import annotations

import csv
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rushes.media.ffmpeg import FFmpegError, media_input, run_ffmpeg
from rushes.media.frames import DecodeError, fit_size, main_video_index

# Half the smallest frame interval we expect: frames are selected by PTS against clip bounds.
EPS_S = 5e-4
# Clips per ffmpeg pass: one select expression with ~1000 terms overflows ffmpeg's expression parser.
MAX_CLIPS_PER_PASS = 64
# Seek this far before the first clip of a pass (ffmpeg decodes from the keyframe before anyway).
SEEK_MARGIN_S = 1.0


class EncodeError(RuntimeError):
    """ffmpeg failed to encode a video's clips, or its output did not match the planned clips."""


@dataclass(frozen=True)
class EncodeJob:
    """One clip to encode: its id and PTS span [start_s, end_s) in seconds from the stream start."""

    clip_id: str
    start_s: float
    end_s: float
    blur: tuple[tuple[float, float, float, float, float, float], ...] = ()  # (from_s, to_s, x, y, w, h): see below


BLUR_MARGIN = 0.25  # a face box grows by this share of its size on every side before it is blurred


def blur_spans(samples: Sequence[tuple[float, tuple]], start_s: float, end_s: float, hold_s: float
               ) -> tuple[tuple[float, float, float, float, float, float], ...]:
    """Regions to blur in a clip from its face samples ((PTS s, boxes as shares of the frame)): each box, grown
    by :data:`BLUR_MARGIN`, held ``hold_s`` either side of its sample (faces move between samples), within the
    clip: ``(from_s, to_s, x, y, w, h)`` for :attr:`EncodeJob.blur`."""
    out = []
    for pts, boxes in samples:
        for x, y, w, h in boxes:
            x0, y0 = max(0.0, x - BLUR_MARGIN * w), max(0.0, y - BLUR_MARGIN * h)
            x1, y1 = min(1.0, x + (1 + BLUR_MARGIN) * w), min(1.0, y + (1 + BLUR_MARGIN) * h)
            if x1 > x0 and y1 > y0:
                out.append((max(start_s, pts - hold_s), min(end_s, pts + hold_s), x0, y0, x1 - x0, y1 - y0))
    return tuple(out)


def _blur_graph(jobs: Sequence[EncodeJob], shift: float) -> str:
    """Filters that blur each job's :attr:`~EncodeJob.blur` regions (box blur, only while a region is due), on
    the frames as decoded (display orientation, before the select), timed as the select is; "" when none."""
    spans = [s for j in jobs for s in j.blur]
    if not spans:
        return ""
    parts, last = ["format=yuv420p[b0]"], "b0"
    for k, (t0, t1, x, y, w, h) in enumerate(spans):
        on = f"enable='between(t,{t0 + shift:.6f},{t1 + shift:.6f})'"
        parts.append(f"[{last}]split[m{k}][c{k}]")
        parts.append(f"[c{k}]crop=w=iw*{w:.6f}:h=ih*{h:.6f}:x=iw*{x:.6f}:y=ih*{y:.6f},boxblur=luma_radius="
                     f"'min(w,h)/5':luma_power=3:chroma_radius='min(cw,ch)/5':chroma_power=3:{on}[f{k}]")
        parts.append(f"[m{k}][f{k}]overlay=x=main_w*{x:.6f}:y=main_h*{y:.6f}:{on}[b{k + 1}]")
        last = f"b{k + 1}"
    return ";".join(parts) + f";[{last}]"


def output_size(width_px: int, height_px: int, max_short_side_px: int) -> tuple[int, int]:
    """Even (width, height) of the encoded clips: display size, short side capped, never upscaled."""
    return fit_size(width_px, height_px, short_side=max_short_side_px or None)


def build_args(src: str, jobs: Sequence[EncodeJob], tmp_dir: Path, size: tuple[int, int], cfg,
               offset_s: float = 0.0, name: str = "seg", stream_index: int | None = None) -> list[str]:
    """The ffmpeg argument list that writes ``tmp_dir/<name>-%06d.mp4``, one segment per job.

    ``offset_s`` converts our PTS (from the video stream start) to ffmpeg's time (from the container
    start): the stream start minus the container start, usually 0. Decoding starts at a keyframe
    shortly before the first job (input ``-ss``, frame-accurate when transcoding) and stops after
    the last one, so a pass over a few clips of a long video does not decode all of it. ``stream_index`` is the
    container index of the main video track (:func:`rushes.media.frames.main_video_index`; None: the first).
    """
    first, last = jobs[0], jobs[-1]
    seek = max(0.0, first.start_s + offset_s - SEEK_MARGIN_S)
    shift = offset_s - seek  # our PTS -> ffmpeg filter time after the input seek
    terms = "+".join(f"gte(t,{j.start_s + shift - EPS_S:.6f})*lt(t,{j.end_s + shift - EPS_S:.6f})" for j in jobs)
    starts = ",".join(f"{j.start_s - first.start_s - EPS_S:.6f}" for j in jobs[1:])
    # Select on the seeked time, then restart timestamps at 0 so the segment times are clip-relative.
    script = tmp_dir / f"{name}-filter.txt"
    script.write_text(f"{_blur_graph(jobs, shift)}select='{terms}',setpts=PTS-STARTPTS,scale={size[0]}:{size[1]},"
                      f"setsar=1,format=yuv420p")
    args = ["-ss", f"{seek:.6f}"] if seek > 0 else []
    args += ["-t", f"{last.end_s + offset_s + SEEK_MARGIN_S - seek:.6f}", *media_input(src), "-map",
             "0:v:0" if stream_index is None else f"0:{stream_index}",
             "-an", "-sn", "-dn", "-filter_script:v", str(script), "-fps_mode", "passthrough",
             "-c:v", cfg.codec, "-preset", cfg.preset, "-crf", str(cfg.crf), "-pix_fmt", "yuv420p"]
    if cfg.threads:
        args += ["-threads", str(cfg.threads)]
    if starts:
        args += ["-force_key_frames", starts]
    args += ["-f", "segment", "-segment_format", "mp4", "-reset_timestamps", "1",
             "-segment_list", str(tmp_dir / f"{name}.csv"), "-segment_list_type", "csv"]
    # Without a list the segment muxer cuts every 2 s: one clip must still be one segment.
    args += ["-segment_times", starts] if starts else ["-segment_time", "1000000000"]
    return args + ["-y", str(tmp_dir / f"{name}-%06d.mp4")]


def encode_clips(src: str, jobs: Sequence[EncodeJob], out_dir: str | os.PathLike, width_px: int, height_px: int,
                 cfg, offset_s: float = 0.0) -> tuple[dict[str, Path], tuple[int, int]]:
    """Encode ``jobs`` of ``src`` into ``out_dir/<clip_id>.mp4``; returns ({clip_id: path}, (w, h)).

    ``width_px``/``height_px`` are the display size of the source. One ffmpeg process per
    ``MAX_CLIPS_PER_PASS`` clips (ffmpeg's expression parser limits one select filter), so one for
    most videos. Raises :class:`EncodeError` naming the file on failure; nothing gets a final name then.
    """
    out_dir = Path(out_dir)
    size = output_size(width_px, height_px, cfg.max_short_side_px)
    if not jobs:
        return {}, size
    jobs = sorted(jobs, key=lambda j: j.start_s)
    try:  # the track curate analysed: never a cover picture stored before the real video
        stream_index = main_video_index(src)
    except DecodeError as exc:
        raise EncodeError(f"encoding clips of {src} failed: {exc}") from exc
    tmp_dir = out_dir / f"_tmp-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    try:
        segments: list[Path] = []
        for k in range(0, len(jobs), MAX_CLIPS_PER_PASS):
            chunk, name = jobs[k:k + MAX_CLIPS_PER_PASS], f"pass{k // MAX_CLIPS_PER_PASS:05d}"
            try:
                run_ffmpeg(build_args(src, chunk, tmp_dir, size, cfg, offset_s, name, stream_index), timeout_s=cfg.timeout_s)
            except FFmpegError as exc:
                raise EncodeError(f"encoding clips of {src} failed: {str(exc)[-600:]}; check that ffmpeg decodes "
                                  f"the file (ffmpeg -i FILE -f null -) or rerun with --no-encode") from exc
            found = _segments(tmp_dir, name)
            if len(found) != len(chunk):
                raise EncodeError(f"encoding {src}: ffmpeg wrote {len(found)} segment(s) for {len(chunk)} clip(s); "
                                  f"the stream's timestamps are probably broken; rerun with --no-encode")
            segments += found
        done: dict[str, Path] = {}
        for job, seg in zip(jobs, segments):
            final = out_dir / f"{job.clip_id}.mp4"
            os.replace(seg, final)
            done[job.clip_id] = final
        return done, size
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _segments(tmp_dir: Path, name: str) -> list[Path]:
    listing = tmp_dir / f"{name}.csv"
    if not listing.exists():
        return []
    with open(listing, newline="") as fh:
        names = [row[0] for row in csv.reader(fh) if row]
    paths = [tmp_dir / n for n in names]
    return [p for p in paths if p.exists() and p.stat().st_size > 0]
