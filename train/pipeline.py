"""Ray wiring of the trainer (the only module in train/ importing ray): ``rushes encode`` on Ray Data, and
``rushes train --workers N`` on Ray Train.

kept, captioned clips -> ``map_batches(decode_batch)`` CPU tasks -> ``map_batches(EncodeActor)`` actor pool
(encoders loaded once per actor; ``concurrency`` actors with ``num_gpus`` each) -> shards written by the driver
(``train/shards.py``, atomic). Ray's streaming executor decodes the next clips while the actors encode.

Usage::

    from rushes.train.config import preset
    from rushes.train.encode import EncodeConfig
    from rushes.train.pipeline import run_encode
    summary = run_encode("OUT", preset("tiny").with_overrides(data={"text_encoder": "t5"}), EncodeConfig())
    result = run_train_workers("OUT", "runs/x", preset("tiny"), workers=2)   # TrainResult of worker 0

Training: :func:`run_train_workers` starts ``workers`` Ray Train workers (``TorchTrainer``: it sets up the
process group, gloo on CPU and NCCL on GPU) that each run ``rushes.train.loop.train`` with their rank; the loop
wraps the model in DDP (or shards it with FSDP2, ``parallel="fsdp"``) and takes its share of every step's
global pack list. Worker 0 writes the run directory, so on a cluster RUN_DIR (and OUT) must be storage every
node sees: a bucket (each worker then trains in a local working copy: train/rundir.py) or a shared folder.
"""

from __future__ import annotations

import json
import contextlib
import logging
import os
import threading
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import ray

from rushes import storage
from rushes.cluster import connect, require_resources
from rushes.manifests import store
from rushes.manifests.clips import captioned_clips
from rushes.manifests.lock import writer_lock
from rushes.train import rundir, shards
from rushes.train.config import RunConfig
from rushes.train.loop import TrainResult
from rushes.train.plan import out_dirs, with_text_budget
from rushes.train.parallel import check_parallel
from rushes.progress import CountProgress, LogFollower, StepProgress
from rushes.train.selection import run_name
from rushes.train.encode import EncodeActor, EncodeConfig, EncodePlan, decode_batch, plan_encode, probe_encoders

log = logging.getLogger(__name__)

DECODE_BASE_MEMORY = 512 << 20  # a decoder, PyAV, pyarrow and torch in one worker (measured ~520 MiB)


def run_encode(out: str | os.PathLike, cfg: RunConfig, enc: EncodeConfig, limit: int | None = None,
               address: str | None = None, dry_run: bool = False, scratch: storage.Scratch | None = None) -> dict:
    """Encode the kept, captioned clips of ``out`` into ``OUT/encodings/<key>/``; returns the summary (also
    ``summary.json["encode"]``). Reruns skip clips encoded ok with the same caption and retry failed ones.
    Clips in a bucket are decoded from bounded copies in ``scratch`` (default: ``storage.Scratch()``)."""
    patch = cfg.model.patch_size
    captioned_clips(out, cfg.data.captioner, cfg.data.prompt_version,  # a damaged manifest fails first, naming it
                    include_flagged=cfg.data.include_flagged_captions, level=cfg.data.caption_level)
    cfg = with_text_budget(cfg)  # the caption token budget is part of the key: decided before it
    inputs = shards.key_inputs(cfg.data, patch)
    folder = shards.key_dir(out, inputs)
    plan = plan_encode(out, cfg.data, folder, limit)
    if dry_run or (plan.tasks.num_rows == 0 and shards.find_null_caption(folder) is not None):
        return {**_head(folder, plan), "dry_run": dry_run, "encoded": 0}
    with writer_lock(out, "rushes encode"):  # a second writer on this OUT is refused at once, naming this one
        return _encode_locked(out, cfg, enc, limit, address, scratch)


def _encode_locked(out, cfg: RunConfig, enc: EncodeConfig, limit: int | None, address: str | None,
                   scratch: storage.Scratch | None) -> dict:
    patch = cfg.model.patch_size
    session = connect(address)
    try:
        require_resources({"CPU": (enc.decode_cpus, "decode_cpus")}, "clip-decoding task")
        require_resources({"CPU": (enc.actor_cpus, "actor_cpus"), "GPU": (enc.num_gpus, "num_gpus")},
                          "encoder actor")
        t0 = time.perf_counter()
        probe = ray.get(ray.remote(probe_encoders).options(num_gpus=enc.num_gpus or None, num_cpus=enc.actor_cpus)
                        .remote(cfg.data, patch))
        inputs = shards.key_inputs(cfg.data, patch)  # the probe may have downloaded a hub model: its revision
        folder = shards.key_dir(out, inputs)
        plan = plan_encode(out, cfg.data, folder, limit)
        shards.write_key(folder, inputs, probe["dims"])
        shards.write_null_caption(folder, probe["null_text"])
        counts = _execute(folder, cfg, enc, plan, probe, scratch) if plan.tasks.num_rows else {"encoded": 0}
        elapsed = time.perf_counter() - t0
    finally:
        session.close()
    summary = {**_head(folder, plan), **counts, "elapsed_s": round(elapsed, 3),
               "clips_per_s": round(counts["encoded"] / elapsed, 3) if elapsed > 0 else None}
    store.update_summary(out, "encode", summary)
    return summary


def _head(folder, plan: EncodePlan) -> dict:
    return {"key": storage.name(folder), "folder": str(folder), "selected": plan.selected, "skipped_done": plan.skipped_done,
            "to_encode": plan.tasks.num_rows, "retrying_errors": plan.retrying_errors}


def _execute(folder, cfg: RunConfig, enc: EncodeConfig, plan: EncodePlan, probe: dict,
             scratch: storage.Scratch | None = None) -> dict:
    n = enc.batch_size
    blocks = [plan.tasks.slice(i, n) for i in range(0, plan.tasks.num_rows, n)]
    frame_bytes = cfg.data.max_frames * cfg.data.max_side_px ** 2 * 3
    ds = ray.data.from_arrow(blocks)
    # A memory reservation on the decode tasks keeps Ray from fusing them into the actor stage (which would
    # serialise decoding with encoding).
    ds = ds.map_batches(decode_batch, batch_size=n, batch_format="pyarrow", num_cpus=enc.decode_cpus,
                        memory=DECODE_BASE_MEMORY + n * frame_bytes,
                        fn_kwargs={"data_cfg": cfg.data, "patch": cfg.model.patch_size,
                                   "temporal_factor": probe["temporal_factor"],
                                   "spatial_factor": probe["spatial_factor"], "scratch": scratch})
    ds = ds.map_batches(EncodeActor, batch_size=n, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(size=enc.concurrency), num_gpus=enc.num_gpus or None,
                        num_cpus=enc.actor_cpus,
                        fn_constructor_kwargs={"data_cfg": cfg.data, "patch": cfg.model.patch_size,
                                               "torch_threads": enc.torch_threads})
    with CountProgress(plan.tasks.num_rows, "clip", "encode", log) as progress:
        return _write_shards(folder, ds.iter_batches(batch_size=None, batch_format="pyarrow"), enc.shard_rows,
                             cfg.data.max_text_tokens, progress)


def _write_shards(folder, batches, shard_rows: int, text_budget: int, progress: CountProgress | None = None) -> dict:
    tag = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    buffer: list[pa.Table] = []
    counts = {"encoded": 0, "ok": 0, "error": 0, "shards": 0, "caption_token_budget": text_budget,
              "captions_over_budget": 0}
    by_stage: Counter = Counter()
    by_reason: Counter = Counter()  # "stage: message": the closing summary groups failures by it
    for batch in batches:
        buffer.append(batch)
        counts["encoded"] += batch.num_rows
        ok = pc.sum(pc.equal(batch.column("status"), "ok")).as_py() or 0
        counts["ok"] += ok
        if progress is not None:
            progress.update(batch.num_rows, failed=batch.num_rows - ok)
        counts["captions_over_budget"] += pc.sum(pc.greater(batch.column("caption_tokens"), text_budget)).as_py() or 0
        failed = batch.select(["error_stage", "error_message"]).to_pylist()
        by_stage.update(r["error_stage"] for r in failed if r["error_stage"])
        by_reason.update(f"{r['error_stage']}: {r['error_message']}" for r in failed if r["error_stage"])
        if sum(t.num_rows for t in buffer) >= shard_rows:
            shards.write_shard(folder, pa.concat_tables(buffer), f"part-{tag}-{counts['shards']:05d}")
            counts["shards"] += 1
            buffer = []
    if buffer:
        shards.write_shard(folder, pa.concat_tables(buffer), f"part-{tag}-{counts['shards']:05d}")
        counts["shards"] += 1
    counts["error"] = counts["encoded"] - counts["ok"]
    counts["error_by_stage"] = dict(by_stage)
    counts["error_by_reason"] = dict(by_reason.most_common(20))
    return counts


def _train_worker(config: dict) -> None:
    """The loop of one Ray Train worker: rushes.train.loop.train with this worker's rank; worker 0 reports the result."""
    import torch
    from ray.train.torch import get_device

    from rushes.train.loop import TrainOptions, auto_prefetch, train

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(config["torch_threads"])
    device = get_device()
    prefetch = config["prefetch"]
    if prefetch is None:  # a data thread only where the node has a core for it beside its workers' threads
        prefetch = auto_prefetch(device, ctx.get_local_world_size())
    options = TrainOptions(rank=rank, world=world, parallel=config["parallel"], device=device,
                           use_encodings=config["use_encodings"], prefetch=prefetch,
                           echo=print if rank == 0 else _silent, echo_log=config["echo_log"],
                           on_log=config["log_queue"].put if config["log_queue"] is not None else None,
                           lock=False,  # the driver holds RUN's lock for the job
                           compile=config["compile"], profile_steps=config["profile_steps"])
    result = train(config["out"], config["run_dir"], config["cfg"], options)
    with tempfile.TemporaryDirectory() as tmp:  # Ray Train keeps a result only with a checkpoint: a tiny one
        if rank == 0:
            (Path(tmp) / "result.json").write_text(json.dumps(vars(result)))
        ray.train.report({"step": result.step},
                         checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)


def _silent(message: str) -> None:
    """The echo of a worker other than 0: its messages would repeat worker 0's."""


def run_train_workers(out, run_dir, cfg: RunConfig, workers: int, gpus_per_worker: float = 0.0,
                      address: str | None = None, use_encodings: bool = True,
                      torch_threads: int | None = None, parallel: str = "ddp",
                      progress: StepProgress | None = None, prefetch: bool | None = None,
                      compile: bool = False, profile_steps: int = 0) -> TrainResult:
    """Train (or resume) ``run_dir`` with ``workers`` Ray Train workers, data-parallel by ``parallel`` (``ddp``
    or ``fsdp``, train/parallel.py); returns worker 0's result. Each worker runs ``torch_threads`` intra-op
    threads, by default one per CPU Ray reserves for it (1), so N workers on N cores never oversubscribe them.
    ``progress`` shows the lines worker 0 appends to ``RUN_DIR/log.jsonl`` while the workers run
    (train/progress.py); worker 0 then prints no log lines of its own (each would show twice, and Ray's log
    forwarding would spend CPU the workers need). ``prefetch``: as in ``rushes.train.loop.train``; None: each worker
    runs a data thread when its node has a core for it (``rushes.train.loop.auto_prefetch``). ``compile`` and
    ``profile_steps``: as ``rushes.train.loop.TrainOptions`` has them, for every worker."""
    from ray.train import RunConfig as RayRunConfig
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    if workers < 1 or gpus_per_worker < 0:
        raise ValueError(f"--workers {workers} must be >= 1 and --gpus-per-worker {gpus_per_worker} >= 0")
    check_parallel(parallel)
    bucket = rundir.is_remote(run_dir)
    run_dir = rundir.location(run_dir) if bucket else Path(run_dir).resolve()
    # Ray Train's own files (a tiny result checkpoint) go under RUN too: in the bucket for a bucket RUN
    ray_fs, ray_path = storage.resolve(run_dir) if bucket else (None, str(run_dir))
    resources = {"CPU": 1.0, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
    with writer_lock(run_dir, "rushes train"):  # a second trainer on RUN is refused at once, naming this
        session = connect(address)
        try:
            queue = Queue() if bucket and progress is not None else None  # worker 0's log records -> the driver
            trainer = TorchTrainer(
                _train_worker,
                train_loop_config={"out": [run_name(o) for o in out_dirs(out)], "run_dir": str(run_dir), "cfg": cfg,
                                   "use_encodings": use_encodings, "torch_threads": torch_threads or int(resources["CPU"]),
                                   "parallel": parallel, "echo_log": progress is None, "prefetch": prefetch,
                                   "log_queue": queue, "compile": compile, "profile_steps": profile_steps},
                scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0,
                                             resources_per_worker=resources),
                run_config=RayRunConfig(name="ray-train", storage_path=ray_path, storage_filesystem=ray_fs))
            # a folder RUN: the driver shows the lines worker 0 appends to its log; a bucket RUN's log is uploaded
            # with each checkpoint, so worker 0 sends its records to the driver through a Ray queue instead
            with _following(run_dir / "log.jsonl" if not bucket else None, progress, queue):
                result = trainer.fit()
        finally:
            session.close()
    if result.error:
        raise result.error
    with result.checkpoint.as_directory() as folder:
        return TrainResult(**json.loads((Path(folder) / "result.json").read_text()))


@contextlib.contextmanager
def _following(log_path: Path | None, progress: StepProgress | None, queue=None, every_s: float = 1.0):
    """While the block runs, a driver thread shows the log lines worker 0 appends to ``log_path``, or the
    records it puts in ``queue`` (a ``ray.util.queue.Queue``); one last read at the end."""
    if progress is None:
        yield
        return
    follower, stop = LogFollower(log_path, progress), threading.Event()

    def poll():
        try:
            follower.poll()
            for record in queue.get_nowait_batch(queue.qsize()) if queue is not None else ():
                follower.show(record)
        except Exception:  # live progress only: training goes on, and its outcome is what the caller gets
            log.exception("could not show the training log's progress")

    def follow():
        while not stop.wait(every_s):
            poll()
    thread = threading.Thread(target=follow, name="rushes-train-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        poll()
