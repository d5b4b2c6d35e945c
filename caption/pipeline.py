"""Ray Data wiring of the caption stage (the only module here that imports ray).

kept clips (and their windows) -> ``map_batches(decode_batch)`` CPU tasks -> ``map_batches(CaptionActor)`` actor
pool (the engine loaded once per actor: transformers or vLLM's offline engine with the model, or an HTTP client of an
OpenAI-compatible server; ``concurrency`` actors with ``num_gpus`` each) -> caption parts written by the driver with
``manifests.write_part`` (atomic). Ray's streaming executor runs decode tasks while the actors generate, so frames
for the next batch are ready when the engine finishes the current one. The openai engine's API key is read here, on
the driver, and reaches the actors inside a ``Secret`` that never prints.

Usage::

    from rushes.caption.config import preset
    from rushes.caption.pipeline import run
    summary = run("OUT", preset("default"), limit=10)
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import ray

from rushes import storage

from rushes.caption.adapter import CaptionActor, Plan, decode_batch, plan_run
from rushes.caption.captioner import frame_spec, load_processor, resolve_model
from rushes.caption.chat import Secret
from rushes.caption.config import CaptionConfig
from rushes.caption.engine import check_engine
from rushes.caption.prompts import get_prompt
from rushes.progress import CountProgress
from rushes.cluster import connect, require_resources
from rushes.manifests import store
from rushes.manifests.lock import writer_lock
from rushes.versions import tool_versions as media_tool_versions
from rushes.manifests.ids import config_hash

log = logging.getLogger(__name__)

# Rows buffered before a part is written: fewer, larger files; a crash loses at most this many captions.
FLUSH_ROWS = 256
FLUSH_SECONDS = 60.0
DECODE_BASE_MEMORY = 256 << 20  # a decoder, PyAV and pyarrow in one worker


def _decode_memory_bytes(cfg: CaptionConfig) -> int:
    """Memory one decode task reserves: the base plus its batch of frames (RGB, at the size cap)."""
    return DECODE_BASE_MEMORY + cfg.batch_size * cfg.num_frames * cfg.frame_max_pixels * 3


def tool_versions(engine: str = "transformers") -> dict:
    """Versions of the libraries that shape a caption (vllm's too when it runs the model)."""
    return media_tool_versions(("transformers", "torch", "av", "ray", *(("vllm",) if engine == "vllm" else ())))


def run(out: str | os.PathLike, cfg: CaptionConfig, limit: int | None = None, address: str | None = None,
        dry_run: bool = False, captioner_cls: type | None = None, scratch: storage.Scratch | None = None) -> dict:
    """Caption the kept clips of run directory ``out`` (a folder or ``s3://`` prefix); returns the summary (also
    in ``OUT/summary.json``).

    Reruns skip clips already captioned OK by the same model revision and prompt version; failed
    clips are captioned again (their error rows are replaced). ``dry_run`` only reports the plan. Clip files in
    a bucket are decoded from bounded local copies in ``scratch`` (default: ``storage.Scratch()``).
    ``captioner_cls`` replaces the config's engine class (tests). Raises
    :class:`~rushes.caption.engine.EngineUnavailableError` when the engine cannot run (vllm missing, the
    endpoint down or refusing the key).
    """
    prompt = get_prompt(cfg.prompt, cfg.prompt_text)
    api_key = Secret(os.environ.get(cfg.api_key_env)) if cfg.engine == "openai" else None
    if captioner_cls is None:
        check_engine(cfg, api_key.reveal() if api_key else None)
    resolved = resolve_model(cfg, allow_download=not dry_run)
    plan = plan_run(out, resolved.captioner, prompt.version, limit, window_s=cfg.window_s)
    head = {"captioner": resolved.captioner, "engine": cfg.engine, "prompt_version": prompt.version,
            "kept_clips": plan.kept, "skipped_done": plan.skipped_done, "to_caption": plan.tasks.num_rows,
            "windows": plan.windows, "retrying_errors": len(plan.retry_caption_ids)}
    if dry_run:
        return {**head, "dry_run": True, "output": str(store.manifest_dir(out, "captions"))}
    with writer_lock(out, "rushes caption"):  # a second writer on this OUT is refused at once, naming this one
        return _run_locked(out, cfg, plan, _Job(resolved, prompt, captioner_cls, api_key), head, address, scratch)


class _Job:
    """What every actor of one run is built from: the pinned model, the prompt, the engine class, the key."""

    def __init__(self, resolved, prompt, captioner_cls: type | None, api_key: Secret | None):
        self.resolved, self.prompt, self.captioner_cls, self.api_key = resolved, prompt, captioner_cls, api_key


def _run_locked(out, cfg: CaptionConfig, plan: Plan, job: _Job, head: dict, address: str | None,
                scratch: storage.Scratch | None) -> dict:
    resolved, prompt = job.resolved, job.prompt
    processor = None if cfg.engine == "openai" else load_processor(resolved, cfg)  # openai: the server's model
    spec = frame_spec(processor, cfg)
    resolved_cfg = {**cfg.to_dict(), "captioner": resolved.captioner, "prompt_version": prompt.version,
                    "frame_spec": {"max_side": spec.max_side, "max_pixels": spec.max_pixels}}
    chash = config_hash(resolved_cfg)
    store.write_json_atomic(storage.join(out, "config", "caption.json"), {**resolved_cfg, "config_hash": chash})
    store.remove_temp_files(out, "captions")  # a part whose writer was killed mid-write
    _drop_rows(out, set(plan.retry_caption_ids))
    start = time.perf_counter()
    counts = _execute(out, cfg, plan, job, spec, chash, address, scratch)
    elapsed = time.perf_counter() - start
    summary = {**head, **counts, "elapsed_s": round(elapsed, 3),
               "clips_per_s": round(counts["captioned"] / elapsed, 4) if elapsed > 0 else None,
               "output_tokens_per_s": round(counts["output_tokens"] / elapsed, 2) if elapsed > 0 else None,
               "config_hash": chash}
    store.update_summary(out, "caption", summary)
    return summary


def _execute(out, cfg: CaptionConfig, plan: Plan, job: _Job, spec, chash: str, address: str | None,
             scratch: storage.Scratch | None) -> dict:
    counts = {"captioned": 0, "ok": 0, "error": 0, "error_by_stage": {}, "flagged": 0, "flags": {}, "retried": 0,
              "output_tokens": 0, "parts": 0, "nodes_used": 0, "startup_s": None, "steady_clips_per_s": None,
              "steady_output_tokens_per_s": None}
    if plan.tasks.num_rows == 0:
        return counts
    session = connect(address)
    try:
        require_resources({"CPU": (cfg.decode_cpus, "decode_cpus")}, "frame-decoding task")
        require_resources({"CPU": (cfg.actor_cpus, "actor_cpus"), "GPU": (cfg.num_gpus, "num_gpus")},
                          "caption model actor")
        ds = _dataset(cfg, plan, job, spec, chash, scratch)
        with CountProgress(plan.tasks.num_rows, "clip", "caption", log) as progress:
            _write_stream(out, ds.iter_batches(batch_size=None, batch_format="pyarrow"), counts, progress)
        log.debug("ray data stats:\n%s", ds.stats())
    finally:
        session.close()
    return counts


def _dataset(cfg: CaptionConfig, plan: Plan, job: _Job, spec, chash: str, scratch: storage.Scratch | None):
    # One input block per batch so decode tasks start as soon as the first clips are listed.
    n = cfg.batch_size
    blocks = [plan.tasks.slice(i, n) for i in range(0, plan.tasks.num_rows, n)]
    ds = ray.data.from_arrow(blocks)
    # Ray fuses map stages whose remote args match, which would run decoding inside the model actor,
    # serialised with generation; the decode tasks' memory reservation keeps them a separate stage.
    ds = ds.map_batches(_decode_on_node, batch_size=n, batch_format="pyarrow", num_cpus=cfg.decode_cpus,
                        memory=_decode_memory_bytes(cfg),
                        fn_kwargs={"spec": spec, "num_frames": cfg.num_frames, "fps": cfg.fps, "scratch": scratch})
    return ds.map_batches(
        _CaptionActorOnNode, batch_size=n, batch_format="pyarrow",
        compute=_actor_pool(cfg), num_gpus=cfg.num_gpus or None,
        num_cpus=cfg.actor_cpus,
        fn_constructor_kwargs={"cfg": cfg, "resolved": job.resolved, "prompt": job.prompt,
                               "config_hash": chash, "tool_versions": tool_versions(cfg.engine),
                               "captioner_cls": job.captioner_cls, "api_key": job.api_key})


def _actor_pool(cfg: CaptionConfig):
    """The model actors. An openai actor only waits on its endpoint: it takes several batches at once (threads
    sharing its one pool of ``request_concurrency`` request threads), so the endpoint gets that many requests even
    when a batch holds fewer clips, and a batch's slowest answer never leaves the endpoint idle. A model actor
    (transformers, vLLM) runs one batch at a time. Ray releases before ActorPoolStrategy had
    ``max_concurrent_calls_per_actor`` run one batch at a time for every engine."""
    if cfg.engine != "openai":
        return ray.data.ActorPoolStrategy(size=cfg.concurrency)
    calls = -(-cfg.request_concurrency // cfg.batch_size) + 1  # one more than fills the pool: the next one waits
    try:
        return ray.data.ActorPoolStrategy(size=cfg.concurrency, max_concurrent_calls_per_actor=calls,
                                          max_tasks_in_flight_per_actor=2 * calls, enable_true_multi_threading=True)
    except TypeError:
        log.debug("this Ray runs one batch at a time per caption actor (no max_concurrent_calls_per_actor)")
        return ray.data.ActorPoolStrategy(size=cfg.concurrency)


def _node_id() -> str:
    return ray.get_runtime_context().get_node_id()


def _decode_on_node(tasks: pa.Table, **kwargs) -> pa.Table:
    """:func:`decode_batch`, each row tagged with the Ray node that decoded it (``nodes`` column)."""
    table = decode_batch(tasks, **kwargs)
    return table.append_column("nodes", pa.array([_node_id()] * table.num_rows, pa.string()))


class _CaptionActorOnNode(CaptionActor):
    """:class:`CaptionActor` whose rows carry ``nodes``: the nodes that decoded and captioned the batch. The driver
    counts them (``nodes_used`` in the summary) and drops the column before writing."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        nodes = set(batch.column("nodes").to_pylist()) | {_node_id()}
        table = super().__call__(batch.drop_columns(["nodes"]))
        return table.append_column("nodes", pa.array([",".join(sorted(nodes))] * table.num_rows, pa.string()))


def _write_stream(out, batches, counts: dict, progress: CountProgress) -> None:
    run_tag = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    buffer: list[pa.Table] = []
    nodes: set[str] = set()
    started, last = store.now_utc(), time.monotonic()
    done_at: list[tuple] = []  # (when the actor finished a batch, its rows, output tokens): actor clocks
    by_stage: Counter = Counter()
    by_flag: Counter = Counter()
    for batch in batches:
        nodes.update(n for joined in batch.column("nodes").to_pylist() for n in joined.split(","))
        batch = batch.drop_columns(["nodes"])
        buffer.append(batch)
        tokens = pc.sum(batch.column("output_tokens")).as_py() or 0
        done_at.append((pc.max(batch.column("created_at")).as_py(), batch.num_rows, tokens))
        status = batch.column("status")
        counts["captioned"] += batch.num_rows
        ok = pc.sum(pc.equal(status, "ok")).as_py() or 0
        counts["ok"] += ok
        progress.update(batch.num_rows, failed=batch.num_rows - ok)
        counts["output_tokens"] += tokens
        by_stage.update(s for s in batch.column("error_stage").to_pylist() if s)
        flags = [f for f in batch.column("caption_flags").to_pylist() if f]
        counts["flagged"] += len(flags)
        by_flag.update(name for joined in flags for name in joined.split(";"))
        counts["retried"] += pc.sum(pc.equal(batch.column("attempts"), 2)).as_py() or 0
        if sum(t.num_rows for t in buffer) >= FLUSH_ROWS or time.monotonic() - last > FLUSH_SECONDS:
            _flush(out, buffer, f"part-{run_tag}-{counts['parts']:05d}")
            counts["parts"] += 1
            buffer, last = [], time.monotonic()
    if buffer:
        _flush(out, buffer, f"part-{run_tag}-{counts['parts']:05d}")
        counts["parts"] += 1
    counts["error"] = counts["captioned"] - counts["ok"]
    counts["error_by_stage"] = dict(by_stage)
    counts["flags"] = dict(by_flag)
    counts["nodes_used"] = len(nodes)
    counts.update(_throughput(started, sorted(done_at, key=lambda d: d[0])))


def _flush(out, buffer: list[pa.Table], part_name: str) -> None:
    store.write_part(out, "captions", pa.concat_tables(buffer), part_name=part_name)


def _throughput(started, done_at: list[tuple]) -> dict:
    """Startup (until the first batch is captioned: Ray workers, model load) and the steady rate after it."""
    if not done_at:
        return {}
    first = done_at[0][0]
    window = (done_at[-1][0] - first).total_seconds()
    rest = sum(n for _, n, _ in done_at[1:])
    rest_tokens = sum(t for _, _, t in done_at[1:])
    return {"startup_s": round((first - started).total_seconds(), 3),
            "steady_clips_per_s": round(rest / window, 4) if window > 0 and rest else None,
            "steady_output_tokens_per_s": round(rest_tokens / window, 2) if window > 0 and rest_tokens else None}


def _drop_rows(out, caption_ids: set[str]) -> None:
    """Remove earlier error rows that this run replaces (each part rewritten atomically)."""
    if not caption_ids:
        return
    wanted = pa.array(sorted(caption_ids), pa.string())
    for part in store.part_paths(out, "captions"):
        table = store.read_part(part, "captions")
        hit = pc.is_in(table.column("caption_id"), wanted)
        if pc.any(hit).as_py():
            remaining = table.filter(pc.invert(hit))
            if remaining.num_rows:
                store.replace_rows(out, "captions", part, remaining)
            else:
                storage.delete(part)
