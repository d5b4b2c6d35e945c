"""The one owner of PyAV: decoding video frames as numpy arrays, VFR-safe and rotation-aware.

Times are PTS seconds; a frame index is the decoded-frame index counted from the start of the
stream (only known when decoding starts at the beginning). Rotation tags (phone video) are applied to
the pixels so frames come out in display orientation; anamorphic pixels (SAR) are squared by the
resize when a target size is computed with :func:`display_size`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

# Decoding options passed to libavformat: local files only, so a crafted playlist cannot reach out.
OPEN_OPTIONS = {"protocol_whitelist": "file,pipe"}


class DecodeError(RuntimeError):
    """A video could not be opened or decoded."""


@dataclass(frozen=True)
class StreamInfo:
    """What PyAV knows about the first video stream of a file."""

    coded_width_px: int
    coded_height_px: int
    width_px: int  # display width (SAR and rotation applied)
    height_px: int  # display height
    rotation_deg: int  # clockwise rotation applied to reach display orientation: 0, 90, 180, 270
    sar: Fraction
    fps: float  # nominal (guessed) rate
    duration_s: float | None
    num_frames: int | None  # as claimed by the container


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``rgb`` is HxWx3 uint8 in display orientation."""

    index: int | None
    pts_s: float
    rgb: np.ndarray


def _clockwise(rotation: float | int | None) -> int:
    # PyAV/ffprobe report the display-matrix angle (counter-clockwise); ffmpeg's autorotate turns the
    # picture clockwise by the negated angle.
    return int(round(-(rotation or 0) / 90.0)) % 4 * 90


def rotate(rgb: np.ndarray, rotation_deg: int) -> np.ndarray:
    """Rotate an HxWxC image clockwise by ``rotation_deg`` (a multiple of 90)."""
    k = (rotation_deg // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=-k)) if k else rgb


def even(x: float) -> int:
    """Nearest even integer >= 2 (libx264 and yuv420p want even sizes)."""
    return max(2, int(round(x / 2.0)) * 2)


def display_size(coded_w: int, coded_h: int, sar: Fraction | float = 1, rotation_deg: int = 0) -> tuple[int, int]:
    """Display (width, height): SAR applied to the width, then rotation."""
    w = coded_w * float(sar or 1)
    h = float(coded_h)
    if rotation_deg % 180 == 90:
        w, h = h, w
    return int(round(w)), int(round(h))


def fit_size(width: int, height: int, short_side: int | None = None, max_side: int | None = None) -> tuple[int, int]:
    """Scale (width, height) keeping the aspect ratio so the short side is at most ``short_side`` and the
    long side at most ``max_side``; never upscales; returns even sizes."""
    scale = 1.0
    if short_side:
        scale = min(scale, short_side / min(width, height))
    if max_side:
        scale = min(scale, max_side / max(width, height))
    return even(width * scale), even(height * scale)


def open_container(path: str):
    """Open a media file with PyAV, raising :class:`DecodeError` naming the file on failure."""
    try:
        return av.open(str(path), options=OPEN_OPTIONS)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise DecodeError(f"cannot open {path}: {exc}; check that it is a complete video file") from exc


def _video_stream(container, path: str):
    if not container.streams.video:
        raise DecodeError(f"{path} has no video stream (audio-only or not a video); remove it from the input")
    return container.streams.video[0]


def stream_info(path: str) -> StreamInfo:
    """Probe the first video stream with PyAV (decodes one frame to read the rotation tag)."""
    with open_container(path) as container:
        stream = _video_stream(container, path)
        cc = stream.codec_context
        sar = stream.sample_aspect_ratio or Fraction(1)
        rate = stream.guessed_rate or stream.average_rate
        duration = float(stream.duration * stream.time_base) if stream.duration else None
        if duration is None and container.duration:
            duration = container.duration / av.time_base
        rotation = 0
        for frame in container.decode(stream):
            rotation = _clockwise(getattr(frame, "rotation", 0))
            break
        w, h = display_size(cc.width, cc.height, sar, rotation)
        return StreamInfo(cc.width, cc.height, w, h, rotation, Fraction(sar), float(rate) if rate else 0.0,
                          duration, stream.frames or None)


def iter_frames(path: str, size: tuple[int, int] | None = None, start_s: float | None = None,
                end_s: float | None = None, apply_rotation: bool = True, threads: int = 0,
                interpolation: str = "BILINEAR", keep_preroll: bool = False) -> Iterator[Frame]:
    """Decode frames of ``path`` in order as RGB arrays.

    ``size`` is the (width, height) wanted in display orientation (after rotation); None keeps the
    coded size. ``start_s``/``end_s`` bound the PTS range [start_s, end_s); with ``start_s`` the
    decoder seeks to the keyframe before it and frame indices are None; ``keep_preroll`` also yields the
    frames decoded between that keyframe and ``start_s`` (so the frame on screen at ``start_s`` is
    included). ``threads`` 0 lets FFmpeg choose. Raises :class:`DecodeError` on a broken stream, after
    yielding what decoded.
    """
    container = open_container(path)
    try:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        tb = stream.time_base
        seeked = False
        if start_s and start_s > 0:
            container.seek(int(start_s / tb), stream=stream, backward=True, any_frame=False)
            seeked = True
        index = -1
        rotation = None
        for frame in container.decode(stream):
            index += 1
            if frame.pts is None:
                continue
            pts_s = float(frame.pts * tb)
            if start_s is not None and pts_s < start_s - 1e-6 and not keep_preroll:
                continue
            if end_s is not None and pts_s >= end_s - 1e-6:
                break
            if rotation is None:
                rotation = _clockwise(getattr(frame, "rotation", 0)) if apply_rotation else 0
            if size is not None:
                w, h = size if rotation % 180 == 0 else (size[1], size[0])
                rgb = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation=interpolation)
            else:
                rgb = frame.to_ndarray(format="rgb24")
            yield Frame(None if seeked else index, pts_s, rotate(rgb, rotation))
    except av.error.FFmpegError as exc:
        raise DecodeError(f"decoding {path} failed: {exc}; the file may be truncated or corrupt") from exc
    finally:
        container.close()


def uniform_times(start_s: float, end_s: float, n: int) -> list[float]:
    """``n`` times spread uniformly over [start_s, end_s), each at the centre of its segment."""
    if n <= 0 or end_s <= start_s:
        return []
    step = (end_s - start_s) / n
    return [start_s + step * (i + 0.5) for i in range(n)]


def fps_times(start_s: float, end_s: float, fps: float, max_frames: int | None = None) -> list[float]:
    """Times at ``fps`` over [start_s, end_s), optionally capped to ``max_frames`` (spread uniformly)."""
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    n = max(1, int(math.floor((end_s - start_s) * fps + 1e-9)))
    times = [start_s + (i + 0.5) / fps for i in range(n)]
    if max_frames and len(times) > max_frames:
        times = uniform_times(start_s, end_s, max_frames)
    return times


def sample_frames(path: str, times_s: Sequence[float], size: tuple[int, int] | None = None,
                  apply_rotation: bool = True) -> list[Frame]:
    """Frames shown at each of ``times_s`` (the last frame with PTS <= t), in the order given.

    Decodes once from the earliest requested time, so it is VFR-safe and costs one pass over the span.
    Times past the end repeat the last decoded frame. Raises :class:`DecodeError` if nothing decodes.
    """
    if not times_s:
        return []
    order = sorted(range(len(times_s)), key=lambda i: times_s[i])
    picked: list[Frame | None] = [None] * len(times_s)
    # Seek to the keyframe before the first time and keep the pre-roll: the frame on screen at that time
    # (PTS <= t) may lie any distance before it (low frame rates, VFR stills).
    start = times_s[order[0]]
    prev: Frame | None = None
    k = 0
    for frame in iter_frames(path, size=size, start_s=None if start <= 0 else start, apply_rotation=apply_rotation,
                             keep_preroll=True):
        while k < len(order) and frame.pts_s > times_s[order[k]] + 1e-6:
            picked[order[k]] = prev or frame
            k += 1
        prev = frame
        if k >= len(order):
            break
    while k < len(order) and prev is not None:
        picked[order[k]] = prev
        k += 1
    if prev is None:
        raise DecodeError(f"no frame decoded from {path} at {times_s[order[0]]:.3f}s or later")
    return [f for f in picked if f is not None]


def write_video(path: str, frames: np.ndarray, fps: float, crf: int = 18, preset: str = "veryfast") -> None:
    """Write (T, H, W, 3) uint8 RGB frames as an H.264 yuv420p MP4 at ``fps`` (fractional rates kept,
    e.g. 23.976 -> 24000/1001). Height and width must be even (yuv420p)."""
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"frame size {w}x{h} must be even for yuv420p; resize to {even(w)}x{even(h)}")
    rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(1)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
