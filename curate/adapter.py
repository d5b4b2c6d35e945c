"""One video -> manifest rows and clip files. The thin layer between a Ray task and the pure modules.

Every video takes the same steps, each returning a record of :mod:`rushes.curate.job`: :func:`process_video`
checks, hashes and probes it into a :class:`VideoJob` of one or more time chunks; the analysis
(:func:`analyse_whole` for a job of one chunk, :func:`analyse_chunk_of` per chunk and :func:`join_chunks` for
more) gives a :class:`VideoAnalysis`; :func:`plan_video` turns that into clip rows and encode groups;
:func:`encode_group` encodes each group; :func:`finish_video` filters and writes the clips part and, last, the
videos row: the completion marker a rerun looks for. A job of one chunk (a video shorter than ``chunk_s``) runs
all of this in the task that probed it (:func:`curate_whole`); the driver spreads a longer one's chunks and
encode groups over tasks.

Known per-video failures (missing or empty file, not a video, undecodable stream, ffmpeg failure) become a
videos row with ``status='error'``, the stage that failed and a message naming the file and the fix; anything
else is a bug and raises.

Inputs and ``out_dir`` may be in a bucket (:mod:`storage`): a remote video is streamed into a bounded
scratch copy (hashed while it streams, removed afterwards, also on failure) that ffprobe and PyAV read;
clips of a remote run are encoded into a local staging folder and uploaded before their part is written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from pathlib import Path

from rushes import storage
from rushes.storage.names import display, exact_bytes, from_stored

from rushes.curate.chunks import chunked, find_break, merged_result, plan_chunks, warmup_s
from rushes.curate.decode import ChunkDecode, DecodeResult, analyse_chunk, analyse_video
from rushes.curate.encode import EncodeError, EncodeJob, blur_spans, encode_clips, output_size
from rushes.curate.filter import RunFilter
from rushes.curate.job import (WHOLE, ChunkResult, ClipPlan, DecodeFacts, EncodeResult, RunInfo, Source,
                               VideoAnalysis, VideoJob, VideoOutcome)
from rushes.curate.probe import Probe, ProbeError, probe_video
from rushes.curate.shots import ShotModelError, resolve_device
from rushes.curate.signature import FrameSignature
from rushes.curate.still import StillError, probe_still, still_rows
from rushes.curate.split import DETECTOR_NAMES, ClipSpan, detector_params, make_splitter, plan_clips
from rushes.manifests import (ManifestError, conform, content_hash, content_hasher, delete_part, make_id, now_utc,
                       part_location, read_part, write_part)
from rushes.media.frames import DecodeError
from rushes.media.images import is_image_name

log = logging.getLogger(__name__)


class VideoFailure(Exception):
    """A known per-video failure: recorded as a row, never raised out of the adapter."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage

    def naming(self, src: str | None, path: str) -> VideoFailure:
        """The same failure with the local copy ``src`` of a remote input named by the input ``path``."""
        return VideoFailure(self.stage, _renamed(str(self), src, path))


class DuplicateInput(Exception):
    """The input's bytes are a video an earlier run curated under another path that still exists."""

    def __init__(self, original: str) -> None:
        super().__init__(original)
        self.original = original


def input_location(path: str) -> str:
    """How an input is recorded: an absolute local path, or the URI as given; a local name that is not UTF-8 in
    its display form (its exact bytes go to ``path_bytes``, see :mod:`rushes.storage.names`)."""
    return path if storage.is_uri(path) else display(os.path.abspath(path))


def path_video_id(path: str) -> str:
    """Id of an input that could not be hashed (missing or unreadable): derived from its path."""
    return make_id("video-path", input_location(path))


def _renamed(text: str | None, src: str | None, path: str) -> str | None:
    """``text`` naming the input ``path`` where it names ``src``, its local scratch copy (a remote input)."""
    if not text or not src or not storage.is_remote(path):
        return text
    return text.replace(src, path)


def _run_location(out_dir):
    return out_dir if storage.is_remote(out_dir) else Path(out_dir)


def _timed(stage_s: dict, stage: str, fn, *args, **kwargs):
    t = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        stage_s[stage] = stage_s.get(stage, 0.0) + time.perf_counter() - t


# --- The first task: input, hash, probe -> a VideoJob ----------------------------------------------------------


def process_video(path: str, out_dir: str | os.PathLike, cfg, run: RunInfo) -> VideoOutcome | VideoJob:
    """Curate one video into ``out_dir``. Returns its outcome (its videos row written, or skipped as done), or,
    for a video of several chunks (longer than ``cfg.chunk_s``), its :class:`VideoJob` for the driver to spread
    over tasks (nothing written yet)."""
    started = time.perf_counter()
    stage_s: dict = {}
    source: Source | None = None
    probe: Probe | None = None
    try:
        _check_input(path)
        if is_image_name(path):  # a still: one videos row and one clips row of kind 'image' (curate/still.py)
            return curate_still(path, out_dir, cfg, run, started, stage_s)
        # A local file is probed before it is hashed: a file that is no video (a sparse 20 GB image, a disk
        # dump) is refused from its header instead of after reading every byte.
        probe = None if storage.is_remote(path) else _probe(path, path, cfg, stage_s)
        with ExitStack() as stack:
            # Hashing streams the bytes once; for a remote input the same pass fills the scratch copy.
            copy = _timed(stage_s, "hash", _local_copy, path, run, stack, content_hasher())
            source = Source(path, make_id("video", copy.digest), copy.size_bytes, copy.digest)
            if _done_before(_run_location(out_dir), source, run):
                return VideoOutcome(path, source.video_id, "skipped", stage_s=stage_s)
            probe = probe or _probe(copy.path, path, cfg, stage_s)
            provenance = _timed(stage_s, "provenance", _provenance, copy.path, cfg)
            job = VideoJob(source, probe, _spans(probe, cfg), dict(stage_s), provenance)
            if len(job.spans) > 1:
                return job
            return curate_whole(job, out_dir, cfg, run, src=copy.path, started=started)
    except DuplicateInput as exc:
        return record_duplicate(path, exc.original, out_dir, run)
    except VideoFailure as exc:
        outcome = VideoOutcome(path, source.video_id if source else path_video_id(path), "error", exc.stage,
                               str(exc), stage_s)
        row = _videos_row(path, source, probe, process_s=time.perf_counter() - started)
        return _failed(out_dir, outcome, row, run)


def curate_still(path: str, out_dir, cfg, run: RunInfo, started: float, stage_s: dict) -> VideoOutcome:
    """Curate the still image ``path`` as a one-frame clip (``kind = 'image'``): hash, probe, score, filter, and
    its rows; a known failure is its error row. Raises :class:`DuplicateInput` as :func:`process_video` does."""
    source, facts = None, {"kind": "image"}
    try:
        info = None if storage.is_remote(path) else _still(probe_still, path, path, stage_s, "probe")
        with ExitStack() as stack:
            copy = _timed(stage_s, "hash", _local_copy, path, run, stack, content_hasher())
            source = Source(path, make_id("video", copy.digest), copy.size_bytes, copy.digest)
            if _done_before(_run_location(out_dir), source, run):
                return VideoOutcome(path, source.video_id, "skipped", stage_s=stage_s)
            info = info or _still(probe_still, copy.path, path, stage_s, "probe")
            facts, clip = _still(still_rows, copy.path, path, stage_s, "decode", source.video_id, copy.path, info,
                                 cfg, run)
    except VideoFailure as exc:
        outcome = VideoOutcome(path, source.video_id if source else path_video_id(path), "error", exc.stage,
                               str(exc), stage_s)
        return _failed(out_dir, outcome, _videos_row(path, source, None, **facts,
                                                     process_s=time.perf_counter() - started), run)
    _publish_clips(_run_location(out_dir), source.video_id, [clip], cfg)
    row = _videos_row(path, source, None, **facts, num_clips=1, process_s=time.perf_counter() - started)
    return _record(out_dir, VideoOutcome(path, source.video_id, "ok", stage_s=stage_s), row, run)


def _still(fn, src: str, path: str, stage_s: dict, stage: str, *args):
    """``fn(src)`` (or ``fn(*args)``) timed as ``stage``; a :class:`StillError` becomes the input's failure, naming
    ``path`` where it names the local copy ``src``."""
    try:
        return _timed(stage_s, stage, fn, *(args or (src,)))
    except StillError as exc:
        raise VideoFailure(exc.stage, str(exc)).naming(src, path) from exc


def _local_copy(path: str, run: RunInfo, stack: ExitStack, hasher=None) -> storage.LocalCopy:
    """A local file with the input's bytes for the rest of ``stack`` (the input itself when local); a failure to
    read them is the ``hash`` stage's (the first to read every byte)."""
    try:
        return stack.enter_context(storage.local_copy(path, run.scratch, hasher=hasher))
    except storage.ScratchError as exc:
        raise VideoFailure("input", str(exc)) from exc
    except OSError as exc:
        raise VideoFailure("hash", f"cannot read {path}: {exc}; check the file and its permissions") from exc


def _check_input(path: str) -> None:
    if storage.is_remote(path):
        try:
            found = storage.is_file(path) and storage.size(path) > 0
        except OSError as exc:
            raise VideoFailure("input", f"cannot reach {path}: {exc}; check the network, AWS_ENDPOINT_URL and "
                                        f"the AWS credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID)") from exc
        if not found:
            raise VideoFailure("input", f"{path}: no such object, or it is empty; check the key (keys are "
                                        f"case-sensitive) and that your AWS credentials can read it")
    elif not os.path.isfile(path) or os.path.getsize(path) == 0:
        try:
            probe_video(path)  # raises with the message that names the problem and the fix
        except ProbeError as exc:
            raise VideoFailure("input", str(exc)) from exc


def _done_before(out, source: Source, run: RunInfo) -> bool:
    """Whether an earlier run completed this video under this config (a rerun skips it); raises
    :class:`DuplicateInput` for a copy of a video an earlier run curated under a path that still exists."""
    done = _recorded(out, source.video_id)
    if not done or done["status"] != "ok":
        return False
    if done["path"] != input_location(source.path) and storage.exists(from_stored(done["path"], done["path_bytes"])):
        raise DuplicateInput(done["path"])  # a moved file is not a copy: its row is taken over
    return done["config_hash"] == run.config_hash


def _probe(src: str, path: str, cfg, stage_s: dict) -> Probe:
    try:
        return _timed(stage_s, "probe", probe_video, src, cfg.probe_timeout_s)
    except ProbeError as exc:
        raise VideoFailure("probe", str(exc)).naming(src, path) from exc


def _provenance(src: str, cfg) -> dict | None:
    """The C2PA facts of the local file ``src`` when the c2pa guardrail is on (rushes.media.provenance)."""
    if "c2pa" not in cfg.guard.detectors:
        return None
    from rushes.media.provenance import ProvenanceUnavailable, read_c2pa

    try:
        return read_c2pa(src)
    except ProvenanceUnavailable as exc:  # e.g. a worker node without the guard extra
        raise VideoFailure("detect", str(exc)) from exc


def _spans(probe: Probe, cfg) -> tuple:
    """The job's time chunks: the whole video as one, unless it is longer than ``cfg.chunk_s``."""
    if not chunked(cfg, probe.duration_s):
        return (WHOLE,)
    return tuple(plan_chunks(probe.duration_s, cfg.chunk_s, warmup_s(cfg, _nominal_fps(probe))))


def _recorded(out, video_id: str) -> dict | None:
    """The ``path``, ``path_bytes``, ``status`` and ``config_hash`` an earlier run recorded for ``video_id``, or
    None."""
    part = part_location(out, "videos", f"part-{video_id}")
    if not storage.exists(part):
        return None
    try:
        done = read_part(part, "videos").select(["path", "path_bytes", "status", "config_hash"]).to_pylist()
    except ManifestError:
        return None
    return done[0] if done else None


def _nominal_fps(probe: Probe) -> float:
    # Frame-count rules use the nominal rate, as PySceneDetect does; some phones write a 90 kHz "rate".
    return probe.fps if 0 < probe.fps < 1000 else probe.avg_fps


def _consumers(probe: Probe, cfg, resumed: bool = False) -> dict:
    """The decode pass's frame consumers by name: ``cuts`` (the splitter), ``signature`` (near-duplicate
    search) and, with scores, ``signals``.

    A consumer that must survive time chunks (:mod:`rushes.curate.chunks`) has ``state(next_pts_s)``,
    ``export(start_s, end_s)`` and a ``merged(parts, pts_s)`` class method; ``resumed``: not the first chunk.
    """
    try:
        consumers = {"cuts": make_splitter(cfg.detector, _nominal_fps(probe), resolve_device(cfg.model_device)
                                           if cfg.detector.uses_transnet else "cpu", resumed)}
    except ShotModelError as exc:  # e.g. a worker node without the quality extra
        raise VideoFailure("detect", str(exc)) from exc
    consumers["signature"] = FrameSignature()  # for the near-duplicate search at the end of the run
    score_cfg = cfg.score_config()
    if score_cfg is not None:
        from rushes.curate.ocr import OcrUnavailable
        from rushes.curate.scores import FrameSignals

        try:
            consumers["signals"] = FrameSignals(score_cfg)
        except OcrUnavailable as exc:  # e.g. a worker node without the quality extra
            raise VideoFailure("detect", str(exc)) from exc
    if cfg.guard.frame_detectors:
        from rushes.curate.guard import GuardSignals, missing

        gaps = missing(cfg.guard)
        if gaps:  # e.g. a worker node without the guard extra
            raise VideoFailure("detect", gaps[0])
        consumers["guard"] = GuardSignals(cfg.guard)
    return consumers


# --- A job of one chunk: every step in one task ------------------------------------------------------------------


def curate_whole(job: VideoJob, out_dir, cfg, run: RunInfo, src: str | None = None,
                 started: float | None = None) -> VideoOutcome:
    """Curate ``job`` as one chunk in this task (a short video, or a longer one whose chunks did not join): one
    decode, its plan, its encode, then its rows. ``src``: a local copy of the input already open (else one is
    made here); ``started``: when the task began (the row's ``process_s``)."""
    started = time.perf_counter() if started is None else started
    job = job.whole()
    analysis = None
    with ExitStack() as stack:
        try:
            src = src or _local_copy(job.path, run, stack).path
            analysis = analyse_whole(job, src, cfg)
            plan = plan_video(job, analysis, out_dir, cfg, run)
        except VideoFailure as exc:
            stage_s = dict(job.stage_s, decode=analysis.seconds) if analysis else job.stage_s
            return fail_video(job, exc.naming(src, job.path), out_dir, run, time.perf_counter() - started,
                              analysis.facts if analysis else None, stage_s)
        encoded = [encode_group(plan, k, out_dir, cfg, run, src) for k in range(len(plan.groups))]
    return finish_video(plan, encoded, out_dir, cfg, run, time.perf_counter() - started)


def analyse_whole(job: VideoJob, src: str, cfg) -> VideoAnalysis:
    """The analysis of a job of one chunk: one decode pass over the local file ``src``. Unlike a chunk's, it
    stands whatever it meets: damaged regions are skipped (no clip spans one) and a stream that stops early
    keeps what decoded, with a warning; any detector works (TransNetV2 reads windows from the first frame)."""
    consumers = _consumers(job.probe, cfg)
    t0 = time.perf_counter()
    try:
        result = analyse_video(src, list(consumers.values()), cfg.analysis_long_side_px, cfg.decode_threads or 1)
    except DecodeError as exc:
        raise VideoFailure("decode", str(exc)) from exc
    seconds = time.perf_counter() - t0
    result = dataclasses.replace(result, warning=_renamed(result.warning, src, job.path))
    return VideoAnalysis(result, decode_facts(job, result), consumers["cuts"], consumers.get("signals"),
                         consumers["signature"], seconds, consumers.get("guard"))


def decode_facts(job: VideoJob, result: DecodeResult) -> DecodeFacts:
    """The videos row's decode facts: frames decoded, warnings, rotation, and VFR judged from the timing."""
    warnings = [w for w in (result.warning, _short_warning(input_location(job.path), job.probe, result)) if w]
    vfr = None
    deltas = [b - a for a, b in zip(result.pts_s[:-1], result.pts_s[1:])]
    if len(deltas) > 2:
        deltas.sort()
        lo, hi = deltas[len(deltas) // 20], deltas[-1 - len(deltas) // 20]
        vfr = bool(job.probe.vfr or hi > lo * 1.05)  # the decoded timing is the truth
    return DecodeFacts(result.num_frames, "; ".join(warnings) or None, result.rotation_deg, vfr)


def _short_warning(path: str, probe: Probe, result) -> str | None:
    """A warning when far less decoded than the container claims (a truncated copy, or a broken header)."""
    if probe.duration_s and result.end_s < 0.9 * probe.duration_s:
        return (f"{path}: decoded {result.num_frames} frames ({result.end_s:.2f} s) but the container claims "
                f"{probe.duration_s:.2f} s; the file is probably truncated (re-copy it) or its header is wrong; "
                f"clips cover the decoded part only")
    return None


# --- A job of several chunks: each analysed by its own task, then joined (see rushes.curate.chunks) -------------


def analyse_chunk_of(job: VideoJob, index: int, cfg, run: RunInfo, resume: dict | None = None) -> ChunkResult:
    """Decode chunk ``index`` of ``job`` with fresh consumers; never raises for a per-video problem (a
    chunk that cannot stand for its span says why in ``decode.problem``: the video is then redone whole).

    A remote input is copied to scratch by every chunk task that reads it (whole: ranged reads would save
    the transfer; a cluster reading a bucket pays the object size once per chunk). ``resume``: see
    :func:`rushes.curate.decode.analyse_chunk`."""
    t0 = time.perf_counter()
    span = job.spans[index]
    try:
        with storage.local_copy(job.path, run.scratch) as copy:
            consumers = _consumers(job.probe, cfg, resumed=index > 0)
            decode = analyse_chunk(copy.path, list(consumers.values()), span, cfg.analysis_long_side_px,
                                   cfg.decode_threads or 1, resume)
    except (VideoFailure, DecodeError, OSError) as exc:  # OSError: storage.ScratchError, a lost object
        return ChunkResult(ChunkDecode(span, problem=str(exc)), seconds=time.perf_counter() - t0)
    exports = {name: (type(c), c.export(span.start_s, span.end_s)) for name, c in consumers.items()}
    return ChunkResult(decode, exports, time.perf_counter() - t0)


def join_chunks(job: VideoJob, parts: list[ChunkResult], cfg, run: RunInfo) -> VideoAnalysis | None:
    """The analysis of ``job`` joined from its chunks, exactly as one decode would see it; None when the chunks
    do not join exactly (logged: redo the video as one chunk)."""
    parts = _joined(job, sorted(parts, key=lambda p: p.decode.span.index), cfg, run)
    if parts is None:
        return None
    result = merged_result([p.decode for p in parts])
    merged = {name: cls.merged([p.exports[name][1] for p in parts], result.pts_s)
              for name, (cls, _) in parts[0].exports.items()}
    return VideoAnalysis(result, decode_facts(job, result), merged["cuts"], merged.get("signals"), merged["signature"],
                         sum(p.seconds for p in parts), merged.get("guard"))


def reconcile_video(job: VideoJob, parts: list[ChunkResult], out_dir, cfg, run: RunInfo) -> ClipPlan | None:
    """The reconcile task: join the chunks of ``job`` and plan its clips; None when that fails (the driver then
    redoes the video as one chunk, which records a failure with its own message)."""
    analysis = join_chunks(job, parts, cfg, run)
    if analysis is None:
        return None
    try:
        return plan_video(job, analysis, out_dir, cfg, run)
    except VideoFailure:
        return None


def _joined(job: VideoJob, parts: list[ChunkResult], cfg, run: RunInfo) -> list[ChunkResult] | None:
    """``parts`` once they join exactly: a chunk whose detector state alone differs is decoded again with the
    previous chunk's detector restored (sequential, so logged); None when they cannot join (logged)."""
    repaired: set[int] = set()
    while (found := find_break([p.decode for p in parts])) is not None:
        k, prev = found.position, parts[found.position - 1].decode
        if not found.consumers or k in repaired or any(i not in prev.snapshots for i in found.consumers):
            log.warning("%s: analysing it in one task instead of %d chunks: %s", job.path, len(parts), found.reason)
            return None
        log.info("%s: %s; decoding chunk %d again from the previous chunk's detector", job.path, found.reason, k)
        repaired.add(k)
        parts[k] = analyse_chunk_of(job, k, cfg, run, {i: prev.snapshots[i] for i in found.consumers})
    return parts


# --- Every job: plan, encode, finish ----------------------------------------------------------------------------


def plan_video(job: VideoJob, analysis: VideoAnalysis, out_dir, cfg, run: RunInfo) -> ClipPlan:
    """Clip rows from the analysis's cuts and scores, and their encoding split into one group per chunk;
    raises :class:`VideoFailure` (``detect``) when the cuts cannot be planned."""
    result = analysis.result
    try:
        # Clips never span a damaged region: decoding resumed at before_index, after a gap in the frames.
        spans = plan_clips(analysis.cuts.cut_frames(result.pts_s), result.pts_s, result.end_s, cfg,
                           breaks=[g.before_index for g in result.gaps if g.before_index])
    except (ValueError, ArithmeticError) as exc:
        raise VideoFailure("detect", f"scene detection on {input_location(job.path)} failed: {exc}; try "
                                     f"--detector content") from exc
    clip_rows = _clip_rows(job.video_id, spans, analysis.signals, job.probe, cfg, run, analysis.signature)
    for row in clip_rows:  # guardrails: frame samples per clip, and the source file's C2PA facts
        if analysis.guard is not None:
            row.update(analysis.guard.clip_scores(row["start_frame"], row["end_frame"]))
        row.update(job.provenance or {})
    groups: tuple = ()
    if cfg.encode.enabled:
        # Clips rejected by the split rules (too short) are not encoded; score rejects are, so a looser
        # re-filter can bring them back without a re-encode.
        jobs = [EncodeJob(r["clip_id"], r["start_s"], r["end_s"], _blur(r, analysis.guard, cfg)) for r in clip_rows
                if r["keep"]]
        groups = tuple(tuple(g) for g in encode_groups(jobs, len(job.spans)))
        if not storage.is_remote(out_dir):
            _clear_media_temp(Path(out_dir), job.video_id)
    return ClipPlan(job, analysis.facts, tuple(clip_rows), groups, dict(job.stage_s, decode=analysis.seconds))


def _blur(row: dict, guard, cfg) -> tuple:
    """The face regions ``--blur-faces`` blurs in a clip (none without it)."""
    if not cfg.encode.blur_faces or guard is None:
        return ()
    return blur_spans(guard.face_boxes(row["start_frame"], row["end_frame"]), row["start_s"], row["end_s"],
                      1.0 / cfg.guard.sample_fps)


def encode_groups(jobs: list[EncodeJob], n: int) -> list[list[EncodeJob]]:
    """``jobs`` (in time order) split into at most ``n`` runs of neighbouring clips with about equal footage."""
    total = sum(j.end_s - j.start_s for j in jobs)
    groups: list[list[EncodeJob]] = [[]]
    acc = 0.0
    for j in jobs:
        if groups[-1] and acc >= total * len(groups) / n and len(groups) < n:
            groups.append([])
        groups[-1].append(j)
        acc += j.end_s - j.start_s
    return [g for g in groups if g]


def encode_group(plan: ClipPlan, index: int, out_dir, cfg, run: RunInfo, src: str | None = None) -> EncodeResult:
    """Encode group ``index`` of ``plan`` into ``OUT/media/<video_id>/`` (through a local staging folder and an
    upload when OUT is a bucket); an ffmpeg failure is returned, not raised. ``src``: a local copy of the input
    already open (else one is made here)."""
    t0 = time.perf_counter()
    job, out = plan.job, _run_location(out_dir)
    try:
        with ExitStack() as stack:
            src = src or stack.enter_context(storage.local_copy(job.path, run.scratch)).path
            # A bucket has no local folder to encode into: encode into a staging folder, then upload.
            local_out = stack.enter_context(storage.staging_dir(run.scratch)) if storage.is_remote(out) else out
            done, _ = encode_clips(src, plan.groups[index], local_out / "media" / job.video_id, job.probe.width_px,
                                   job.probe.height_px, cfg.encode, job.probe.start_s - job.probe.format_start_s)
            rel = {cid: p.relative_to(local_out).as_posix() for cid, p in done.items()}
            if local_out is not out:
                _upload_media(local_out, out, rel.values())
    except EncodeError as exc:
        return EncodeResult(error=_renamed(str(exc), src, job.path), seconds=time.perf_counter() - t0)
    except OSError as exc:
        return EncodeResult(error=f"cannot read {job.path} to encode its clips: {exc}",
                            seconds=time.perf_counter() - t0)
    return EncodeResult(rel, time.perf_counter() - t0)


def finish_video(plan: ClipPlan, encoded: list[EncodeResult], out_dir, cfg, run: RunInfo,
                 process_s: float | None = None) -> VideoOutcome:
    """Write a planned video's clips part, then (last) its videos row; an encode error becomes the video's error
    row. ``process_s``: the task's wall time when one task did the video (default: its tasks' seconds summed)."""
    job = plan.job
    stage_s = dict(plan.stage_s, encode=sum(e.seconds for e in encoded))
    process_s = sum(stage_s.values()) if process_s is None else process_s
    errors = [e.error for e in encoded if e.error]
    if errors:
        return fail_video(job, VideoFailure("encode", errors[0]), out_dir, run, process_s, plan.facts, stage_s)
    done = {cid: path for e in encoded for cid, path in e.done.items()}
    clip_rows = [{**r, "clip_path": done[r["clip_id"]]} if r["clip_id"] in done else r for r in plan.clip_rows]
    _publish_clips(_run_location(out_dir), job.video_id, clip_rows, cfg)
    row = _videos_row(job.path, job.source, job.probe, plan.facts, num_clips=len(clip_rows), process_s=process_s)
    return _record(out_dir, VideoOutcome(job.path, job.video_id, "ok", stage_s=stage_s), row, run)


def fail_video(job: VideoJob, failure: VideoFailure, out_dir, run: RunInfo, process_s: float,
               facts: DecodeFacts | None = None, stage_s: dict | None = None) -> VideoOutcome:
    """Record ``job`` as failed: its error row (with what is known of it), and none of its clips."""
    outcome = VideoOutcome(job.path, job.video_id, "error", failure.stage, str(failure),
                           dict(job.stage_s if stage_s is None else stage_s))
    return _failed(out_dir, outcome, _videos_row(job.path, job.source, job.probe, facts, process_s=process_s), run)


def _clip_rows(video_id: str, spans: list[ClipSpan], signals, probe: Probe, cfg, run: RunInfo,
               signature: FrameSignature | None = None) -> list[dict]:
    params = detector_params(cfg)
    if cfg.encode.enabled:
        width, height = output_size(probe.width_px, probe.height_px, cfg.encode.max_short_side_px)
    else:
        width, height = probe.width_px, probe.height_px
    detector = DETECTOR_NAMES[cfg.detector.name]
    rows = []
    for s in spans:
        row = {
            "clip_id": make_id("clip", video_id, s.start_frame, s.end_frame, params),
            "video_id": video_id, "kind": "video", "scene_index": s.scene_index, "window_index": s.window_index,
            "start_s": s.start_s, "end_s": s.end_s, "duration_s": s.duration_s,
            "start_frame": s.start_frame, "end_frame": s.end_frame, "num_frames": s.num_frames,
            "width_px": width, "height_px": height,
            "fps": s.num_frames / s.duration_s if s.duration_s > 0 else None,
            "detector": detector, "detector_params": params,
            "keep": s.keep, "reject_reason": s.reject_reason,
            "config_hash": run.config_hash, "tool_versions": run.tool_versions, "created_at": now_utc(),
        }
        if signals is not None:
            row.update(signals.clip_scores(s.start_frame, s.end_frame, width, height))
        if signature is not None:  # compared by the near-duplicate search at the end of the run (rushes.curate.dedup)
            row["signature"] = signature.clip_signature(s.start_frame, s.end_frame)
        rows.append(row)
    return rows


def _clear_media_temp(out: Path, video_id: str) -> None:
    """Leftovers of a killed run are temporary names nobody references: clear them (before any encode of
    this video starts: encode tasks of one video run side by side in the same folder)."""
    media_dir = out / "media" / video_id
    if media_dir.is_dir():
        for stale in media_dir.glob("_tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)


def _publish_clips(out, video_id: str, clip_rows: list[dict], cfg) -> None:
    """Filter, then write the clips part (after their media files are complete); prune older media."""
    # Thresholds are applied before the part becomes visible, so a run killed before its final filter pass
    # never shows clips that the filter would reject; the pass at the end of the run then rewrites nothing.
    filtered = RunFilter.for_curate(cfg).with_blocklist(out).apply(conform(clip_rows, "clips"))
    write_part(out, "clips", filtered, part_name=f"part-{video_id}")
    _prune_media(out, video_id, {r["clip_path"] for r in clip_rows if r.get("clip_path")})


def _upload_media(local_out: Path, out: str, clip_paths: Iterable[str]) -> None:
    for rel in clip_paths:
        storage.copy_file(local_out / rel, storage.join(out, rel))


def _prune_media(out, video_id: str, referenced: set[str]) -> None:
    """Delete clip files of an earlier config of this video (only after the new clips part is visible)."""
    for stale in storage.list_files(storage.join(out, "media", video_id), recursive=False):
        name = storage.name(stale)
        if name.endswith(".mp4") and f"media/{video_id}/{name}" not in referenced:
            storage.delete(stale)


# --- Videos rows ------------------------------------------------------------------------------------------------


def _videos_row(path: str, source: Source | None = None, probe: Probe | None = None,
                facts: DecodeFacts | None = None, **columns) -> dict:
    """A videos row with what is known of the input: hashed, probed, decoded, and ``columns``."""
    row: dict = {"path": input_location(path), "kind": "image" if is_image_name(path) else "video",
                 "path_bytes": None if storage.is_uri(path) else exact_bytes(os.path.abspath(path))}
    if source is not None:
        row.update(size_bytes=source.size_bytes, content_hash=source.content_hash)
    if probe is not None:
        row.update(probe.row())
    if facts is not None:
        row.update(facts.row())
    return {**row, **columns}


def _failed(out_dir, outcome: VideoOutcome, row: dict, run: RunInfo) -> VideoOutcome:
    log.warning("%s: %s failed: %s", outcome.path, outcome.error_stage, outcome.error_message)
    # A failed video has no clips: drop what an earlier run (another config) left for it.
    delete_part(out_dir, "clips", f"part-{outcome.video_id}")
    _prune_media(_run_location(out_dir), outcome.video_id, set())
    return _record(out_dir, outcome, row, run)


def _record(out_dir, outcome: VideoOutcome, row: dict, run: RunInfo) -> VideoOutcome:
    """The one writer of videos rows: outcome, provenance and time added; one part per video id. The last write
    for a video: its row marks it complete."""
    row = {**row, "video_id": outcome.video_id, "status": outcome.status, "error_stage": outcome.error_stage,
           "error_message": outcome.error_message, "config_hash": run.config_hash,
           "tool_versions": run.tool_versions, "created_at": now_utc()}
    write_part(out_dir, "videos", [row], part_name=f"part-{outcome.video_id}")
    if outcome.video_id != path_video_id(outcome.path):
        # An earlier run may have recorded this path as failed before it could be hashed: supersede it.
        delete_part(out_dir, "videos", f"part-{path_video_id(outcome.path)}")
    return dataclasses.replace(outcome, duration_s=row.get("duration_s"))


def record_error(path: str, out_dir: str | os.PathLike, run: RunInfo, stage: str, message: str) -> VideoOutcome:
    """Record an input that failed outside its task (a dead worker, a duplicate) as an error row."""
    return _record(out_dir, VideoOutcome(path, path_video_id(path), "error", stage, message), _videos_row(path), run)


def record_crash(path: str, out_dir: str | os.PathLike, run: RunInfo, exc: BaseException) -> VideoOutcome:
    """Record a video whose worker process died (out of memory, crash in a native library) as an error."""
    return record_error(path, out_dir, run, "worker",
                        f"the worker processing {path} died ({type(exc).__name__}: {str(exc)[:300]}); "
                        f"give tasks more memory (--memory-per-task-mb) or check the file with ffmpeg -i")


def find_duplicates(paths: list[str]) -> dict[str, str]:
    """``{duplicate: first path with the same bytes}``, in input order.

    Only files whose size collides with another's are hashed, so distinct footage costs one stat each.
    Two copies would share a ``video_id`` (it hashes the content): one row would hide the other, and their
    tasks would race on the same media folder.
    """
    by_size: dict[int, list[str]] = {}
    for p in paths:
        try:
            by_size.setdefault(storage.size(p), []).append(p)
        except (OSError, ValueError):
            continue  # missing or unreadable (or an unsupported URL): the task records it
    dups: dict[str, str] = {}
    for size, group in by_size.items():
        if len(group) < 2 or size == 0:
            continue
        first: dict[str, str] = {}
        for p in group:
            try:
                digest = content_hash(p)
            except OSError:
                continue
            if digest in first:
                dups[p] = first[digest]
            else:
                first[digest] = p
    return dups


def record_duplicate(path: str, original: str, out_dir: str | os.PathLike, run: RunInfo) -> VideoOutcome:
    """Record an input whose bytes equal an input seen first (``original``, earlier in this run's inputs or curated
    by an earlier run) as a ``duplicate`` row: not a failure, and not curated (its clips are the original's)."""
    message = duplicate_message(path, original)
    row = _videos_row(path, warning=message)
    return _record(out_dir, VideoOutcome(path, path_video_id(path), "duplicate", None, None), row, run)


def duplicate_message(path: str, original: str) -> str:
    """What a duplicate's row and the run's log say, the right way round: the first seen is the original."""
    return (f"duplicate: {display(path)} is a byte-identical copy of {display(original)}, the first seen, which is "
            f"curated as the original; this copy is not curated again")


def outcome_dict(outcome: VideoOutcome) -> Mapping:
    """Outcome as a plain dict (what a Ray task returns)."""
    return dataclasses.asdict(outcome)
