"""One video -> manifest rows and clip files. The thin layer between a Ray task and the pure modules.

``process_video(path, out_dir, cfg, run)`` probes, hashes, decodes once (cuts + scores), plans the
clips, encodes them, then writes the video's clips part and, last, its videos part: the videos row is
the completion marker a rerun looks for. Known per-video failures (missing or empty file, not a video,
undecodable stream, ffmpeg failure) become a videos row with ``status='error'``, the stage that
failed and a message naming the file and the fix; anything else is a bug and raises.

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
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from rushes import storage

from rushes.curate.chunks import chunked, find_break, merged_result, plan_chunks, warmup_s
from rushes.curate.decode import ChunkDecode, ChunkSpan, analyse_chunk, analyse_video
from rushes.curate.encode import EncodeError, EncodeJob, encode_clips, output_size
from rushes.curate.probe import Probe, ProbeError, probe_video
from rushes.curate.shots import ShotModelError, resolve_device
from rushes.curate.signature import FrameSignature
from rushes.curate.split import DETECTOR_NAMES, ClipSpan, detector_params, make_splitter, plan_clips
from rushes.manifests import (ManifestError, conform, content_hash, content_hasher, delete_part, make_id, now_utc,
                       part_location, read_part, write_part)
from rushes.media.frames import DecodeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunInfo:
    """Per-run facts every row records, and where remote inputs are copied to be read."""

    config_hash: str
    tool_versions: str  # JSON
    scratch: storage.Scratch | None = None  # None: the default scratch folder and cap


@dataclass
class VideoOutcome:
    """What happened to one input, for the run summary."""

    path: str
    video_id: str
    status: str  # ok, error, skipped
    error_stage: str | None = None
    error_message: str | None = None
    stage_s: dict = field(default_factory=dict)  # probe, hash, decode, encode seconds
    duration_s: float | None = None  # probed length of the footage (live progress counts footage hours)


class VideoFailure(Exception):
    """A known per-video failure: recorded as a row, never raised out of the adapter."""

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


def filter_overrides(cfg) -> dict | None:
    """Filter overrides a curate run applies: cuts-only runs have no scores, so none is judged missing."""
    return None if cfg.scores_preset else {"reject_missing": False}


class DuplicateInput(Exception):
    """The input's bytes are a video an earlier run curated under another path that still exists."""

    def __init__(self, original: str) -> None:
        super().__init__(original)
        self.original = original


def input_location(path: str) -> str:
    """How an input is recorded: an absolute local path, or the URI as given."""
    return path if storage.is_uri(path) else os.path.abspath(path)


def path_video_id(path: str) -> str:
    """Id of an input that could not be hashed (missing or unreadable): derived from its path."""
    return make_id("video-path", input_location(path))


def _run_location(out_dir):
    return out_dir if storage.is_remote(out_dir) else Path(out_dir)


@dataclass(frozen=True)
class VideoJob:
    """A long video whose analysis and encoding go to several tasks (:mod:`rushes.curate.chunks`), as
    :func:`process_video` leaves it after hashing and probing: :func:`analyse_chunk_of` each span,
    :func:`reconcile_video`, :func:`encode_group` each group, then :func:`finish_video` writes its rows."""

    path: str  # the input as given (a local path or a URI)
    video_id: str
    probe: Probe
    row: dict  # its videos row so far (probe facts, size, hash)
    stage_s: dict  # probe and hash seconds so far
    spans: tuple[ChunkSpan, ...]


def process_video(path: str, out_dir: str | os.PathLike, cfg, run: RunInfo) -> VideoOutcome | VideoJob:
    """Curate one video into ``out_dir``; returns an outcome, having written a videos row, or, for a video
    longer than ``cfg.chunk_s``, a :class:`VideoJob` for the chunked path (nothing written yet)."""
    t0 = time.perf_counter()
    outcome = VideoOutcome(path, path_video_id(path), "ok")
    row: dict = {"path": input_location(path)}
    try:
        spans = _run_stages(path, _run_location(out_dir), cfg, run, outcome, row)
        if spans:
            return VideoJob(path, outcome.video_id, row.pop("_probe"), row, dict(outcome.stage_s), tuple(spans))
    except DuplicateInput as exc:
        return record_duplicate(path, exc.original, out_dir, run)
    except VideoFailure as exc:
        _fail(out_dir, outcome, exc)
    if outcome.status == "skipped":
        return outcome
    row.update(process_s=time.perf_counter() - t0)
    _write_row(out_dir, outcome, row, run)  # last write: the videos row marks the video complete
    if outcome.video_id != path_video_id(path):
        # An earlier run may have recorded this path as failed before it could be hashed: supersede it.
        delete_part(out_dir, "videos", f"part-{path_video_id(path)}")
    return outcome


def _fail(out_dir, outcome: VideoOutcome, exc: VideoFailure) -> None:
    outcome.status, outcome.error_stage, outcome.error_message = "error", exc.stage, str(exc)
    log.warning("%s: %s failed: %s", outcome.path, exc.stage, exc)
    # A failed video has no clips: drop what an earlier run (another config) left for it.
    delete_part(out_dir, "clips", f"part-{outcome.video_id}")
    _prune_media(_run_location(out_dir), outcome.video_id, set())


def _timed(outcome: VideoOutcome, stage: str, fn, *args, **kwargs):
    t = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        outcome.stage_s[stage] = outcome.stage_s.get(stage, 0.0) + time.perf_counter() - t


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


def _run_stages(path: str, out, cfg, run: RunInfo, outcome: VideoOutcome, row: dict) -> list | None:
    """Hash, skip or probe and curate; returns the chunk spans when the video goes the chunked way."""
    _check_input(path)
    with ExitStack() as stack:
        try:
            # Hashing streams the bytes once; for a remote input the same pass fills the scratch copy.
            copy = _timed(outcome, "hash", stack.enter_context,
                          storage.local_copy(path, run.scratch, hasher=content_hasher()))
        except storage.ScratchError as exc:
            raise VideoFailure("input", str(exc)) from exc
        except OSError as exc:
            raise VideoFailure("hash", f"cannot read {path}: {exc}; check the file and its permissions") from exc
        row["size_bytes"] = copy.size_bytes
        outcome.video_id = make_id("video", copy.digest)
        row["content_hash"] = copy.digest
        done = _recorded(out, outcome.video_id)
        if done and done["status"] == "ok" and done["path"] != input_location(path) and storage.exists(done["path"]):
            raise DuplicateInput(done["path"])  # a copy of a video an earlier run curated (a moved file is not)
        if done and done["status"] == "ok" and done["config_hash"] == run.config_hash:
            outcome.status = "skipped"
            return None
        try:
            return _analyse(copy.path, out, cfg, run, outcome, row, stack)
        except VideoFailure as exc:
            if copy.workdir is None:
                raise
            raise VideoFailure(exc.stage, str(exc).replace(copy.path, path)) from exc  # name the object


def _analyse(path: str, out, cfg, run: RunInfo, outcome: VideoOutcome, row: dict, stack: ExitStack) -> list | None:
    """Probe, decode, plan, encode and write the clips part of one readable local file; a video longer
    than ``cfg.chunk_s`` stops after the probe and returns its chunk spans (with the probe in ``row``)."""
    try:
        probe = _timed(outcome, "probe", probe_video, path, cfg.probe_timeout_s)
    except ProbeError as exc:
        raise VideoFailure("probe", str(exc)) from exc
    row.update(probe.row())
    if chunked(cfg, probe.duration_s):
        row["_probe"] = probe
        return plan_chunks(probe.duration_s, cfg.chunk_s, warmup_s(cfg, _nominal_fps(probe)))
    spans, signals, signature = _detect(path, probe, cfg, outcome, row)
    clip_rows = _clip_rows(outcome.video_id, spans, signals, probe, cfg, run, signature)
    if cfg.encode.enabled:
        # A bucket has no local folder to encode into: encode into a staging folder, then upload.
        local_out = stack.enter_context(storage.staging_dir(run.scratch)) if storage.is_remote(out) else out
        _clear_media_temp(local_out, outcome.video_id)
        _encode(path, local_out, outcome, probe, clip_rows, cfg)
        if local_out is not out:
            _upload_media(local_out, out, clip_rows)
    _publish_clips(out, outcome.video_id, clip_rows, cfg)
    row["num_clips"] = len(clip_rows)
    return None


def _publish_clips(out, video_id: str, clip_rows: list[dict], cfg) -> None:
    """Filter, then write the clips part (after their media files are complete); prune older media."""
    # Thresholds are applied before the part becomes visible, so a run killed before its final filter pass
    # never shows clips that the filter would reject; the pass at the end of the run then rewrites nothing.
    from rushes.curate.filter import apply_filter, resolve_config

    filtered = apply_filter(conform(clip_rows, "clips"), resolve_config(cfg.filter_preset, filter_overrides(cfg)),
                            preset=cfg.filter_preset)
    write_part(out, "clips", filtered, part_name=f"part-{video_id}")
    _prune_media(out, video_id, {r["clip_path"] for r in clip_rows if r.get("clip_path")})


def _upload_media(local_out: Path, out: str, clip_rows: list[dict]) -> None:
    for r in clip_rows:
        if r.get("clip_path"):
            storage.copy_file(local_out / r["clip_path"], storage.join(out, r["clip_path"]))


def _recorded(out, video_id: str) -> dict | None:
    """The ``path``, ``status`` and ``config_hash`` an earlier run recorded for ``video_id``, or None."""
    part = part_location(out, "videos", f"part-{video_id}")
    if not storage.exists(part):
        return None
    try:
        done = read_part(part, "videos", columns=["path", "status", "config_hash"]).to_pylist()
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
    return consumers


def _detect(path: str, probe: Probe, cfg, outcome: VideoOutcome, row: dict):
    consumers = _consumers(probe, cfg)
    threads = cfg.decode_threads or 1  # the pipeline sets it from the CPUs given to the task
    try:
        result = _timed(outcome, "decode", analyse_video, path, list(consumers.values()), cfg.analysis_long_side_px,
                        threads)
    except DecodeError as exc:
        raise VideoFailure("decode", str(exc)) from exc
    return _plan(path, probe, result, consumers["cuts"], cfg, row), consumers.get("signals"), consumers["signature"]


def _plan(path: str, probe: Probe, result, splitter, cfg, row: dict) -> list[ClipSpan]:
    """Clip spans from the decode pass's result and cuts; records the decode facts in the videos row."""
    warnings = [w for w in (result.warning, _short_warning(path, probe, result)) if w]
    row.update(num_frames_decoded=result.num_frames, warning="; ".join(warnings) or None,
               rotation_deg=result.rotation_deg)
    deltas = [b - a for a, b in zip(result.pts_s[:-1], result.pts_s[1:])]
    if len(deltas) > 2:
        deltas.sort()
        lo, hi = deltas[len(deltas) // 20], deltas[-1 - len(deltas) // 20]
        row["vfr"] = bool(probe.vfr or hi > lo * 1.05)  # the decoded timing is the truth
    try:
        # Clips never span a damaged region: decoding resumed at before_index, after a gap in the frames.
        return plan_clips(splitter.cut_frames(result.pts_s), result.pts_s, result.end_s, cfg,
                          breaks=[g.before_index for g in result.gaps if g.before_index])
    except (ValueError, ArithmeticError) as exc:
        raise VideoFailure("detect", f"scene detection on {path} failed: {exc}; try --detector content") from exc


def _short_warning(path: str, probe: Probe, result) -> str | None:
    """A warning when far less decoded than the container claims (a truncated copy, or a broken header)."""
    if probe.duration_s and result.end_s < 0.9 * probe.duration_s:
        return (f"{path}: decoded {result.num_frames} frames ({result.end_s:.2f} s) but the container claims "
                f"{probe.duration_s:.2f} s; the file is probably truncated (re-copy it) or its header is wrong; "
                f"clips cover the decoded part only")
    return None


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
            "video_id": video_id, "scene_index": s.scene_index, "window_index": s.window_index,
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


def _encode(path: str, out: Path, outcome: VideoOutcome, probe: Probe, clip_rows: list[dict], cfg) -> None:
    media_dir = out / "media" / outcome.video_id
    # Clips rejected by the split rules (too short) are not encoded; score rejects are, so a looser
    # re-filter can bring them back without a re-encode.
    jobs = [EncodeJob(r["clip_id"], r["start_s"], r["end_s"]) for r in clip_rows if r["keep"]]
    try:
        done, _ = _timed(outcome, "encode", encode_clips, path, jobs, media_dir, probe.width_px, probe.height_px,
                         cfg.encode, probe.start_s - probe.format_start_s)
    except EncodeError as exc:
        raise VideoFailure("encode", str(exc)) from exc
    for r in clip_rows:
        if r["clip_id"] in done:
            r["clip_path"] = done[r["clip_id"]].relative_to(out).as_posix()


def _prune_media(out, video_id: str, referenced: set[str]) -> None:
    """Delete clip files of an earlier config of this video (only after the new clips part is visible)."""
    for stale in storage.list_files(storage.join(out, "media", video_id), recursive=False):
        name = storage.name(stale)
        if name.endswith(".mp4") and f"media/{video_id}/{name}" not in referenced:
            storage.delete(stale)


def _write_row(out_dir: str | os.PathLike, outcome: VideoOutcome, row: dict, run: RunInfo) -> None:
    """The one writer of videos rows: outcome, provenance and time added; one part per video id."""
    row.update(video_id=outcome.video_id, status=outcome.status, error_stage=outcome.error_stage,
               error_message=outcome.error_message, config_hash=run.config_hash, tool_versions=run.tool_versions,
               created_at=now_utc())
    outcome.duration_s = row.get("duration_s")
    write_part(out_dir, "videos", [row], part_name=f"part-{outcome.video_id}")


def record_error(path: str, out_dir: str | os.PathLike, run: RunInfo, stage: str, message: str) -> VideoOutcome:
    """Record an input that failed outside its task (a dead worker, a duplicate) as an error row."""
    outcome = VideoOutcome(path, path_video_id(path), "error", stage, message)
    _write_row(out_dir, outcome, {"path": input_location(path)}, run)
    return outcome


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
    """Record an input whose bytes equal an earlier input's as an error row (its clips are the original's)."""
    return record_error(path, out_dir, run, "input",
                        f"{path} has the same content as {original}, which is curated instead; remove the "
                        f"copy from the input (its clips would duplicate the original's)")


def outcome_dict(outcome: VideoOutcome) -> Mapping:
    """Outcome as a plain dict (what a Ray task returns)."""
    return dataclasses.asdict(outcome)


# --- Long videos: time chunks and encode groups in separate tasks (see rushes.curate.chunks) --------------------


@dataclass
class ChunkPart:
    """One chunk's analysis: what its decode saw and each consumer's export (``{name: (class, export)}``)."""

    decode: ChunkDecode
    exports: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class ClipPlan:
    """A reconciled long video: its clip rows, the encode jobs per task, and its videos row so far."""

    job: VideoJob
    clip_rows: list[dict]
    groups: list[list[EncodeJob]]
    row: dict
    stage_s: dict


@dataclass
class EncodePart:
    """One encode task's clip files (``{clip_id: path relative to OUT}``), or its error."""

    done: dict = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


def analyse_chunk_of(job: VideoJob, index: int, cfg, run: RunInfo, resume: dict | None = None) -> ChunkPart:
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
        return ChunkPart(ChunkDecode(span, problem=str(exc)), seconds=time.perf_counter() - t0)
    exports = {name: (type(c), c.export(span.start_s, span.end_s)) for name, c in consumers.items()}
    return ChunkPart(decode, exports, time.perf_counter() - t0)


def reconcile_video(job: VideoJob, parts: list[ChunkPart], out_dir, cfg, run: RunInfo) -> ClipPlan | None:
    """Join the chunks of ``job`` into its clip rows, exactly as one task would plan them, and split their
    encoding into groups; None when the chunks do not join exactly (logged: redo the video in one task)."""
    parts = _joined(job, sorted(parts, key=lambda p: p.decode.span.index), cfg, run)
    if parts is None:
        return None
    result = merged_result([p.decode for p in parts])
    merged = {name: cls.merged([p.exports[name][1] for p in parts], result.pts_s)
              for name, (cls, _) in parts[0].exports.items()}
    row = dict(job.row)
    try:
        spans = _plan(job.path, job.probe, result, merged["cuts"], cfg, row)
    except VideoFailure:
        return None  # the one-task run records the failure with its own message
    clip_rows = _clip_rows(job.video_id, spans, merged.get("signals"), job.probe, cfg, run, merged.get("signature"))
    stage_s = dict(job.stage_s, decode=sum(p.seconds for p in parts))
    groups: list[list[EncodeJob]] = []
    if cfg.encode.enabled:
        jobs = [EncodeJob(r["clip_id"], r["start_s"], r["end_s"]) for r in clip_rows if r["keep"]]
        groups = encode_groups(jobs, len(parts))
        if not storage.is_remote(out_dir):
            _clear_media_temp(Path(out_dir), job.video_id)
    return ClipPlan(job, clip_rows, groups, row, stage_s)


def _joined(job: VideoJob, parts: list[ChunkPart], cfg, run: RunInfo) -> list[ChunkPart] | None:
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


def encode_group(job: VideoJob, jobs: list[EncodeJob], out_dir, cfg, run: RunInfo) -> EncodePart:
    """Encode one group of a long video's clips into ``OUT/media/<video_id>/`` (through a local staging
    folder and an upload when OUT is a bucket); an ffmpeg failure is returned, not raised."""
    t0 = time.perf_counter()
    out = _run_location(out_dir)
    try:
        with ExitStack() as stack:
            src = stack.enter_context(storage.local_copy(job.path, run.scratch)).path
            local_out = stack.enter_context(storage.staging_dir(run.scratch)) if storage.is_remote(out) else out
            done, _ = encode_clips(src, jobs, local_out / "media" / job.video_id, job.probe.width_px,
                                   job.probe.height_px, cfg.encode, job.probe.start_s - job.probe.format_start_s)
            rel = {cid: p.relative_to(local_out).as_posix() for cid, p in done.items()}
            if local_out is not out:
                _upload_media(local_out, out, [{"clip_path": p} for p in rel.values()])
    except EncodeError as exc:
        return EncodePart(error=str(exc).replace(src, job.path), seconds=time.perf_counter() - t0)
    except OSError as exc:
        return EncodePart(error=f"cannot read {job.path} to encode its clips: {exc}", seconds=time.perf_counter() - t0)
    return EncodePart(rel, time.perf_counter() - t0)


def finish_video(plan: ClipPlan, encoded: list[EncodePart], out_dir, cfg, run: RunInfo) -> VideoOutcome:
    """Write a reconciled long video's clips part, then (last) its videos row; an encode error becomes the
    video's error row."""
    job = plan.job
    outcome = VideoOutcome(job.path, job.video_id, "ok", stage_s=dict(plan.stage_s))
    outcome.stage_s["encode"] = sum(e.seconds for e in encoded)
    row = dict(plan.row)
    errors = [e.error for e in encoded if e.error]
    if errors:
        _fail(out_dir, outcome, VideoFailure("encode", errors[0]))
    else:
        done = {cid: path for e in encoded for cid, path in e.done.items()}
        for r in plan.clip_rows:
            if r["clip_id"] in done:
                r["clip_path"] = done[r["clip_id"]]
        _publish_clips(_run_location(out_dir), job.video_id, plan.clip_rows, cfg)
        row["num_clips"] = len(plan.clip_rows)
    row["process_s"] = sum(outcome.stage_s.values())  # task seconds: the work ran in several tasks
    _write_row(out_dir, outcome, row, run)  # last write: the videos row marks the video complete
    if outcome.video_id != path_video_id(job.path):
        delete_part(out_dir, "videos", f"part-{path_video_id(job.path)}")
    return outcome
