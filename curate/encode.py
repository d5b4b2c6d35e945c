"""Clip encoding with ffmpeg (the one owner of it): all clips of a source video in ONE ffmpeg process.

How: a single decode of the source, a ``select`` filter keeping only the frames of the clips (trims
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

from media.ffmpeg import FFmpegError, run_ffmpeg
from media.frames import fit_size

# Half the smallest frame interval we expect: frames are selected by PTS against clip bounds.
EPS_S = 5e-4


class EncodeError(RuntimeError):
    """ffmpeg failed to encode a video's clips, or its output did not match the planned clips."""


@dataclass(frozen=True)
class EncodeJob:
    """One clip to encode: its id and PTS span [start_s, end_s) in seconds from the stream start."""

    clip_id: str
    start_s: float
    end_s: float


def output_size(width_px: int, height_px: int, max_short_side_px: int) -> tuple[int, int]:
    """Even (width, height) of the encoded clips: display size, short side capped, never upscaled."""
    return fit_size(width_px, height_px, short_side=max_short_side_px or None)


def build_args(src: str, jobs: Sequence[EncodeJob], tmp_dir: Path, size: tuple[int, int], cfg,
               offset_s: float = 0.0) -> list[str]:
    """The ffmpeg argument list that writes ``tmp_dir/seg-%06d.mp4``, one segment per job.

    ``offset_s`` converts our PTS (from the video stream start) to ffmpeg's filter time (from the
    container start): it is the stream start minus the container start, usually 0.
    """
    # Select on the original time, then restart timestamps at 0 so the segment times are relative.
    terms = "+".join(f"gte(t,{j.start_s + offset_s - EPS_S:.6f})*lt(t,{j.end_s + offset_s - EPS_S:.6f})"
                     for j in jobs)
    first = jobs[0].start_s
    starts = ",".join(f"{j.start_s - first - EPS_S:.6f}" for j in jobs[1:])
    vf = f"select='{terms}',setpts=PTS-STARTPTS,scale={size[0]}:{size[1]},setsar=1,format=yuv420p"
    args = ["-i", src, "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", vf, "-fps_mode", "passthrough",
            "-c:v", cfg.codec, "-preset", cfg.preset, "-crf", str(cfg.crf), "-pix_fmt", "yuv420p"]
    if cfg.threads:
        args += ["-threads", str(cfg.threads)]
    if starts:
        args += ["-force_key_frames", starts]
    args += ["-f", "segment", "-segment_format", "mp4", "-reset_timestamps", "1",
             "-segment_list", str(tmp_dir / "segments.csv"), "-segment_list_type", "csv"]
    # Without a list the segment muxer cuts every 2 s: one clip must still be one segment.
    args += ["-segment_times", starts] if starts else ["-segment_time", "1000000000"]
    return args + ["-y", str(tmp_dir / "seg-%06d.mp4")]


def encode_clips(src: str, jobs: Sequence[EncodeJob], out_dir: str | os.PathLike, width_px: int, height_px: int,
                 cfg, offset_s: float = 0.0) -> tuple[dict[str, Path], tuple[int, int]]:
    """Encode ``jobs`` of ``src`` into ``out_dir/<clip_id>.mp4``; returns ({clip_id: path}, (w, h)).

    ``width_px``/``height_px`` are the display size of the source. Raises :class:`EncodeError` naming
    the file on failure; nothing is left under a final name then.
    """
    out_dir = Path(out_dir)
    size = output_size(width_px, height_px, cfg.max_short_side_px)
    if not jobs:
        return {}, size
    jobs = sorted(jobs, key=lambda j: j.start_s)
    tmp_dir = out_dir / f"_tmp-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    try:
        try:
            run_ffmpeg(build_args(src, jobs, tmp_dir, size, cfg, offset_s), timeout_s=cfg.timeout_s)
        except FFmpegError as exc:
            raise EncodeError(f"encoding clips of {src} failed: {exc}; check that ffmpeg decodes the file "
                              f"(ffmpeg -i FILE -f null -) or rerun with --no-encode") from exc
        segments = _segments(tmp_dir)
        if len(segments) != len(jobs):
            raise EncodeError(f"encoding {src}: ffmpeg wrote {len(segments)} segment(s) for {len(jobs)} clip(s); "
                              f"the stream's timestamps are probably broken; rerun with --no-encode")
        done: dict[str, Path] = {}
        for job, seg in zip(jobs, segments):
            final = out_dir / f"{job.clip_id}.mp4"
            os.replace(seg, final)
            done[job.clip_id] = final
        return done, size
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _segments(tmp_dir: Path) -> list[Path]:
    listing = tmp_dir / "segments.csv"
    if not listing.exists():
        return []
    with open(listing, newline="") as fh:
        names = [row[0] for row in csv.reader(fh) if row]
    paths = [tmp_dir / n for n in names]
    return [p for p in paths if p.exists() and p.stat().st_size > 0]
