"""The one analysis decode pass per video: every frame, once, at a low resolution, fed to consumers.

Cut detection (``curate.split``) and the per-clip scores (``curate.scores``) both read this stream, so
no analysis decodes the source twice. Usage::

    result = analyse_video(path, [splitter, signals], long_side_px=256)
    result.pts_s[i]  # PTS (s, from the stream start) of decoded frame i

Each consumer gets ``consumer.add(frame)`` with a :class:`media.frames.Frame`: the decoded-frame index,
its PTS in seconds from the start of the stream, and an RGB uint8 image in display orientation
(rotation applied, SAR squared) whose long side is ``long_side_px`` (never upscaled).

Why this scaling: PySceneDetect's detectors were tuned on frames converted to 8-bit RGB at full size
and shrunk with OpenCV's bilinear resize to a 256 px long side; we build the pixels the same way, so
its published goldens reproduce exactly (see ``_small_rgb`` for the cheaper paths that do not).
"""

from __future__ import annotations

import logging
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import av
import cv2
from av.video.reformatter import VideoReformatter

from media.frames import DecodeError, Frame, display_size, open_container, rotate

log = logging.getLogger(__name__)

# Give up on a stream after this many undecodable packets in a row (single bad packets are skipped).
MAX_CONSECUTIVE_FAILURES = 16


class FrameConsumer(Protocol):
    """Anything that takes the analysis frames in order."""

    def add(self, frame: Frame) -> None: ...


@dataclass
class DecodeResult:
    """What the analysis pass saw: frame timing, the analysis size, and how long it took."""

    pts_s: array  # PTS in seconds of every decoded frame (strictly increasing)
    end_s: float  # PTS just after the last frame (last PTS + its duration)
    nominal_fps: float  # the rate PySceneDetect uses for frame-based rules
    rotation_deg: int
    analysis_size: tuple[int, int]  # (width, height) of the frames given to consumers, display orientation
    decode_s: float
    warning: str | None = None  # set when decoding stopped early on a damaged stream

    @property
    def num_frames(self) -> int:
        return len(self.pts_s)


def analysis_size(coded_w: int, coded_h: int, sar, rotation_deg: int, long_side_px: int) -> tuple[int, int]:
    """(width, height) in coded orientation of the analysis frames: display aspect, long side capped."""
    disp_w, disp_h = display_size(coded_w, coded_h, sar, 0)
    scale = min(1.0, long_side_px / max(disp_w, disp_h))
    return max(1, round(disp_w * scale)), max(1, round(disp_h * scale))


def _rotation_of(frame) -> int:
    # PyAV reports the display-matrix angle counter-clockwise; turning clockwise by its negation displays it.
    return int(round(-(getattr(frame, "rotation", 0) or 0) / 90.0)) % 4 * 90


def _small_rgb(frame, size: tuple[int, int], reformatter):
    """RGB uint8 at ``size`` (coded orientation): full-size 8-bit RGB, then OpenCV's bilinear shrink.

    This is PySceneDetect's own pixel path (its goldens reproduce exactly); swscale's scalers sample
    differently and move borderline cuts (FAST_BILINEAR misses 2 of 16 goldens, smoothing filters
    more). A persistent reformatter keeps one swscale context instead of building one per frame.
    """
    rgb = reformatter.reformat(frame, format="rgb24").to_ndarray()
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)


def _frames(container, stream, path: str):
    """Decoded frames; skips single bad packets like ffmpeg does, stops after too many in a row."""
    failures = 0
    while True:
        try:
            for frame in container.decode(stream):
                failures = 0
                yield frame
            return
        except av.error.EOFError:
            return
        except av.error.FFmpegError as exc:
            failures += 1
            if failures >= MAX_CONSECUTIVE_FAILURES:
                raise DecodeError(f"decoding {path} failed {failures} times in a row: {exc}; the file is "
                                  f"damaged past this point") from exc


def analyse_video(path: str, consumers: Sequence[FrameConsumer], long_side_px: int = 256,
                  threads: int = 1) -> DecodeResult:
    """Decode ``path`` once and feed every frame to each consumer; raises :class:`DecodeError` when no
    frame decodes. A stream that breaks part-way keeps what decoded and sets ``warning``."""
    t0 = time.perf_counter()
    container = open_container(path)
    pts = array("d")
    warning, rotation, size, last_dur = None, 0, (0, 0), 0.0
    try:
        if not container.streams.video:
            raise DecodeError(f"{path} has no video stream (audio-only or not a video); remove it from the input")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = max(1, threads)
        cc, tb = stream.codec_context, stream.time_base
        rate = stream.guessed_rate or stream.average_rate
        nominal_fps = float(rate) if rate else 25.0
        start = stream.start_time or 0
        sar = stream.sample_aspect_ratio or 1
        size = analysis_size(cc.width, cc.height, sar, 0, long_side_px)
        frames = _frames(container, stream, path)
        reformatter = VideoReformatter()  # keeps its swscale context across frames (one per frame is slow)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except DecodeError as exc:
                if not pts:
                    raise
                warning = f"decoding stopped at {pts[-1]:.3f} s: {exc}; clips cover the decoded part only"
                log.warning("%s", warning)
                break
            if frame.pts is not None:
                t = float((frame.pts - start) * tb)
            else:
                t = (pts[-1] + 1.0 / nominal_fps) if pts else 0.0
            if pts:
                t = max(t, pts[-1] + 1e-6)  # keep PTS strictly increasing on damaged streams
                last_dur = t - pts[-1]
            else:
                rotation = _rotation_of(frame)
            rgb = _small_rgb(frame, size, reformatter)
            item = Frame(len(pts), t, rotate(rgb, rotation))
            pts.append(t)
            for consumer in consumers:
                consumer.add(item)
    except av.error.FFmpegError as exc:
        raise DecodeError(f"decoding {path} failed: {exc}; the file may be truncated or corrupt") from exc
    finally:
        container.close()
    if not pts:
        raise DecodeError(f"no frame decodes from {path}; the video stream is empty or damaged: re-copy the file")
    end_s = pts[-1] + (last_dur or 1.0 / nominal_fps)
    shown = size if rotation % 180 == 0 else (size[1], size[0])
    return DecodeResult(pts, end_s, nominal_fps, rotation, shown, time.perf_counter() - t0, warning)
