"""Long videos as time chunks analysed by separate tasks, reconciled into exactly the one-task result.

A video longer than ``CurateConfig.chunk_s`` is cut into equal time chunks (:func:`plan_chunks`). Each
chunk's task seeks to its warm-up start (:func:`warmup_s` before its span: enough frames for the detector's
rolling window, ``min_scene_len`` and the score samplers' memory), decodes to the first frame after its
span, and keeps what it decided at its own frames (cuts by the frame whose processing emitted them,
per-frame signals by PTS). :func:`find_break` then proves the join instead of trusting it:

- the frames a chunk decoded before its span equal the previous chunk's last frames (PTS and a CRC of the
  analysis picture), so seeking reproduced the decode;
- every consumer's state at the chunk's first frame equals the previous chunk's state at that same frame
  (:meth:`rushes.curate.split.SceneSplitter.state`, :meth:`rushes.curate.scores.FrameSignals.state`), so from there on
  the chunk emits what one task fed every frame would. When only the detector's state differs (e.g.
  ContentDetector's MERGE filter left open by two close cuts, which no warm-up reproduces), that chunk is
  decoded again with the previous chunk's detector restored at its first frame (:func:`find_break`): exact,
  but sequential, so it costs one more chunk decode per such border.

By induction from chunk 0 (which starts where one task starts) the joined cuts and signals are the
one-task run's, and the clips, scores and ids planned from them are identical. When a check fails (a
damaged span, a seek that landed late, frames without PTS, a state that did not converge) the video is
decoded again in one task, and the log says why; results are never approximated.

TransNetV2 (``--detector transnetv2|hybrid``) reads 100-frame windows aligned to the start of the video,
so those videos always run as one task.

Memory: a chunk task holds only its own frames' per-frame scalars (~100 B a frame) beside the decoder, so its
peak does not grow with the video: 145 MB peak RSS for a 180 s chunk of a 30-minute 640x360 25 fps video
(``bench/scale.py``'s ``peak_mb``). The reconcile task holds the whole video's scalars (~4.5 MB for 30 minutes
at 25 fps) and its clip rows; the encode tasks are ffmpeg processes over their own group of clips.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from rushes.curate.decode import ChunkDecode, ChunkSpan, DecodeResult

# Extra warm-up on top of what the detector and samplers need (frames that did not converge cost a redo).
WARMUP_MARGIN_S = 0.5


def chunked(cfg, duration_s: float | None) -> bool:
    """Whether a video of ``duration_s`` (probed) is analysed as time chunks under ``cfg``."""
    return bool(cfg.chunk_s and duration_s and duration_s > cfg.chunk_s and not cfg.detector.uses_transnet)


def warmup_s(cfg, fps: float) -> float:
    """Seconds decoded before a chunk's span: AdaptiveDetector's window (decided ``window_width`` frames
    late, scored from pairs) and twice ``min_scene_len`` (a cut the chunk could not see cannot suppress one
    after the warm-up), and the samplers' memory (8 recent frames, two sampling slots)."""
    fps = fps if 0 < fps < 1000 else 25.0
    det = cfg.detector
    need = [(2 * det.min_scene_len_frames + 4 * det.window_width + 4) / fps]
    scores = cfg.score_config()
    if scores is not None:
        for rate in (scores.flow_fps, scores.text_fps, scores.ocr_fps):
            need.append(9 / fps + (2 / rate if rate > 0 else 0))
    return max(need) + WARMUP_MARGIN_S


def plan_chunks(duration_s: float, chunk_s: float, warm_s: float) -> list[ChunkSpan]:
    """Equal chunks of at most ``chunk_s`` over ``duration_s``; the last one reads to the end of the file."""
    n = max(1, math.ceil(duration_s / chunk_s))
    starts = [duration_s * k / n for k in range(n)]
    spans = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < n else None
        spans.append(ChunkSpan(k, max(0.0, start - warm_s) if k else 0.0, start, end,
                               None if end is None else max(0.0, end - warm_s)))
    return spans


@dataclass(frozen=True)
class Break:
    """The first place where chunks do not join: ``position`` in the list, why, and (when only consumer
    states differ) the positions of the consumers whose states differ."""

    position: int
    reason: str
    consumers: tuple[int, ...] = ()


def find_break(decodes: Sequence[ChunkDecode]) -> Break | None:
    """The first :class:`Break` between the chunks (see module doc), or None when they join exactly."""
    for k, d in enumerate(decodes):
        if d.problem:
            return Break(k, f"chunk {d.span.index} ({d.span.start_s:.3f} s): {d.problem}")
    for k, (a, b) in enumerate(zip(decodes[:-1], decodes[1:]), start=1):
        where = f"chunk {b.span.index} ({b.span.start_s:.3f} s)"
        if a.tail != b.head:
            return Break(k, f"{where}: its warm-up frames differ from the previous chunk's (the seek did not "
                            f"reproduce them)")
        if a.end is None or b.start is None or a.end[0] != b.start[0]:
            return Break(k, f"{where}: its first frame differs from where the previous chunk stopped")
        if (a.rotation_deg, a.analysis_size) != (b.rotation_deg, b.analysis_size):
            return Break(k, f"{where}: rotation or frame size changes")
        if a.end[1] != b.start[1]:
            differ = tuple(i for i, (x, y) in enumerate(zip(a.end[1], b.start[1])) if x != y)
            return Break(k, f"{where}: detector or sampler state did not converge within the warm-up", differ)
    return None


def merged_result(decodes: Sequence[ChunkDecode]) -> DecodeResult:
    """The whole video's :class:`DecodeResult` from chunks that :func:`find_break` found joined."""
    pts = array("d")
    for d in decodes:
        pts.extend(d.pts_s)
    last = decodes[-1]
    return DecodeResult(pts, last.end_s, last.rotation_deg, last.analysis_size)
