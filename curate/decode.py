"""The one analysis decode pass per video: every frame, once, at a low resolution, fed to consumers.

Cut detection (``rushes.curate.split``) and the per-clip scores (``rushes.curate.scores``) both read this stream, so
no analysis decodes the source twice. Usage::

    result = analyse_video(path, [splitter, signals], long_side_px=256)
    result.pts_s[i]  # PTS (s, from the stream start) of decoded frame i

Each consumer gets ``consumer.add(frame)`` with a :class:`rushes.media.frames.Frame`: the decoded-frame index,
its PTS in seconds from the start of the stream, and an RGB uint8 image in display orientation
(rotation applied, SAR squared) whose long side is ``long_side_px`` (never upscaled).

A consumer that also needs a sharper copy of a few frames (OCR text samples, 1-2 per second) has
``detail_side(pts_s) -> int``: a non-zero long side makes the pass build that copy from the same decoded
picture and hand it to ``consumer.add_detail(frame)`` just before ``add`` (still one decode).

Why this scaling: PySceneDetect's detectors were tuned on frames converted to 8-bit RGB at full size
and shrunk with OpenCV's bilinear resize to a 256 px long side; we build the pixels the same way, so
its published goldens reproduce exactly (see ``_small`` for why the cheaper swscale paths are not used).
"""

from __future__ import annotations

import logging
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2

from rushes.media.frames import DecodeError, Frame, FrameReader, Gap, PtsRestart, display_size, rotate

log = logging.getLogger(__name__)
# Seek this far before a chunk's warm-up: a container's index finds keyframes by decode time, which can
# run a few frames ahead of the presentation time the warm-up is given in.
SEEK_MARGIN_S = 1.0


class FrameConsumer(Protocol):
    """Anything that takes the analysis frames in order."""

    def add(self, frame: Frame) -> None: ...


@dataclass
class DecodeResult:
    """What the analysis pass saw: frame timing, the analysis size, and the damaged regions skipped."""

    pts_s: array  # PTS in seconds of every decoded frame (strictly increasing)
    end_s: float  # PTS just after the last frame (last PTS + its duration)
    rotation_deg: int
    analysis_size: tuple[int, int]  # (width, height) of the frames given to consumers, display orientation
    gaps: list[Gap] = field(default_factory=list)  # damaged regions decoding skipped (clips never span one)
    warning: str | None = None  # damaged regions skipped, or decoding stopped early on a damaged stream

    @property
    def num_frames(self) -> int:
        return len(self.pts_s)


@dataclass(frozen=True)
class ChunkSpan:
    """One time chunk of a long video, in PTS seconds (see :mod:`rushes.curate.chunks`).

    Frames from ``warm_s`` warm the consumers' state; frames with ``start_s <= pts < end_s`` are the chunk's
    own (``end_s`` None: to the end of the video); ``next_warm_s`` is where the next chunk's warm-up starts.
    """

    index: int
    warm_s: float
    start_s: float
    end_s: float | None
    next_warm_s: float | None


@dataclass
class ChunkDecode:
    """What one chunk's decode saw: its own frames' PTS, and the evidence that it joins its neighbours.

    ``head``/``tail`` are (PTS, CRC-32 of the analysis frame) of the frames before its span (the warm-up) and
    from ``next_warm_s`` to ``end_s``: one chunk's tail must equal the next one's head (the same frames
    decoded the same way). ``start``/``end`` are (PTS, consumer states) at the first frame of the span and at
    the first frame after it: one chunk's end must equal the next one's start.
    """

    span: ChunkSpan
    pts_s: array = field(default_factory=lambda: array("d"))
    end_s: float | None = None  # PTS just after the last frame (the last chunk only)
    rotation_deg: int = 0
    analysis_size: tuple[int, int] = (0, 0)
    head: list = field(default_factory=list)
    tail: list = field(default_factory=list)
    start: tuple | None = None
    end: tuple | None = None
    snapshots: dict = field(default_factory=dict)  # consumer position -> its snapshot() at the end frame
    problem: str | None = None  # why this chunk cannot stand for its span (damage, a seek too late, ...)


def analysis_size(coded_w: int, coded_h: int, sar, long_side_px: int) -> tuple[int, int]:
    """(width, height) in coded orientation of the analysis frames: display aspect, long side capped."""
    disp_w, disp_h = display_size(coded_w, coded_h, sar, 0)
    scale = min(1.0, long_side_px / max(disp_w, disp_h))
    return max(1, round(disp_w * scale)), max(1, round(disp_h * scale))


def _small(rgb, size: tuple[int, int]):
    """RGB uint8 at ``size`` (coded orientation) from the full-size 8-bit RGB: OpenCV's bilinear shrink.

    This is PySceneDetect's own pixel path (its goldens reproduce exactly); swscale's scalers sample
    differently and move borderline cuts (FAST_BILINEAR misses 2 of 16 goldens, smoothing filters more).
    """
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)


def _detail(rgb, size: tuple[int, int]):
    """A sharper copy for a consumer's few sampled frames: area shrink (no aliasing of small text)."""
    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def analyse_video(path: str, consumers: Sequence[FrameConsumer], long_side_px: int = 256,
                  threads: int = 1) -> DecodeResult:
    """Decode ``path`` once and feed every frame to each consumer; raises :class:`DecodeError` when no
    frame decodes. Damaged regions are skipped (decoding resumes at the next decodable frame) and listed
    in ``gaps``; a stream that cannot be read on keeps what decoded. Either sets ``warning``."""
    pts = array("d")
    warning = None
    with FrameReader(path, threads) as reader:
        size = analysis_size(*reader.coded_size, reader.sar, long_side_px)
        try:
            for frame in reader:
                _feed(reader, frame, consumers, size)
                pts.append(frame.pts_s)
        except PtsRestart:
            raise  # not a damaged tail: clips past the restart would be lost, the video is an error row
        except DecodeError as exc:
            if not pts:
                raise
            warning = f"decoding stopped at {pts[-1]:.3f} s: {exc}; clips cover the decoded part only"
        if not pts:
            raise DecodeError(f"no frame decodes from {path}; the video stream is empty or damaged: re-copy the file")
        warning = warning or _damage_warning(path, reader)
        if warning:
            log.warning("%s", warning)
        last_dur = pts[-1] - pts[-2] if len(pts) > 1 else 1.0 / reader.fps
        shown = size if reader.rotation_deg % 180 == 0 else (size[1], size[0])
        return DecodeResult(pts, pts[-1] + last_dur, reader.rotation_deg, shown, list(reader.gaps), warning)


def _feed(reader: FrameReader, frame: Frame, consumers: Sequence[FrameConsumer], size: tuple[int, int]) -> Frame:
    """Give one decoded frame to every consumer (a sharper copy first to those that ask); returns the
    analysis frame."""
    for consumer in consumers:
        side = consumer.detail_side(frame.pts_s) if hasattr(consumer, "detail_side") else 0
        if side:
            big = _detail(frame.rgb, analysis_size(*reader.coded_size, reader.sar, side))
            consumer.add_detail(Frame(frame.index, frame.pts_s, rotate(big, reader.rotation_deg)))
    item = Frame(frame.index, frame.pts_s, rotate(_small(frame.rgb, size), reader.rotation_deg))
    for consumer in consumers:
        consumer.add(item)
    return item


def _damage_warning(path: str, reader: FrameReader) -> str | None:
    """One line naming the damaged regions decoding skipped, or None."""
    parts = [f"{g.after_s:.3f}-{g.before_s:.3f} s" if g.after_s is not None else f"start-{g.before_s:.3f} s"
             for g in reader.gaps]
    if reader.tail_failures:
        parts.append(f"{reader.tail_failures} packet(s) after the last frame (truncated?)")
    if not parts:
        return None
    return (f"{path} is damaged: no frame decodes in {', '.join(parts)}; decoding resumed after each damaged "
            f"region and no clip spans one; re-copy the file to recover them")


def analyse_chunk(path: str, consumers: Sequence, span: ChunkSpan, long_side_px: int = 256,
                  threads: int = 1, resume: dict | None = None) -> ChunkDecode:
    """Decode one time chunk of ``path`` (see :class:`ChunkSpan`) and feed its frames to ``consumers``, each
    of which has ``state(next_pts_s) -> bytes``. Never raises for a damaged or short file: anything that
    keeps the chunk from standing for its span is in ``problem`` (the caller then decodes the whole video).

    Consumers with ``snapshot()`` leave it in ``snapshots`` at the end frame; ``resume`` ({position: snapshot}
    of the previous chunk) restores those consumers at the span's first frame instead of warming them up."""
    resume = resume or {}
    out = ChunkDecode(span)
    warm = [c for i, c in enumerate(consumers) if i not in resume]
    with FrameReader(path, threads, seek_s=span.warm_s - SEEK_MARGIN_S if span.index else None) as reader:
        size = analysis_size(*reader.coded_size, reader.sar, long_side_px)
        first_s, fed = None, array("d")
        try:
            for frame in reader:
                first_s = frame.pts_s if first_s is None else first_s
                if frame.pts_s < span.warm_s:
                    continue
                if span.end_s is not None and frame.pts_s >= span.end_s:
                    out.end = (frame.pts_s, [c.state(frame.pts_s) for c in consumers])
                    out.snapshots = {i: c.snapshot() for i, c in enumerate(consumers) if hasattr(c, "snapshot")}
                    break
                if out.start is None and frame.pts_s >= span.start_s:
                    for i, blob in resume.items():
                        consumers[i].restore(blob)
                    out.start = (frame.pts_s, [c.state(frame.pts_s) for c in consumers])
                item = _feed(reader, frame, consumers if out.start else warm, size)
                fed.append(frame.pts_s)
                in_tail = span.next_warm_s is not None and frame.pts_s >= span.next_warm_s
                mark = (frame.pts_s, zlib.crc32(item.rgb)) if in_tail or frame.pts_s < span.start_s else None
                if frame.pts_s < span.start_s:
                    out.head.append(mark)
                else:
                    out.pts_s.append(frame.pts_s)
                if in_tail:
                    out.tail.append(mark)
        except PtsRestart:
            raise
        except DecodeError as exc:
            out.problem = f"decoding stopped after {fed[-1] if fed else span.warm_s:.3f} s: {exc}"
        out.problem = out.problem or _chunk_problem(reader, span, first_s, out)
        out.rotation_deg = reader.rotation_deg
        out.analysis_size = size if reader.rotation_deg % 180 == 0 else (size[1], size[0])
        if len(fed):
            out.end_s = fed[-1] + (fed[-1] - fed[-2] if len(fed) > 1 else 1.0 / reader.fps)
    return out


def _chunk_problem(reader: FrameReader, span: ChunkSpan, first_s: float | None, out: ChunkDecode) -> str | None:
    """Why a chunk's decode cannot stand for its span, or None."""
    if reader.gaps or reader.tail_failures:
        return "the stream is damaged in this span"
    if reader.repaired_pts:
        return f"{reader.repaired_pts} frame(s) without a usable PTS"
    if first_s is None or not out.pts_s:
        return "no frame decodes in this span (the container claims more than there is?)"
    if span.index and first_s > span.warm_s:
        return f"seeking landed at {first_s:.3f} s, after the warm-up start {span.warm_s:.3f} s"
    if span.end_s is not None and out.end is None:
        return f"the video ended before {span.end_s:.3f} s"
    return None
