"""The training loop, readable top to bottom: manifest -> packed clips -> DiT -> checkpoints.

Use::

    from rushes.train.config import preset
    from rushes.train.loop import train
    result = train("OUT", "runs/tiny", preset("tiny"))      # resumes when runs/tiny has a checkpoint

Writes ``RUN_DIR/config.json`` (resolved config and tool versions), ``RUN_DIR/log.jsonl`` (one JSON line per
logged step: loss, clips, tokens, model FLOPs, real tokens/s, the step's seconds split into data wait, forward,
backward and optimizer, and MFU on a GPU; one line per validation), ``RUN_DIR/skipped.jsonl`` (clips that failed
to decode), ``RUN_DIR/checkpoints/`` and a ``train`` entry in ``OUT/summary.json``; stdout echoes the log lines.

Data come from ``OUT/encodings/<key>`` when ``rushes encode`` wrote encodings with this run's settings
(streamed, :mod:`rushes.train.stream`), else every clip is decoded and encoded once into ``RUN_DIR/cache``. With
``world`` > 1 (``train/pipeline.py`` starts the workers on Ray Train) the model is wrapped in DDP (or sharded
with FSDP2, ``parallel="fsdp"``: train/parallel.py) and each
worker trains its share of every step's ``packs_per_step`` packs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from rushes.manifests import store
from rushes.manifests.lock import writer_lock
from rushes.versions import tool_versions
from rushes import storage
from rushes.train import checkpoint, rundir, shards
from rushes.train import parallel as dp
from rushes.train.config import RunConfig
from rushes.manifests.clips import KeptClip
from rushes.train.data import Example, Prepared, prepare, split_validation
from rushes.train.encoders import TextEncoder, Vae
from rushes.train.diffusion import training_loss
from rushes.train.model import DiffusionTransformer, count_parameters
from rushes.progress import record_line
from rushes.train.packing import PackedBatch, PackLoader, collate, pack_first_fit
from rushes.train.selection import record_selection, select_clips
from rushes.train.throughput import Stopwatch, batch_flops, peak_flops
from rushes.train.stream import PackStream, open_encodings

log = logging.getLogger(__name__)

TOOLS = ("torch", "transformers", "diffusers", "safetensors", "av")  # recorded in config.json


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    run_dir: str
    start_step: int
    step: int
    losses: list[float] = field(default_factory=list)  # training loss of every step run in this call
    val_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss)
    num_clips: int = 0
    skipped: int = 0
    parameters: int = 0


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def out_dirs(out_dir) -> list:
    """One OUT or several, as a list."""
    return [out_dir] if isinstance(out_dir, (str, os.PathLike)) else list(out_dir)


def load_data(out_dir, run_dir, cfg: RunConfig, device: torch.device,
              sources: list[KeptClip] | None = None) -> Prepared:
    """Prepare (or read from ``RUN_DIR/cache``) ``sources``, by default the clips of ``out_dir`` (one OUT or
    several) that ``cfg.data`` selects (train/selection.py)."""
    d = cfg.data
    sources = select_clips(out_dirs(out_dir), d).clips if sources is None else sources
    dev = str(device)
    return prepare(sources, d, cfg.model.patch_size, Path(run_dir) / "cache",
                   lambda: TextEncoder(d.text_encoder, d.max_text_tokens, device=dev),
                   lambda: Vae(d.vae, d.vae_subfolder, device=dev) if d.vae else None)


@dataclass
class TrainData:
    """Where a run's packs come from (encodings streamed from shards, or clips prepared in memory)."""

    source: PackLoader | PackStream  # next_packs / state_dict / load_state_dict / close
    val_set: list[Example]
    null_text: torch.Tensor
    channels: int
    text_dim: int
    num_clips: int
    num_train: int
    skipped: list[dict]
    encodings: str | None = None  # the encodings folder streamed, None when decoded on the fly
    selection: dict | None = None  # how the clips were chosen (train/selection.py), for RUN_DIR/selection.json


def load_train_data(out_dir, run_dir, cfg: RunConfig, device: torch.device, use_encodings: bool = True) -> TrainData:
    """The clips ``cfg.data`` selects from ``out_dir`` (one OUT or several, train/selection.py): from the encodings
    of OUT made with this config when there are any (a mismatch raises, naming the setting; a single OUT only),
    else decoded and encoded once into ``RUN_DIR/cache`` (:func:`load_data`)."""
    d, patch, outs = cfg.data, cfg.model.patch_size, out_dirs(out_dir)
    selection = select_clips(outs, d)
    if use_encodings and len(outs) > 1:
        log.info("training on %d runs: clips are decoded on the fly (encodings are per run)", len(outs))
    use = use_encodings and len(outs) == 1
    folder = shards.find_encodings(outs[0], shards.key_inputs(d, patch)) if use else None
    if folder is None:
        prepared = load_data(outs, run_dir, cfg, device, selection.clips)
        train_set, val_set = split_validation(prepared.examples, d.val_clips)
        return TrainData(PackLoader(train_set, d.batch_tokens, seed=cfg.train.seed), val_set, prepared.null_text,
                         prepared.channels, prepared.text_dim, len(prepared.examples), len(train_set),
                         prepared.skipped, selection=selection.record)
    enc = open_encodings(folder, selection.clips, patch, d.val_clips)
    stream = PackStream(folder, enc.train_ids, patch, d.batch_tokens, d.stream_window, cfg.train.seed)
    return TrainData(stream, enc.val, enc.null_text, enc.channels, enc.text_dim, enc.num_clips, len(enc.train_ids),
                     enc.skipped, str(folder), selection.record)


def pack_generator(seed: int, step: int, pack: int) -> torch.Generator:
    """The random stream of one pack (caption dropout, timesteps, noise): a function of the seed, the step and
    the pack's place in the step's global pack list, so it is the same whichever worker trains the pack."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, pack]).generate_state(1)[0]))


def build_model(cfg: RunConfig, device: torch.device) -> DiffusionTransformer:
    """The model of a resolved config, seeded so a fresh run always starts from the same weights."""
    torch.manual_seed(cfg.train.seed)
    return DiffusionTransformer(cfg.model).to(device)


def lr_at(step: int, cfg: RunConfig) -> float:
    """Linear warmup to ``lr``, then constant (rectified-flow DiTs train well at a constant rate)."""
    warm = cfg.train.warmup_steps
    return cfg.train.lr * min(1.0, (step + 1) / warm) if warm else cfg.train.lr


def train_step(model, ema, optimizer, batches: list[PackedBatch], generators: list[torch.Generator],
               cfg: RunConfig, step: int, world: int = 1, counts: dict | None = None) -> dict:
    """One optimisation step on this worker's packs: losses, backward, clip, AdamW, EMA. Returns log numbers,
    with the seconds of the forward passes (noise and loss included), the backward passes and the optimizer,
    and ``counts`` (this worker's, :func:`_pack_counts`) summed over the workers.

    The gradient is the mean over the step's ``packs_per_step`` packs of all workers, whatever their number:
    each pack's loss is scaled by world / packs_per_step and DDP (or FSDP) averages over the workers. The mean
    loss and the counts cross the workers in one asynchronous all-reduce started after the backward passes and
    awaited after the optimizer: under DDP the gradient's reduction is the only point of a step where workers
    wait for each other.
    """
    tc = cfg.train
    watch, seconds = Stopwatch(batches[0].x0.device), {"forward_s": 0.0, "backward_s": 0.0}
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, cfg)
    optimizer.zero_grad(set_to_none=True)
    scale = world / cfg.data.packs_per_step
    total = torch.zeros((), device=batches[0].x0.device)
    for i, (batch, gen) in enumerate(zip(batches, generators)):
        last = i == len(batches) - 1
        with dp.grad_sync(model, last or world == 1):  # one gradient reduction per step
            on_gpu = batch.x0.device.type == "cuda"
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_gpu):  # bf16 on GPU only; CPU fp32
                loss, _ = training_loss(
                    lambda x_t, t: model(x_t, t, batch.text, batch.text_mask, batch.pos, batch.seq),
                    batch.x0, batch.seq, batch.slot_tokens, gen, tc.timestep_mean, tc.timestep_std,
                    tc.shift_base_tokens, tc.max_shift)
            seconds["forward_s"] += watch.lap()
            (loss * scale).backward()
            seconds["backward_s"] += watch.lap()
        total += loss.detach() / cfg.data.packs_per_step
    summed = _StepSum(total, counts or {}, world)  # the mean loss over every worker's packs, the counts' sums
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip if tc.grad_clip else float("inf"))
    optimizer.step()
    with torch.no_grad():  # one fused call over all tensors: a per-tensor loop costs more than a tiny model's step
        torch._foreach_lerp_(dp.local(ema.parameters()), dp.local(model.parameters()), 1.0 - tc.ema_decay)
    loss_value, counts = summed.result()
    stats = {"loss": loss_value, "grad_norm": dp.as_float(gnorm), "lr": optimizer.param_groups[0]["lr"]}
    return {**stats, **seconds, "optimizer_s": watch.lap(), **counts}


class _StepSum:
    """A step's mean loss and counts summed over the workers (the loss in its own dtype, the counts as int64:
    exact), started asynchronously at construction; :meth:`result` waits. One worker: the numbers as they are."""

    def __init__(self, loss: torch.Tensor, counts: dict, world: int):
        self.keys, self.loss, self.counts, self.work = list(counts), loss, counts, []
        if world > 1:
            self.loss = loss.clone()
            self.counts = torch.tensor([int(counts[k]) for k in self.keys], dtype=torch.long).to(loss.device)
            self.work = [torch.distributed.all_reduce(t, async_op=True) for t in (self.loss, self.counts)]

    def result(self) -> tuple[float, dict]:
        for work in self.work:
            work.wait()
        if not self.work:
            return self.loss.item(), self.counts
        return self.loss.item(), dict(zip(self.keys, self.counts.tolist()))


@torch.no_grad()
def validation_loss(model, val_set, cfg: RunConfig, device) -> float:
    """Mean loss over held-out clips at the fixed ``val_timesteps`` with fixed noise (comparable across steps)."""
    if not val_set:
        return float("nan")
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(12345)  # its own stream: validation never shifts training randomness
    total, count = 0.0, 0
    for pack in pack_first_fit([e.num_tokens for e in val_set], cfg.data.batch_tokens):
        batch = collate([val_set[i] for i in pack]).to(device)
        for t_val in cfg.train.val_timesteps:
            t = torch.full(batch.slot_tokens.shape, t_val, device=device)
            _, losses = training_loss(
                lambda x_t, tt: model(x_t, tt, batch.text, batch.text_mask, batch.pos, batch.seq),
                batch.x0, batch.seq, batch.slot_tokens, gen, t=t)
            total += float(losses.sum())
            count += losses.numel()
    model.train(was_training)
    return total / max(count, 1)


def _append_log(run: _Run, record: dict) -> None:
    """A line of ``log.jsonl``, also echoed and handed to ``on_log`` where the run has them."""
    with open(run.run_dir / "log.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    if run.echo is not None:
        run.echo(record_line(record))
    if run.on_log is not None:
        run.on_log(record)


def _truncate_log(run_dir: Path, step: int) -> None:
    """Drop log lines written after the checkpoint a run resumes from, so the log reads as one run."""
    path = run_dir / "log.jsonl"
    if path.exists():
        keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln).get("step", 0) <= step]
        path.write_text("".join(ln + "\n" for ln in keep))


def write_config(run_dir: Path, cfg: RunConfig, workers: int = 1, parallel: str = "ddp") -> None:
    """``RUN_DIR/config.json``: the resolved config plus the workers, their parallelism (ddp or fsdp) and the
    versions of the tools of this call."""
    record = {**cfg.to_dict(), "workers": workers, "parallel": parallel, "tool_versions": tool_versions(TOOLS)}
    (run_dir / "config.json").write_text(json.dumps(record, indent=2, sort_keys=True))


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)  # noise, timesteps and caption dropout come from this stream


def _batches(packs: list[list[Example]], generators, data: TrainData, cfg: RunConfig,
             device) -> tuple[list[PackedBatch], dict]:
    """Collate each pack, replacing a random share of captions with the empty one (caption dropout, for CFG);
    with the packs' counts (:func:`_pack_counts`, taken before the batches move to ``device``)."""
    out, cpu = [], []
    for pack, gen in zip(packs, generators):
        dropped = torch.rand(len(pack), generator=gen) < cfg.data.caption_dropout
        texts = [data.null_text if d else e.text for e, d in zip(pack, dropped.tolist())]
        cpu.append(collate(pack, pad_multiple=cfg.data.pad_multiple, texts=texts))
        out.append(cpu[-1].to(device))
    return out, _pack_counts(cpu, cfg)


def _pack_counts(batches: list[PackedBatch], cfg: RunConfig) -> dict:
    """Clips, real tokens, computed tokens and model FLOPs (train/throughput.py) of this worker's packs."""
    return {"clips": sum(len(b.clip_ids) for b in batches), "real_tokens": sum(b.real_tokens for b in batches),
            "tokens": sum(int(b.x0.shape[1]) for b in batches),
            "flops": sum(batch_flops(cfg.model, b) for b in batches)}


def _speed(stats: dict, data_s: float, world: int, peak: float | None) -> dict:
    """Log numbers of one step's speed: the step's seconds (data wait + forward + backward + optimizer), real
    tokens/s over all workers, and MFU where the device's peak is known (GPU)."""
    step_s = data_s + stats["forward_s"] + stats["backward_s"] + stats["optimizer_s"]
    record = {"data_s": data_s, "step_s": step_s, "tokens_per_s": stats["real_tokens"] / step_s}
    if peak:
        record["mfu"] = stats["flops"] / (step_s * peak * world)
    return record


def train(out_dir, run_dir, cfg: RunConfig, device: str | torch.device | None = None,
          echo: Callable[[str], None] = print, use_encodings: bool = True, rank: int = 0,
          world: int = 1, parallel: str = "ddp", on_step: Callable[[int, int, int], None] | None = None,
          echo_log: bool = True, prefetch: bool | None = None,
          on_log: Callable[[dict], None] | None = None, lock: bool = True) -> TrainResult:
    """Train (or resume) a run from the manifests in ``out_dir`` (one OUT or a list); see the module docstring.

    ``rank``/``world``: this worker among ``world`` workers (``train/pipeline.py`` launches them on Ray Train),
    data-parallel by ``parallel`` (``ddp``, or ``fsdp`` sharding the model: train/parallel.py); worker 0 writes
    the config, logs and checkpoints. ``on_step(steps_done, clips, real_tokens)`` is called by worker 0 after
    every step with this worker's counts (live progress: train/progress.py). ``echo_log=False``: log records go
    to ``log.jsonl`` only, not through ``echo`` (a Ray Train worker whose driver shows that file's lines).
    ``prefetch``: prepare the next step's data in a background thread (:class:`_Prefetch`; the same steps and
    numbers either way); None: when that thread has a core of its own (:func:`auto_prefetch`, one worker).
    ``on_log(record)``: called by worker 0 with each record it logs (a Ray Train driver's live view of a run
    in a bucket, whose ``log.jsonl`` is uploaded with each checkpoint only: train/rundir.py). ``lock``: worker 0
    holds RUN's one-writer lock (``rushes.manifests.lock.writer_lock``) while it trains; False: the caller holds it
    (the Ray Train driver, for the whole job).
    """
    _check_workers(cfg.data.packs_per_step, world)
    dp.check_parallel(parallel)
    where = rundir.location(run_dir)
    # worker 0 writes RUN: a second trainer on it is refused at once, naming this one (a lease in a bucket)
    one_writer = writer_lock(where, "rushes train", "--run") if lock and rank == 0 else contextlib.nullcontext()
    with one_writer, rundir.working_copy(where) as local:  # RUN itself, or a local copy of a bucket RUN
        local.mkdir(parents=True, exist_ok=True)
        run = _start(out_dir, where, local, cfg, torch.device(device) if device else default_device(), echo,
                     use_encodings, rank, world, parallel, on_step, echo_log, prefetch, on_log)
        try:  # each step takes the next packs_per_step packs of one global order; this worker trains its share
            with _Prefetch(lambda step: _prepare(run, step), run.result.step, run.cfg.train.steps,
                           run.prefetch) as ahead:  # the next step's data
                for step in range(run.result.step, run.cfg.train.steps):
                    _run_step(run, step, ahead)
        except BaseException:  # the run failed: its last upload still ends (logged if it fails too)
            _close_run(run, failed=True)
            raise
        _close_run(run, failed=False)  # after the data thread stopped: open shards, the last upload
    if run.lead:
        _record_summary(out_dir, where, run.result, world, parallel, run.data.encodings)
    return run.result


def _start(out_dir, where, run_dir: Path, cfg: RunConfig, device: torch.device, echo, use_encodings: bool,
           rank: int, world: int, parallel: str, on_step, echo_log: bool, prefetch: bool | None, on_log) -> _Run:
    """Data, model, optimizer and the resumed state of :func:`train` in the local folder ``run_dir`` (``where``:
    RUN as the user named it, a folder or a bucket URI)."""
    tc, lead = cfg.train, rank == 0

    # 1. Data: encodings streamed from shards, or clips decoded once into the cache; validation clips held out.
    data = load_train_data(out_dir, run_dir, cfg, device, use_encodings)
    if lead:
        _record_data(run_dir, data)

    # 2. Model, EMA and optimizer; the config is resolved against the data (channels, text width).
    cfg = replace(cfg, model=replace(cfg.model, in_channels=data.channels, text_dim=data.text_dim))
    if lead:
        write_config(run_dir, cfg, world, parallel)
    generator = seed_everything(tc.seed)
    net, ema = _model_and_ema(cfg, device)
    model = dp.wrap(net, ema, device, world, parallel)  # DDP, or net and ema sharded in place (FSDP)
    # fused: one kernel over all tensors (on CPU ~4x faster than foreach for the tiny preset's 66 tensors)
    optimizer = torch.optim.AdamW(net.parameters(), lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay,
                                  fused=True)

    # 3. Resume: weights, EMA, optimizer, data position and every random stream.
    start = _resume(run_dir, where, net, ema, optimizer, generator, data, lead, echo)
    result = TrainResult(str(where), start, start, num_clips=data.num_clips,
                         skipped=len(data.skipped), parameters=count_parameters(net))
    prefetch = auto_prefetch(device, 1) if prefetch is None else prefetch
    echo(f"training {result.parameters:,} parameters on {data.num_train} clips ({len(data.val_set)} validation, "
         f"{len(data.skipped)} skipped{', from ' + data.encodings if data.encodings else ''}) on {device} with "
         f"{world} worker(s) ({parallel}, data thread {'on' if prefetch else 'off'}), steps {start} -> {tc.steps}")
    return _Run(run_dir, where, cfg, device, rank, world, parallel, data, model, net, ema, optimizer, generator,
                result, lead, echo if echo_log else None, on_step if lead else None, prefetch, on_log,
                rundir.Uploads(run_dir, where, active=lead))


def _close_run(run: _Run, failed: bool) -> None:
    """Close the data source (the shards a window still has open) and wait for the last upload, both whatever
    the other does; when the run ``failed`` their errors are logged, not raised, so they never hide its own."""
    errors = []
    for close in (run.data.source.close, run.uploads.close):
        try:
            close()
        except Exception as exc:
            if failed:
                log.exception("while stopping a failed run")
            errors.append(exc)
    if errors and not failed:
        raise errors[0]


@dataclass
class _Run:
    """What every step of :func:`train` uses; only the ``lead`` (worker 0) logs, through ``echo`` (None: to
    ``log.jsonl`` only) and ``on_step``."""

    run_dir: Path  # the local folder the run works in
    where: str | Path  # RUN as named: that folder, or the bucket URI it is a working copy of (train/rundir.py)
    cfg: RunConfig
    device: torch.device
    rank: int
    world: int
    parallel: str
    data: TrainData
    model: torch.nn.Module  # what the loss calls: net itself, DDP over it, or net sharded (FSDP)
    net: torch.nn.Module
    ema: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    result: TrainResult
    lead: bool
    echo: Callable[[str], None] | None
    on_step: Callable[[int, int, int], None] | None
    prefetch: bool
    on_log: Callable[[dict], None] | None  # each record worker 0 logs (a bucket run's live view on Ray Train)
    uploads: rundir.Uploads  # worker 0's checkpoint uploads to a bucket RUN, beside the training


@dataclass
class _StepData:
    """One step's share of this worker: packs, their random streams and batches, and the data position after
    them (what a checkpoint of this step saves)."""

    packs: list[list[Example]]
    generators: list[torch.Generator]
    batches: list[PackedBatch]
    counts: dict  # this worker's (_pack_counts)
    position: dict


def _prepare(run: _Run, step: int) -> _StepData:
    """This worker's packs of ``step`` (collated, caption dropout applied) and the data position after them."""
    tc, dc = run.cfg.train, run.cfg.data
    packs = run.data.source.next_packs(dc.packs_per_step, run.rank, run.world)
    position = run.data.source.state_dict()
    generators = [pack_generator(tc.seed, step, run.rank + i * run.world) for i in range(len(packs))]
    return _StepData(packs, generators, *_batches(packs, generators, run.data, run.cfg, run.device), position)


def auto_prefetch(device: torch.device, workers_on_node: int) -> bool:
    """Whether a data thread (:class:`_Prefetch`) speeds a worker up: on a GPU always (the CPU would wait for the
    kernels); on CPU only when this node has a core for it beside every worker's torch threads. Threads that
    fill the cores do the data work themselves instead: one process with 2 torch threads on 2 cores trained at
    0.45-0.51x with the thread (it preempts one of the intra-op threads every op waits for), and two DDP
    workers on 2 cores at a median 604 against 654 samples/s without it (the thread takes the core of the
    other worker's main thread, the one the all-reduce then waits for; docs/benchmarks.md, bench/stream.py)."""
    if torch.device(device).type == "cuda":
        return True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return workers_on_node * (torch.get_num_threads() + 1) <= cores


class _Prefetch:
    """Prepares step ``s + 1``'s data in a background thread while step ``s`` trains: reading shards, decoding
    rows and collating no longer stop the step (on CPU the thread fills the moments a worker waits for the
    others; on GPU it runs beside the kernels). Steps are prepared in order, one at a time, so the data and
    every random stream are what a sequential loop gives. ``enabled=False``: each step prepares its own data."""

    def __init__(self, prepare: Callable[[int], _StepData], start: int, stop: int, enabled: bool = True):
        from concurrent.futures import ThreadPoolExecutor

        self.prepare, self.stop = prepare, stop
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="rushes-train-data") if enabled else None
        self.pending = self.pool.submit(prepare, start) if enabled and start < stop else None

    def __enter__(self) -> _Prefetch:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def take(self, step: int) -> _StepData:
        """Step ``step``'s data (waiting for it if it is not ready), and start preparing the next step's."""
        if self.pool is None:
            return self.prepare(step)
        ready = self.pending.result()
        self.pending = self.pool.submit(self.prepare, step + 1) if step + 1 < self.stop else None
        return ready


def _run_step(run: _Run, step: int, ahead: _Prefetch) -> None:
    """One step of :func:`train`: this worker's packs, the optimisation step, then log, validation and
    checkpoint when due (under FSDP both are collective: every worker takes part)."""
    tc, data, lead = run.cfg.train, run.data, run.lead
    watch, cpu = Stopwatch(run.device), time.process_time()
    ready = ahead.take(step)
    data_s = watch.lap()  # the wait for data: preparing it ran beside the previous step
    stats = train_step(run.model, run.ema, run.optimizer, ready.batches, ready.generators, run.cfg, step, run.world,
                       ready.counts)
    stats["cpu_s"] = time.process_time() - cpu  # well below step_s: this worker waited (for a core or a peer)
    run.result.losses.append(stats["loss"])
    run.result.step = done = step + 1
    if run.on_step is not None:
        run.on_step(done, ready.counts["clips"], ready.counts["real_tokens"])  # this worker's
    if lead and (done % tc.log_every == 0 or step == run.result.start_step or done == tc.steps):
        _append_log(run, {"step": done, **stats, "workers": run.world, "parallel": run.parallel,
                          **_speed(stats, data_s, run.world, peak_flops(run.device))})
    sharded = run.parallel == "fsdp"  # validation and checkpoints are collective: every worker takes part
    if (lead or sharded) and data.val_set and (done % tc.val_every == 0 or done == tc.steps):
        _validate(run, done)
    if (lead or sharded) and (done % tc.checkpoint_every == 0 or done == tc.steps):
        saved = checkpoint.save(run.run_dir, done, run.net, run.ema, run.optimizer, run.generator, ready.position,
                                write=lead)
        if lead:  # a bucket RUN: upload the checkpoint, the log and records, then the marker (train/rundir.py)
            run.uploads.push(saved.name)


def _record_data(run_dir: Path, data: TrainData) -> None:
    """The clips selected (``selection.json``, refusing a resumed run whose clips changed) and skipped."""
    record_selection(run_dir, data.selection)
    with open(run_dir / "skipped.jsonl", "w") as fh:
        fh.writelines(json.dumps(s) + "\n" for s in data.skipped)


def _model_and_ema(cfg: RunConfig, device: torch.device):
    """The model (training mode) and its EMA copy (frozen)."""
    net = build_model(cfg, device).train()
    return net, copy.deepcopy(net).requires_grad_(False).eval()


def _validate(run: _Run, step: int) -> None:
    """Validation loss of the weights and of the EMA at fixed timesteps, kept in the result and logged by the
    lead (an FSDP worker other than 0 takes part in the sharded forward passes only)."""
    val = validation_loss(run.net, run.data.val_set, run.cfg, run.device)
    val_ema = validation_loss(run.ema, run.data.val_set, run.cfg, run.device)
    run.result.val_losses.append((step, val))
    if run.lead:
        _append_log(run, {"step": step, "val_loss": val, "val_loss_ema": val_ema})


def _record_summary(out_dir, run_dir: Path, result: TrainResult, world: int, parallel: str,
                    encodings: str | None) -> None:
    """The ``train`` entry of each OUT's ``summary.json``."""
    for out in out_dirs(out_dir):
        store.update_summary(out, "train", {
            "run_dir": str(run_dir), "step": result.step, "clips": result.num_clips, "skipped": result.skipped,
            "parameters": result.parameters, "workers": world, "parallel": parallel, "encodings": encodings,
            "last_loss": result.losses[-1] if result.losses else None,
            "last_val_loss": result.val_losses[-1][1] if result.val_losses else None})


def _check_workers(packs_per_step: int, world: int) -> None:
    if packs_per_step % world:
        raise ValueError(f"packs_per_step {packs_per_step} does not divide among {world} workers: use a number "
                         f"of workers that divides it (a run keeps its global batch), or a new run with "
                         f"--packs-per-step {world}")


def _resume(run_dir: Path, where, net, ema, optimizer, generator, data: TrainData, lead: bool, echo) -> int:
    """Load the newest checkpoint (weights, EMA, optimizer, data position, RNG states); the step to start at."""
    ckpt = checkpoint.latest(run_dir)
    if ckpt is None:
        return 0
    resumed = checkpoint.load(ckpt, net, ema, optimizer, generator)
    data.source.load_state_dict(resumed.data_state)
    if lead:
        _truncate_log(run_dir, resumed.step)
    echo(f"resumed from {storage.join(where, rundir.CHECKPOINTS, ckpt.name)} at step {resumed.step}")
    return resumed.step
