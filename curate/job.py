"""A video's way through curate as typed records: what each step of :mod:`rushes.curate.adapter` takes and returns.

One path for every video (a short one is a video of one chunk)::

    process_video(path)           -> VideoJob (hashed, probed, its chunk spans)    or a VideoOutcome (skipped, failed)
    analyse_whole(job)            -> VideoAnalysis                                  a job of one chunk: one decode
    analyse_chunk_of(job, k)      -> ChunkResult      } join_chunks -> VideoAnalysis   a job of several chunks
    plan_video(job, analysis)     -> ClipPlan (clip rows, encode groups)
    encode_group(plan, k)         -> EncodeResult
    finish_video(plan, encoded)   -> VideoOutcome (clips part, then the videos row: the completion marker)

A job of one chunk runs every step in the task that probed it (it holds the local copy already); the driver
(:mod:`rushes.curate.pipeline`) spreads the chunks and encode groups of a longer one over tasks. Every record
pickles, so any of them may cross a Ray task boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from rushes import storage
from rushes.curate.decode import ChunkDecode, ChunkSpan, DecodeResult
from rushes.curate.encode import EncodeJob
from rushes.curate.probe import Probe

# The span of a job analysed in one decode: from the first frame to the end of the file.
WHOLE = ChunkSpan(0, 0.0, 0.0, None, None)


@dataclass(frozen=True)
class RunInfo:
    """Per-run facts every row records, and where remote inputs are copied to be read."""

    config_hash: str
    tool_versions: str  # JSON
    scratch: storage.Scratch | None = None  # None: the default scratch folder and cap


@dataclass(frozen=True)
class Source:
    """An input whose bytes were hashed: its content names the video."""

    path: str  # the input as given (a local path or a URI)
    video_id: str
    size_bytes: int
    content_hash: str


@dataclass(frozen=True)
class VideoJob:
    """A hashed and probed video and its time chunks (:mod:`rushes.curate.chunks`); ``spans == (WHOLE,)`` for a
    video analysed in one decode (shorter than ``chunk_s``, or redone whole when its chunks did not join)."""

    source: Source
    probe: Probe
    spans: tuple[ChunkSpan, ...]
    stage_s: dict = field(default_factory=dict)  # probe and hash seconds
    provenance: dict | None = None  # the source's C2PA facts (rushes.media.provenance.read_c2pa); None: not read

    @property
    def path(self) -> str:
        return self.source.path

    @property
    def video_id(self) -> str:
        return self.source.video_id

    def whole(self) -> VideoJob:
        """This job as one chunk: one decode of the whole file, every step in one task."""
        return replace(self, spans=(WHOLE,))


@dataclass(frozen=True)
class ChunkResult:
    """One chunk's analysis: what its decode saw and each consumer's export (``{name: (class, export)}``)."""

    decode: ChunkDecode
    exports: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class DecodeFacts:
    """What the decode pass found that the videos row records."""

    num_frames_decoded: int
    warning: str | None
    rotation_deg: int
    vfr: bool | None  # None: too few frames to judge from the timing (the probe's flag stands)

    def row(self) -> dict:
        row = {"num_frames_decoded": self.num_frames_decoded, "warning": self.warning,
               "rotation_deg": self.rotation_deg}
        return row if self.vfr is None else {**row, "vfr": self.vfr}


@dataclass(frozen=True)
class VideoAnalysis:
    """The decode pass over a whole video, from one decode or joined from its chunks: what its clips are
    planned from. ``cuts`` answers ``cut_frames(pts_s)`` (the splitter, or cuts merged from chunks)."""

    result: DecodeResult
    facts: DecodeFacts
    cuts: Any
    signals: Any  # rushes.curate.scores.FrameSignals, or None without scores
    signature: Any  # rushes.curate.signature.FrameSignature
    seconds: float
    guard: Any = None  # rushes.curate.guard.GuardSignals, or None without frame guardrails


@dataclass(frozen=True)
class ClipPlan:
    """A planned video: its clip rows (filtered and written by :func:`finish_video`) and its encode groups."""

    job: VideoJob
    facts: DecodeFacts
    clip_rows: tuple[dict, ...]
    groups: tuple[tuple[EncodeJob, ...], ...]  # one per encode task; none without encoding
    stage_s: dict  # the job's, and decode


@dataclass(frozen=True)
class EncodeResult:
    """One encode group's clip files (``{clip_id: path relative to OUT}``), or its error."""

    done: dict = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class VideoOutcome:
    """What happened to one input, for the run summary and the live progress."""

    path: str
    video_id: str
    status: str  # ok, error, skipped, duplicate (a byte-identical copy of an input seen first)
    error_stage: str | None = None
    error_message: str | None = None
    stage_s: dict = field(default_factory=dict)  # probe, hash, decode, encode seconds
    duration_s: float | None = None  # probed length of the footage (live progress counts footage hours)
