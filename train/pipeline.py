"""Ray wiring of the trainer (the only module in train/ importing ray): ``rushes encode`` on Ray Data.

kept, captioned clips -> ``map_batches(decode_batch)`` CPU tasks -> ``map_batches(EncodeActor)`` actor pool
(encoders loaded once per actor; ``concurrency`` actors with ``num_gpus`` each) -> shards written by the driver
(``train/shards.py``, atomic). Ray's streaming executor decodes the next clips while the actors encode.

Usage::

    from train.config import preset
    from train.encode import EncodeConfig
    from train.pipeline import run_encode
    summary = run_encode("OUT", preset("tiny").with_overrides(data={"text_encoder": "t5"}), EncodeConfig())
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

from manifests import store
from train import shards
from train.config import RunConfig
from train.encode import EncodeActor, EncodeConfig, EncodePlan, decode_batch, plan_encode, probe_encoders

log = logging.getLogger(__name__)

DECODE_BASE_MEMORY = 512 << 20  # a decoder, PyAV, pyarrow and torch in one worker (measured ~520 MiB)


def ensure_ray(address: str | None) -> bool:
    """Connect to Ray: reuse an initialised instance, else ``address``/``$RAY_ADDRESS``, else start a fresh
    local one (never attach silently to a cluster). Returns True when this call started it."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    return True


def run_encode(out: str | os.PathLike, cfg: RunConfig, enc: EncodeConfig, limit: int | None = None,
               address: str | None = None, dry_run: bool = False) -> dict:
    """Encode the kept, captioned clips of ``out`` into ``OUT/encodings/<key>/``; returns the summary (also
    ``summary.json["encode"]``). Reruns skip clips encoded ok with the same caption and retry failed ones."""
    patch = cfg.model.patch_size
    inputs = shards.key_inputs(cfg.data, patch)
    folder = shards.key_dir(out, inputs)
    plan = plan_encode(out, cfg.data, folder, limit)
    if dry_run or (plan.tasks.num_rows == 0 and (folder / "null_caption.parquet").exists()):
        return {**_head(folder, plan), "dry_run": dry_run, "encoded": 0}
    started = ensure_ray(address)
    try:
        t0 = time.perf_counter()
        probe = ray.get(ray.remote(probe_encoders).options(num_gpus=enc.num_gpus or None, num_cpus=enc.actor_cpus)
                        .remote(cfg.data, patch))
        inputs = shards.key_inputs(cfg.data, patch)  # the probe may have downloaded a hub model: its revision
        folder = shards.key_dir(out, inputs)
        plan = plan_encode(out, cfg.data, folder, limit)
        shards.write_key(folder, inputs)
        shards.write_null_caption(folder, probe["null_text"])
        counts = _execute(folder, cfg, enc, plan, probe) if plan.tasks.num_rows else {"encoded": 0}
        elapsed = time.perf_counter() - t0
    finally:
        if started:
            ray.shutdown()
    summary = {**_head(folder, plan), **counts, "elapsed_s": round(elapsed, 3),
               "clips_per_s": round(counts["encoded"] / elapsed, 3) if elapsed > 0 else None}
    store.update_summary(out, "encode", summary)
    return summary


def _head(folder, plan: EncodePlan) -> dict:
    return {"key": folder.name, "folder": str(folder), "selected": plan.selected, "skipped_done": plan.skipped_done,
            "to_encode": plan.tasks.num_rows, "retrying_errors": plan.retrying_errors}


def _execute(folder, cfg: RunConfig, enc: EncodeConfig, plan: EncodePlan, probe: dict) -> dict:
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
                                   "spatial_factor": probe["spatial_factor"]})
    ds = ds.map_batches(EncodeActor, batch_size=n, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(size=enc.concurrency), num_gpus=enc.num_gpus or None,
                        num_cpus=enc.actor_cpus,
                        fn_constructor_kwargs={"data_cfg": cfg.data, "patch": cfg.model.patch_size,
                                               "torch_threads": enc.torch_threads})
    return _write_shards(folder, ds.iter_batches(batch_size=None, batch_format="pyarrow"), enc.shard_rows)


def _write_shards(folder, batches, shard_rows: int) -> dict:
    tag = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    buffer: list[pa.Table] = []
    counts = {"encoded": 0, "ok": 0, "error": 0, "shards": 0}
    by_stage: Counter = Counter()
    for batch in batches:
        buffer.append(batch)
        counts["encoded"] += batch.num_rows
        counts["ok"] += pc.sum(pc.equal(batch.column("status"), "ok")).as_py() or 0
        by_stage.update(s for s in batch.column("error_stage").to_pylist() if s)
        if sum(t.num_rows for t in buffer) >= shard_rows:
            shards.write_shard(folder, pa.concat_tables(buffer), f"part-{tag}-{counts['shards']:05d}")
            counts["shards"] += 1
            buffer = []
    if buffer:
        shards.write_shard(folder, pa.concat_tables(buffer), f"part-{tag}-{counts['shards']:05d}")
        counts["shards"] += 1
    counts["error"] = counts["encoded"] - counts["ok"]
    counts["error_by_stage"] = dict(by_stage)
    return counts
