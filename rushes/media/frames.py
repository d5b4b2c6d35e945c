"""The one owner of PyAV: decoding video frames as numpy arrays, VFR-safe and rotation-aware.

**One time base: stream time.** Every time this module takes or returns is in seconds from the first timestamp
of the file's video stream (``stream.start_time``), as PTS: a transport stream whose clock starts at 10 s, an
AVCHD file, or an MP4 whose edit list delays its video all start at 0 here, exactly as curate measured the clips
(:class:`FrameReader`), so a clip's ``start_s``/``end_s`` decode the same frames in every stage. A frame index is
the decoded-frame index counted from the start of the stream (only known when decoding starts at the beginning).
Rotation tags (phone video) are applied to the pixels so frames come out in display orientation; anamorphic
pixels (SAR) are squared by the resize when a target size is computed with :func:`display_size`.

Files are opened with the protocol and demuxer allow-lists of :mod:`rushes.media.ffmpeg` (real media
containers only: a playlist, a concat list or an image sequence is refused before any file it names is
opened). Decoding keeps going past damaged regions: a packet that does not decode is skipped and the
decoder resynchronises at the next decodable frame; :class:`FrameReader` records each such gap.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from rushes.media.ffmpeg import DEFAULT_PROTOCOLS, MEDIA_DEMUXERS, refused_format, sniff_format

# Decoding options passed to libavformat: local files, real media containers only (no playlist can reach out).
OPEN_OPTIONS = {"protocol_whitelist": DEFAULT_PROTOCOLS, "format_whitelist": MEDIA_DEMUXERS}
# Give up on a file after this many demuxer errors in a row (a damaged container that stops advancing).
MAX_DEMUX_FAILURES = 16


class DecodeError(RuntimeError):
    """A video could not be opened or decoded."""


class PtsRestart(DecodeError):
    """A stream's timestamps jump backwards (a restart): one time base cannot describe the file."""


# A frame earlier than the previous one by more than this is a restart of the stream's clock, not the reordering
# noise of a damaged stream (which is repaired to a time just after the previous frame).
PTS_RESTART_S = 1.0


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


@dataclass(frozen=True)
class Gap:
    """A damaged region decoding skipped: no frame decoded between ``after_s`` and ``before_s`` (PTS s)."""

    after_s: float | None  # PTS of the last frame before the damage (None: damage at the start)
    before_s: float  # PTS of the first frame decoded after it
    after_index: int | None  # decoded-frame index of those two frames (None: unknown, e.g. after a seek)
    before_index: int | None
    packets: int  # packets that failed to decode
    error: str


def display_rotation(ccw_deg: float | None) -> int:
    """Clockwise rotation (0, 90, 180, 270) that shows a picture upright, from the display-matrix angle
    PyAV and ffprobe report (counter-clockwise degrees). ffmpeg's autorotate turns the picture the same way."""
    return int(round(-(ccw_deg or 0) / 90.0)) % 4 * 90


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
    """Open a media file with PyAV, raising :class:`DecodeError` naming the file on failure (and what the
    file is when it is a playlist, list or still image: those are refused unread)."""
    try:
        return av.open(str(path), options=OPEN_OPTIONS)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        kind = sniff_format(str(path))
        if kind:
            raise DecodeError(refused_format(str(path), kind)) from exc
        raise DecodeError(f"cannot open {path}: {exc}; check that it is a complete video file") from exc


@dataclass(frozen=True)
class Track:
    """What decides which video track of a file is *the* video (see :func:`main_track`)."""

    index: int  # the stream's index in the container (ffmpeg's ``-map 0:INDEX``)
    attached_pic: bool  # a cover picture attached to the file, not a video
    frames: int  # frame count the container states (0: unknown)
    duration_s: float  # the track's own duration (0: unknown)


def main_track(tracks: Sequence[Track]) -> int:
    """The container index of the main video track: never an attached picture when a real track exists, then the
    longest, then the most frames (containers state one or the other), then the first. A one-frame cover track
    stored before the real video (some phone and music-video files) is thus never analysed as the video. curate's
    probe, every PyAV decode here and curate's encoder all choose with this rule."""
    return max(tracks, key=lambda t: (not t.attached_pic, t.duration_s, t.frames, -t.index)).index


def duration_tag_s(text) -> float:
    """Seconds of a Matroska ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``); 0.0 when absent or unreadable."""
    try:
        h, m, sec = str(text).split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except (ValueError, TypeError):
        return 0.0


def _track(stream) -> Track:
    duration = duration_tag_s(stream.metadata.get("DURATION") or stream.metadata.get("duration"))
    if not duration and stream.duration:
        duration = float(stream.duration * stream.time_base)
    attached = bool(int(stream.disposition) & int(av.stream.Disposition.attached_pic))
    return Track(stream.index, attached, int(stream.frames or 0), duration)


def video_stream(container, path: str):
    """The main video stream of an open container (:func:`main_track`); :class:`DecodeError` when it has none."""
    if not container.streams.video:
        raise DecodeError(f"{path} has no video stream (audio-only or not a video); remove it from the input")
    index = main_track([_track(s) for s in container.streams.video])
    return next(s for s in container.streams.video if s.index == index)


def main_video_index(path: str) -> int:
    """Container index of the main video track of ``path`` (what ``ffmpeg -map 0:INDEX`` takes)."""
    with open_container(path) as container, decode_errors(path):
        return video_stream(container, path).index


@contextlib.contextmanager
def decode_errors(path: str):
    """Turn PyAV's errors inside the block into :class:`DecodeError` naming the file."""
    try:
        yield
    except av.error.FFmpegError as exc:
        raise DecodeError(f"decoding {path} failed: {exc}; the file may be truncated or corrupt") from exc


def decoded(container, stream, path: str, on_skip=None) -> Iterator:
    """PyAV frames of ``stream`` in decode order, resynchronising after damage.

    A packet that does not decode is skipped (``on_skip(exc)`` is called) and decoding resumes at the next
    decodable frame, as ffmpeg does; the demuxer gets :data:`MAX_DEMUX_FAILURES` tries in a row before
    the rest of the file is given up with :class:`DecodeError` (after the frames that decoded)."""
    demux_failures = 0
    while True:
        try:
            for packet in container.demux(stream):
                demux_failures = 0
                try:
                    frames = packet.decode()
                except av.error.EOFError:
                    return
                except av.error.FFmpegError as exc:
                    if on_skip is not None:
                        on_skip(exc)
                    continue
                yield from frames
            return
        except av.error.EOFError:
            return
        except av.error.FFmpegError as exc:
            demux_failures += 1
            if demux_failures >= MAX_DEMUX_FAILURES:
                raise DecodeError(f"reading {path} failed {demux_failures} times in a row: {exc}; the file is "
                                  f"damaged past this point") from exc


def stream_info(path: str) -> StreamInfo:
    """Probe the first video stream with PyAV (decodes one frame to read the rotation tag)."""
    with open_container(path) as container, decode_errors(path):
        stream = video_stream(container, path)
        cc = stream.codec_context
        sar = stream.sample_aspect_ratio or Fraction(1)
        rate = stream.guessed_rate or stream.average_rate
        duration = float(stream.duration * stream.time_base) if stream.duration else None
        if duration is None and container.duration:
            duration = container.duration / av.time_base
        rotation = 0
        for frame in decoded(container, stream, path):
            rotation = display_rotation(getattr(frame, "rotation", 0))
            break
        w, h = display_size(cc.width, cc.height, sar, rotation)
        return StreamInfo(cc.width, cc.height, w, h, rotation, Fraction(sar), float(rate) if rate else 0.0,
                          duration, stream.frames or None)


def stream_origin(stream) -> int:
    """The timestamp (in ``stream.time_base`` units) that stream time 0 stands for: the stream's first one."""
    return stream.start_time or 0


def iter_frames(path: str, size: tuple[int, int] | None = None, start_s: float | None = None,
                end_s: float | None = None, apply_rotation: bool = True, threads: int = 0,
                interpolation: str = "BILINEAR", keep_preroll: bool = False) -> Iterator[Frame]:
    """Decode frames of ``path`` in order as RGB arrays.

    ``size`` is the (width, height) wanted in display orientation (after rotation); None keeps the
    coded size. ``start_s``/``end_s`` bound the range [start_s, end_s) of stream time (seconds from the
    stream's first timestamp, see the module doc); with ``start_s`` the
    decoder seeks to the keyframe before it and frame indices are None; ``keep_preroll`` also yields the
    frames decoded between that keyframe and ``start_s`` (so the frame on screen at ``start_s`` is
    included). ``threads`` 0 lets FFmpeg choose. Damaged packets are skipped (see :func:`decoded`);
    raises :class:`DecodeError` when the file cannot be read on, after yielding what decoded.
    """
    container = open_container(path)
    try:
        with decode_errors(path):
            yield from _scaled_frames(container, path, size, start_s, end_s, apply_rotation, threads,
                                      interpolation, keep_preroll)
    finally:
        container.close()


def _scaled_frames(container, path, size, start_s, end_s, apply_rotation, threads, interpolation, keep_preroll):
    stream = video_stream(container, path)
    stream.thread_type = "AUTO"
    if threads:
        stream.codec_context.thread_count = threads
    tb, origin = stream.time_base, stream_origin(stream)
    seeked = False
    if start_s and start_s > 0:
        container.seek(origin + int(start_s / tb), stream=stream, backward=True, any_frame=False)
        seeked = True
    index = -1
    rotation = None
    for frame in decoded(container, stream, path):
        index += 1
        if frame.pts is None:
            continue
        pts_s = float((frame.pts - origin) * tb)
        if start_s is not None and pts_s < start_s - 1e-6 and not keep_preroll:
            continue
        if end_s is not None and pts_s >= end_s - 1e-6:
            break
        if rotation is None:
            rotation = display_rotation(getattr(frame, "rotation", 0)) if apply_rotation else 0
        if size is not None:
            w, h = size if rotation % 180 == 0 else (size[1], size[0])
            rgb = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation=interpolation)
        else:
            rgb = frame.to_ndarray(format="rgb24")
        yield Frame(None if seeked else index, pts_s, rotate(rgb, rotation))


class FrameReader:
    """Every frame of the first video stream of a file, in decode order, at full size (a context manager).

    Iterating yields :class:`Frame` objects whose ``rgb`` is the full-size picture in *coded* orientation
    (square pixels not applied, not rotated: the caller scales, then :func:`rotate` s by ``rotation_deg``,
    known once the first frame is out). ``pts_s`` counts from the stream start and strictly increases
    (a frame without a PTS, or one out of order on a damaged stream, gets a time just after the previous).
    Damaged regions are skipped, each recorded in ``gaps``; ``tail_failures`` counts packets that failed
    after the last decoded frame; ``repaired_pts`` counts frames whose time was made up (no PTS, or out of
    order). Raises :class:`DecodeError` when the file cannot be opened or read on.

    ``seek_s`` starts decoding at the keyframe at or before that time (PTS seconds from the stream start):
    frame times are still absolute, but ``index`` then counts from the first frame decoded, not from the
    stream start (a seek cannot know how many frames came before), and made-up times depend on where decoding
    began: a caller that needs indices of the whole video assigns them from the times.
    """

    def __init__(self, path: str, threads: int = 1, seek_s: float | None = None) -> None:
        self.path = str(path)
        self.seek_s = seek_s if seek_s and seek_s > 0 else None
        self._container = open_container(self.path)
        try:
            with decode_errors(self.path):
                self._stream = video_stream(self._container, self.path)
                self._stream.thread_type = "AUTO"
                self._stream.codec_context.thread_count = max(1, threads)
                cc = self._stream.codec_context
                self.coded_size: tuple[int, int] = (cc.width, cc.height)
                self.sar = Fraction(self._stream.sample_aspect_ratio or 1)
                rate = self._stream.guessed_rate or self._stream.average_rate
        except BaseException:
            self._container.close()
            raise
        self.fps = float(rate) if rate else 25.0  # nominal rate; 25 when the container gives none
        self.rotation_deg = 0
        self.gaps: list[Gap] = []
        self.tail_failures = 0
        self.repaired_pts = 0  # frames without a PTS, or out of order, given a time just after the previous

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc) -> None:
        self._container.close()

    def __iter__(self) -> Iterator[Frame]:
        stream = self._stream
        tb, start = stream.time_base, stream_origin(stream)
        if self.seek_s is not None:
            with decode_errors(self.path):
                # The keyframe at or before the time (its index entry); PTS still count from the stream start.
                self._container.seek(start + int(self.seek_s / tb), stream=stream, backward=True, any_frame=False)
        reformatter = VideoReformatter()  # keeps its swscale context across frames (one per frame is slow)
        failed: list[Exception] = []
        last: float | None = None
        index = -1
        with decode_errors(self.path):
            for frame in decoded(self._container, stream, self.path, on_skip=failed.append):
                t = float((frame.pts - start) * tb) if frame.pts is not None else (
                    last + 1.0 / self.fps if last is not None else 0.0)
                if last is not None and t < last - PTS_RESTART_S:
                    raise PtsRestart(f"{self.path}: its timestamps jump back from {last:.3f} s to {t:.3f} s at "
                                     f"decoded frame {index + 1}, so its time runs twice (files joined byte by byte, "
                                     f"e.g. `cat a.ts b.ts`); curating it would lose everything after the jump. "
                                     f"Curate the original parts, or rejoin them with ffmpeg's concat demuxer")
                if frame.pts is None or (last is not None and t < last + 1e-6):
                    self.repaired_pts += 1
                if last is None:
                    self.rotation_deg = display_rotation(getattr(frame, "rotation", 0))
                else:
                    t = max(t, last + 1e-6)
                index += 1
                if failed:
                    self.gaps.append(Gap(last, t, index - 1 if last is not None else None, index, len(failed),
                                         str(failed[-1])))
                    failed.clear()
                last = t
                yield Frame(index, t, reformatter.reformat(frame, format="rgb24").to_ndarray())
        self.tail_failures = len(failed)


def uniform_times(start_s: float, end_s: float, n: int) -> list[float]:
    """``n`` times spread uniformly over [start_s, end_s), each at the centre of its segment."""
    if n <= 0 or end_s <= start_s:
        return []
    step = (end_s - start_s) / n
    return [start_s + step * (i + 0.5) for i in range(n)]


def fps_times(start_s: float, end_s: float, fps: float, max_frames: int | None = None) -> list[float]:
    """Times at ``fps`` over [start_s, end_s), optionally capped to ``max_frames`` (spread uniformly)."""
    if not fps > 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be a finite number > 0, got {fps}")
    n = max(1, int(math.floor((end_s - start_s) * fps + 1e-9)))
    if max_frames and n > max_frames:  # decided before any list is built: a long span costs nothing
        return uniform_times(start_s, end_s, max_frames)
    return [start_s + (i + 0.5) / fps for i in range(n)]


def sample_frames(path: str, times_s: Sequence[float], size: tuple[int, int] | None = None,
                  apply_rotation: bool = True) -> list[Frame]:
    """Frames shown at each of ``times_s`` (stream time: the last frame at or before t), in the order given.

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
    _, h, w, _ = frames.shape
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
