"""The training loop, readable top to bottom: a planned run -> packed clips -> DiT -> checkpoints.

Use::

    from rushes.train.config import preset
    from rushes.train.loop import train
    result = train("OUT", "runs/tiny", preset("tiny"))      # resumes when runs/tiny has a checkpoint
    result = train("OUT", "runs/tiny", preset("tiny"), echo=log.info, prefetch=False)   # TrainOptions fields

:func:`train` plans the run first (train/plan.py: the clips, the encodings streamed and the complete config,
exactly what ``rushes train --dry-run`` prints), then builds a :class:`Trainer` from its typed parts (the run's
records and log, the data, the model with its EMA, the optimizer, the checkpoints) and calls
:meth:`Trainer.fit`. The step functions follow the parts.

Writes ``RUN_DIR/config.json`` (:meth:`rushes.train.plan.RunPlan.config_record`: resolved config and tool
versions), ``RUN_DIR/log.jsonl`` (one JSON line per logged step: loss, clips, tokens, model FLOPs, real
tokens/s, the step's seconds split into data wait, forward, backward and optimizer, and MFU on a GPU; one line
per validation), ``RUN_DIR/skipped.jsonl`` (clips that failed to decode), ``RUN_DIR/checkpoints/`` and a
``train`` entry in ``OUT/summary.json``; stdout echoes the log lines.

Data come from ``OUT/encodings/<key>`` when ``rushes encode`` wrote encodings with this run's settings
(streamed, :mod:`rushes.train.stream`), else every clip is decoded and encoded once into ``RUN_DIR/cache``. With
``world`` > 1 (``train/pipeline.py`` starts the workers on Ray Train) the model is wrapped in DDP (or sharded
with FSDP2, ``parallel="fsdp"``: train/parallel.py) and each worker trains its share of every step's
``packs_per_step`` packs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
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
from rushes.manifests.clips import KeptClip
from rushes.manifests.lock import writer_lock
from rushes.progress import record_line
from rushes.train import checkpoint, rundir
from rushes.train import parallel as dp
from rushes.train.conditioning import pack_cond, task_rng
from rushes.train.config import RunConfig, TrainConfig
from rushes.train.data import Example, Prepared, prepare, split_validation
from rushes.train.diffusion import training_loss
from rushes.train.encoders import text_encoder_of, vae_of
from rushes.train.model import DiffusionTransformer, count_parameters
from rushes.train.wan import build_transformer
from rushes.train.packing import PackedBatch, PackLoader, collate, empty_pack, pack_first_fit
from rushes.train.plan import RunPlan, out_dirs, plan_run
from rushes.train.selection import record_selection, select_clips
from rushes.train.stream import PackStream, open_encodings
from rushes.train.throughput import PHASES, Stopwatch, batch_flops, peak_flops

log = logging.getLogger(__name__)


def train(out_dir, run_dir, cfg: RunConfig, options: TrainOptions | None = None, **fields) -> TrainResult:
    """Train (or resume) RUN (``run_dir``: a folder or a bucket URI) on the clips of ``out_dir`` (one OUT or a
    list) that ``cfg`` selects; see the module docstring. ``options``, or its fields as keywords
    (``echo=print, prefetch=False``): how this worker takes part (:class:`TrainOptions`).
    """
    opts = replace(options or TrainOptions(), **fields)
    _check_workers(cfg.data.packs_per_step, opts.world)
    where = rundir.location(run_dir)
    # worker 0 writes RUN: a second trainer on it is refused at once, naming this one (a lease in a bucket)
    one_writer = writer_lock(where, "rushes train") if opts.lock and opts.lead else contextlib.nullcontext()
    with one_writer:
        # the whole config is known before anything trains (what --dry-run printed); OUT is read, RUN not yet
        plan = plan_run(out_dir, cfg, opts.use_encodings, opts.world, opts.parallel)
        with rundir.working_copy(where) as local:  # RUN itself, or a local copy of a bucket RUN
            local.mkdir(parents=True, exist_ok=True)
            result = Trainer(plan, local, where, opts).fit()
    if opts.lead:
        _record_summary(out_dir, where, result, plan)
    return result


class Trainer:
    """One worker's training run, built from typed parts, each from the ones before it:

    - ``log`` (:class:`RunLog`): RUN's records (config.json, selection.json, skipped.jsonl) and its log.jsonl;
    - ``data`` (:class:`TrainData`): the packs of every step and the validation clips;
    - ``model`` (:class:`ModelParts`): the weights, their EMA, and the module the loss calls (DDP, FSDP);
    - ``optimizer``: AdamW over the weights (:func:`build_optimizer`), at the rate :func:`lr_at` gives a step;
    - ``checkpoints`` (:class:`rushes.train.checkpoint.Checkpointer`): resume, save, uploads to a bucket RUN.

    Build it in RUN's local folder ``run_dir`` (``where``: RUN as named, that folder or a bucket URI) from a
    :class:`rushes.train.plan.RunPlan`, as :func:`train` does; :meth:`fit` trains from the step of the newest
    checkpoint to ``cfg.train.steps``. Only the lead (worker 0) writes RUN.
    """

    def __init__(self, plan: RunPlan, run_dir: Path, where, options: TrainOptions):
        self.plan, self.cfg, self.options = plan, plan.cfg, options
        self.device = options.torch_device()
        dp.enable_tf32(self.device)  # what autocast leaves in fp32 runs on tensor cores
        self.log = RunLog(run_dir, options)

        # 1. Data: encodings streamed from shards, or clips decoded once into the cache; validation clips held out.
        self.data = load_train_data(plan, run_dir, self.device)
        _check_dims(self.cfg, self.data, plan.encodings)
        self.log.record_start(plan, self.data)

        # 2. Model, EMA and optimizer, from the seed: a fresh run always starts from the same weights.
        self.generator = seed_everything(self.cfg.train.seed)
        self.model = ModelParts.build(self.cfg, self.device, options.world, options.parallel, options.compile)
        self.optimizer = build_optimizer(self.model.net, self.cfg.train)  # after FSDP sharded the weights

        # 3. Resume: weights, EMA, optimizer, data position and every random stream.
        self.checkpoints = checkpoint.Checkpointer(run_dir, where, options.lead, self.model.net, self.model.ema,
                                                   self.optimizer, self.generator)
        start = self._resume()
        self.result = TrainResult(str(where), start, start, num_clips=self.data.num_clips,
                                  skipped=len(self.data.skipped), parameters=count_parameters(self.model.net),
                                  **self._caption_counts())
        self.prefetch = auto_prefetch(self.device, 1) if options.prefetch is None else options.prefetch
        self.log.say(self._banner())

    def fit(self) -> TrainResult:
        """Train the remaining steps, then close the data source and wait for the last upload. Each step takes
        the next ``packs_per_step`` packs of one global order and this worker trains its share."""
        try:
            with _Prefetch(self._prepare, self.result.step, self.cfg.train.steps,
                           self.prefetch) as ahead:  # the next step's data, prepared while this one trains
                for step in range(self.result.step, self.cfg.train.steps):
                    self._step(step, ahead)
        except BaseException:  # the run failed: its last upload still ends (logged if it fails too)
            self._close(failed=True)
            raise
        self._close(failed=False)  # after the data thread stopped: open shards, the last upload
        return self.result

    def _step(self, step: int, ahead: _Prefetch) -> None:
        """One step: this worker's packs, the optimisation step, then log, validation and checkpoint when due
        (under FSDP both are collective: every worker takes part)."""
        tc, opts = self.cfg.train, self.options
        profiled = bool(opts.profile_steps) and (step + 1) % opts.profile_steps == 0
        watch, cpu = Stopwatch(self.device, sync=profiled), time.process_time()
        ready = ahead.take(step)
        data_s = watch.lap()  # the wait for data: preparing it ran beside the previous step
        stats = train_step(self.model.module, self.model.ema, self.optimizer, ready.batches, ready.generators,
                           self.cfg, step, opts.world, ready.counts, sync=profiled)
        stats["cpu_s"] = time.process_time() - cpu  # well below step_s: this worker waited (for a core or a peer)
        if not math.isfinite(stats["loss"]) or not math.isfinite(stats["grad_norm"]):
            raise Diverged(step + 1, stats)  # every worker sees the same summed loss: all stop here, none saves
        self.result.losses.append(stats["loss"])
        self.result.step = done = step + 1
        self.log.step_done(done, ready.counts)
        if opts.lead and (done % tc.log_every == 0 or step == self.result.start_step or done == tc.steps or profiled):
            speed = _speed(stats, data_s, opts.world, peak_flops(self.device))  # step_s: the whole step, always right
            if self.device.type == "cuda" and not profiled:  # unsynchronised phases would be launch times: left out
                stats = {k: v for k, v in stats.items() if k not in PHASES}
            first = self._caption_counts() if step == 0 else {}  # the run's first line (a resume keeps it)
            self.log.append({"step": done, **stats, "workers": opts.world, "parallel": opts.parallel, **speed,
                             **first})
        takes_part = opts.lead or opts.parallel == "fsdp"  # validation and checkpoints are collective under FSDP
        if takes_part and self.data.val_set and (done % tc.val_every == 0 or done == tc.steps):
            self._validate(done)
        if takes_part and (done % tc.checkpoint_every == 0 or done == tc.steps):
            self.checkpoints.save(done, ready.position)  # worker 0 writes it (and uploads it to a bucket RUN)

    def _prepare(self, step: int) -> _StepData:
        """This worker's packs of ``step`` (collated, caption dropout applied) and the data position after them."""
        rank, world = self.options.rank, self.options.world
        packs = self.data.source.next_packs(self.cfg.data.packs_per_step, rank, world)
        position = self.data.source.state_dict()
        places = [rank + i * world for i in range(len(packs))]  # each pack's place in the step's global list
        generators = [pack_generator(self.cfg.train.seed, step, p) for p in places]
        tasks = [task_rng(self.cfg.train.seed, step, p) for p in places]  # --cond-mix draws: resume draws the same
        return _StepData(packs, generators, *_batches(packs, generators, self.data, self.cfg, self.device, tasks),
                         position)

    def _validate(self, step: int) -> None:
        """Validation loss of the weights and of the EMA at fixed timesteps, kept in the result and logged by the
        lead (an FSDP worker other than 0 takes part in the sharded forward passes only)."""
        val = validation_loss(self.model.net, self.data.val_set, self.cfg, self.device)
        val_ema = validation_loss(self.model.ema, self.data.val_set, self.cfg, self.device)
        self.result.val_losses.append((step, val))
        if self.options.lead:
            self.log.append({"step": step, "val_loss": val, "val_loss_ema": val_ema})

    def _resume(self) -> int:
        """Load the newest checkpoint (weights, EMA, optimizer, data position, RNG states); the step to start at."""
        resumed = self.checkpoints.resume()
        if resumed is None:
            return 0
        self.data.source.load_state_dict(resumed.data_state)
        self.log.truncate(resumed.step)
        self.log.say(f"resumed from {self.checkpoints.location(resumed.name)} at step {resumed.step}")
        return resumed.step

    def _banner(self) -> str:
        data, opts, encodings = self.data, self.options, self.plan.encodings
        return (f"training {self.result.parameters:,} parameters on {data.num_train} clips ({len(data.val_set)} "
                f"validation, {len(data.skipped)} skipped{', from ' + str(encodings) if encodings else ''}) on "
                f"{self.device} with {opts.world} worker(s) ({opts.parallel}, data thread "
                f"{'on' if self.prefetch else 'off'}), steps {self.result.start_step} -> {self.cfg.train.steps}; "
                f"{len(data.over_budget)} of {data.num_clips} captions longer than the "
                f"{self.cfg.data.max_text_tokens}-token budget, cut to it{' (raise --max-text-tokens)' * bool(data.over_budget)}")

    def _caption_counts(self) -> dict:
        """The caption budget and how many captions were cut to it (the run's first log line, summary.json)."""
        return {"caption_token_budget": self.cfg.data.max_text_tokens,
                "captions_over_budget": len(self.data.over_budget)}

    def _close(self, failed: bool) -> None:
        """Close the data source (the shards a window still has open) and wait for the last upload, both whatever
        the other does; when the run ``failed`` their errors are logged, not raised, so they never hide its own."""
        errors = []
        for close in (self.data.source.close, self.checkpoints.close):
            try:
                close()
            except Exception as exc:
                if failed:
                    log.exception("while stopping a failed run")
                errors.append(exc)
        if errors and not failed:
            raise errors[0]


# ---- the parts of a Trainer -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainOptions:
    """How one worker takes part in a run; none of it changes what is trained (the RunConfig does).

    - ``rank`` of ``world`` workers (``train/pipeline.py`` launches them on Ray Train), data-parallel by
      ``parallel`` (``ddp``, or ``fsdp`` sharding the model: train/parallel.py), on ``device`` (None: cuda when
      available, else cpu). Worker 0, the lead, writes the config, logs and checkpoints.
    - ``use_encodings``: stream ``rushes encode`` output made with the run's settings when OUT has it (False:
      decode on the fly). ``prefetch``: prepare the next step's data in a background thread (:class:`_Prefetch`;
      the same steps and numbers either way); None: when that thread has a core of its own (:func:`auto_prefetch`).
    - ``echo``: messages and log lines; ``echo_log=False``: log records go to ``log.jsonl`` only (a Ray Train
      worker whose driver shows that file's lines). ``on_step(steps_done, clips, real_tokens)``: called by the
      lead after every step with its own counts (live progress). ``on_log(record)``: called by the lead with each
      record it logs (a Ray Train driver's live view of a bucket run, whose log is uploaded with checkpoints only).
    - ``lock``: the lead holds RUN's one-writer lock (``rushes.manifests.lock.writer_lock``) while it trains;
      False: the caller holds it (the Ray Train driver, for the whole job).
    - ``compile``: ``torch.compile`` each transformer block (:func:`rushes.train.parallel.compile_blocks`): the
      same numbers within rounding, faster on a GPU after the first steps compile.
    - ``profile_steps``: every N-th step is timed phase by phase (data wait, forward, backward, optimizer) with
      a CUDA synchronisation between phases, and logged; 0 (the default) never synchronises mid-step, and on a
      GPU the log then gives ``step_s`` whole (on CPU the phases are exact anyway and always logged).
    """

    rank: int = 0
    world: int = 1
    parallel: str = "ddp"
    device: str | torch.device | None = None
    use_encodings: bool = True
    prefetch: bool | None = None
    echo: Callable[[str], None] = print
    echo_log: bool = True
    on_step: Callable[[int, int, int], None] | None = None
    on_log: Callable[[dict], None] | None = None
    lock: bool = True
    compile: bool = False
    profile_steps: int = 0

    def __post_init__(self):
        dp.check_parallel(self.parallel)
        dp.torch_device(self.device)  # a device this machine does not have fails here, before any work
        if self.profile_steps < 0:
            raise ValueError(f"profile_steps {self.profile_steps}: use 0 (never) or N > 0 (time every N-th step)")
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} of world {self.world}: a worker's rank must be in [0, world); "
                             f"Ray Train's context gives both (train/pipeline.py)")

    @property
    def lead(self) -> bool:
        """Worker 0: the one that writes RUN."""
        return self.rank == 0

    def torch_device(self) -> torch.device:
        return dp.torch_device(self.device)


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
    caption_token_budget: int | None = None  # max_text_tokens
    captions_over_budget: int = 0  # captions of the set longer than it (cut to it)


class RunLog:
    """A run's records in its local folder, written by the lead alone: ``selection.json``, ``skipped.jsonl``
    and ``config.json`` at the start, then ``log.jsonl`` (a line per logged step or validation), each line
    echoed (unless ``echo_log`` is off) and handed to ``on_log``. Messages of every worker go to ``echo``."""

    def __init__(self, run_dir: Path, options: TrainOptions):
        self.run_dir, self.active = run_dir, options.lead
        self.say: Callable[[str], None] = options.echo
        self.echo = options.echo if options.echo_log else None
        self.on_log = options.on_log
        self.on_step = options.on_step if options.lead else None

    def record_start(self, plan: RunPlan, data: TrainData) -> None:
        """The clips selected (``selection.json``, refusing a resumed run whose clips changed), those skipped,
        and the complete config (``config.json``, what ``rushes train --dry-run`` printed)."""
        if not self.active:
            return
        record_selection(self.run_dir, plan.selection.record)
        with open(self.run_dir / "skipped.jsonl", "w") as fh:
            fh.writelines(json.dumps(s) + "\n" for s in data.skipped)
        (self.run_dir / "config.json").write_text(plan.config_json())

    def append(self, record: dict) -> None:
        """A line of ``log.jsonl``, also echoed and handed to ``on_log`` where the run has them."""
        with open(self.run_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.echo is not None:
            self.echo(record_line(record))
        if self.on_log is not None:
            self.on_log(record)

    def step_done(self, done: int, counts: dict) -> None:
        """Live progress of the lead: steps done, and its own clips and real tokens of the step."""
        if self.on_step is not None:
            self.on_step(done, counts["clips"], counts["real_tokens"])

    def truncate(self, step: int) -> None:
        """Drop log lines written after the checkpoint a run resumes from, so the log reads as one run."""
        path = self.run_dir / "log.jsonl"
        if self.active and path.exists():
            keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln).get("step", 0) <= step]
            path.write_text("".join(ln + "\n" for ln in keep))


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
    over_budget: list[str] = field(default_factory=list)  # ids of clips whose caption was cut to max_text_tokens


def load_train_data(plan: RunPlan, run_dir, device: torch.device) -> TrainData:
    """The clips of ``plan`` (train/plan.py): streamed from its encodings folder, else decoded and encoded once
    into ``RUN_DIR/cache`` (:func:`prepare_clips`)."""
    cfg = plan.cfg
    d, patch = cfg.data, cfg.model.patch_size
    if plan.encodings is None:
        prepared = prepare_clips(plan.selection.clips, run_dir, cfg, device)
        train_set, val_set = split_validation(prepared.examples, d.val_clips)
        return TrainData(PackLoader(train_set, d.batch_tokens, cfg.train.seed, d.image_ratio), val_set, prepared.null_text,
                         prepared.channels, prepared.text_dim, len(prepared.examples), len(train_set),
                         prepared.skipped, prepared.over_budget)
    if d.image_ratio is not None:
        log.warning("--image-ratio applies to clips decoded on the fly; streamed encodings train every still once "
                    "per epoch (pass --no-encodings to mix by the ratio)")
    enc = open_encodings(plan.encodings, plan.selection.clips, patch, d.val_clips, d.max_text_tokens)
    stream = PackStream(plan.encodings, enc.train_ids, patch, d.batch_tokens, d.stream_window, cfg.train.seed)
    return TrainData(stream, enc.val, enc.null_text, enc.channels, enc.text_dim, enc.num_clips, len(enc.train_ids),
                     enc.skipped, enc.over_budget)


def load_data(out_dir, run_dir, cfg: RunConfig, device: torch.device,
              sources: list[KeptClip] | None = None) -> Prepared:
    """Prepare (or read from ``RUN_DIR/cache``) ``sources``, by default the clips of ``out_dir`` (one OUT or
    several) that ``cfg.data`` selects (train/selection.py)."""
    sources = select_clips(out_dirs(out_dir), cfg.data).clips if sources is None else sources
    return prepare_clips(sources, run_dir, cfg, device)


def prepare_clips(sources: list[KeptClip], run_dir, cfg: RunConfig, device: torch.device) -> Prepared:
    """``sources`` decoded and encoded once into ``RUN_DIR/cache`` (read from it when there)."""
    d, dev = cfg.data, str(device)
    return prepare(sources, d, cfg.model.patch_size, Path(run_dir) / "cache", lambda: text_encoder_of(d, dev),
                   lambda: vae_of(d, dev))


@dataclass
class ModelParts:
    """The model as one worker trains it: ``net`` (the weights the optimizer steps and checkpoints hold),
    ``ema`` (their moving average, frozen: what sampling uses) and ``module``, what the loss calls: ``net``
    itself (one worker), DDP over it, or ``net`` sharded in place (FSDP)."""

    net: DiffusionTransformer
    ema: DiffusionTransformer
    module: torch.nn.Module

    @classmethod
    def build(cls, cfg: RunConfig, device: torch.device, world: int, parallel: str,
              compile: bool = False) -> ModelParts:
        net = build_model(cfg, device).train()
        ema = copy.deepcopy(net).requires_grad_(False).eval()
        module = dp.wrap(net, ema, device, world, parallel)  # FSDP shards net and ema in place
        if compile:  # after wrapping: FSDP's and DDP's hooks stay outside the compiled blocks
            dp.compile_blocks(net)
            dp.compile_blocks(ema)
        return cls(net, ema, module)


def build_optimizer(net: torch.nn.Module, tc: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``net``'s parameters (after any sharding: they are the ones it steps)."""
    # fused: one kernel over all tensors (on CPU ~4x faster than foreach for the tiny preset's 66 tensors)
    params = [p for p in net.parameters() if p.requires_grad]  # a LoRA run: the adapters only
    return torch.optim.AdamW(params, lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay, fused=True)


# ---- steps and helpers ------------------------------------------------------------------------------------------


def _check_dims(cfg: RunConfig, data: TrainData, encodings) -> None:
    """The data's widths are those the plan completed the config with (a model of other widths cannot take them)."""
    m = cfg.model
    if (data.channels, data.text_dim) != (m.in_channels, m.text_dim):
        origin = f"the key.json of {encodings}" if encodings else "the encoders' configs"
        raise ValueError(f"the clips have {data.channels} channels and {data.text_dim}-wide caption embeddings, "
                         f"but {origin} gave in_channels {m.in_channels} and text_dim {m.text_dim}: encode again "
                         f"(`rushes encode`), or pass --no-encodings to decode on the fly")


@dataclass
class _StepData:
    """One step's share of this worker: packs, their random streams and batches, and the data position after
    them (what a checkpoint of this step saves)."""

    packs: list[list[Example]]
    generators: list[torch.Generator]
    batches: list[PackedBatch]
    counts: dict  # this worker's (_pack_counts)
    position: dict


def pack_generator(seed: int, step: int, pack: int) -> torch.Generator:
    """The random stream of one pack (caption dropout, timesteps, noise): a function of the seed, the step and
    the pack's place in the step's global pack list, so it is the same whichever worker trains the pack."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, pack]).generate_state(1)[0]))


def build_model(cfg: RunConfig, device: torch.device) -> DiffusionTransformer:
    """The model of a resolved config, seeded so a fresh run always starts from the same weights (those of
    ``--init`` when given: train/wan.py)."""
    torch.manual_seed(cfg.train.seed)
    return build_transformer(cfg.model, device)


def lr_at(step: int, cfg: RunConfig) -> float:
    """Linear warmup to ``lr``, then constant (rectified-flow DiTs train well at a constant rate)."""
    warm = cfg.train.warmup_steps
    return cfg.train.lr * min(1.0, (step + 1) / warm) if warm else cfg.train.lr


class Diverged(ValueError):
    """The loss or the gradient norm of a step is NaN or infinite: the weights are lost from here on, so the run
    stops before it writes them; the last checkpoint on disk is the last good one."""

    def __init__(self, step: int, stats: dict):
        super().__init__(
            f"step {step}: the loss is {stats['loss']} and the gradient norm {stats['grad_norm']}: training diverged. "
            f"The likely cause is the learning rate ({stats['lr']:.3g} at this step) or data with extreme values; "
            f"the last checkpoint written before this step is kept (checkpoints/latest): resume from it with a "
            f"lower learning rate (lr), or check the clips trained last")
        self.step = step


def train_step(model, ema, optimizer, batches: list[PackedBatch], generators: list[torch.Generator],
               cfg: RunConfig, step: int, world: int = 1, counts: dict | None = None, sync: bool = False) -> dict:
    """One optimisation step on this worker's packs: losses, backward, clip, AdamW, EMA. Returns log numbers,
    with the seconds of the forward passes (noise and loss included), the backward passes and the optimizer
    (on CUDA exact only with ``sync``, which synchronises between them; their sum is the step's either way:
    the loss is read back at its end), and ``counts`` (this worker's, :func:`_pack_counts`) summed over the
    workers. The compute runs under :func:`rushes.train.parallel.autocast` (bf16 on CUDA, fp32 on CPU).

    The gradient is the mean over the step's ``packs_per_step`` packs of all workers, whatever their number:
    each pack's loss is scaled by world / packs_per_step and DDP (or FSDP) averages over the workers. The mean
    loss and the counts cross the workers in one asynchronous all-reduce started after the backward passes and
    awaited after the optimizer: under DDP the gradient's reduction is the only point of a step where workers
    wait for each other.
    """
    tc = cfg.train
    watch, seconds = Stopwatch(batches[0].x0.device, sync), {"forward_s": 0.0, "backward_s": 0.0}
    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, cfg)
    optimizer.zero_grad(set_to_none=True)
    scale = world / cfg.data.packs_per_step
    total = torch.zeros((), device=batches[0].x0.device)
    for i, (batch, gen) in enumerate(zip(batches, generators)):
        last = i == len(batches) - 1
        with dp.grad_sync(model, last or world == 1):  # one gradient reduction per step
            with dp.autocast(batch.x0.device):  # bf16 on GPU only; CPU fp32
                loss, _ = training_loss(
                    lambda x_t, t: model(x_t, t, batch.text, batch.text_mask, batch.pos, batch.seq, batch.cond),
                    batch.x0, batch.seq, batch.slot_tokens, gen, tc.timestep_mean, tc.timestep_std,
                    tc.shift_base_tokens, tc.max_shift, cond=batch.cond)
            seconds["forward_s"] += watch.lap()
            (loss * (scale * batch.weight)).backward()
            seconds["backward_s"] += watch.lap()
        total += loss.detach() * (batch.weight / cfg.data.packs_per_step)
    summed = _StepSum(total, counts or {}, world)  # the mean loss over every worker's packs, the counts' sums
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip if tc.grad_clip else float("inf"))
    optimizer.step()
    with torch.no_grad():  # one fused call over all tensors: a per-tensor loop costs more than a tiny model's step
        pairs = [(e, p) for e, p in zip(ema.parameters(), model.parameters()) if p.requires_grad]  # frozen: equal
        torch._foreach_lerp_(dp.local(e for e, _ in pairs), dp.local(p for _, p in pairs), 1.0 - tc.ema_decay)
    loss_value, counts = summed.result()
    packs = counts.pop("packs", None) if counts else None
    if packs:  # the mean over the packs that trained: a stand-in for an all-damaged pack adds 0 and is not counted
        loss_value *= cfg.data.packs_per_step / packs
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
    """Mean loss over held-out clips at the fixed ``val_timesteps`` with fixed noise (comparable across steps),
    computed as training computes (:func:`rushes.train.parallel.autocast`: bf16 on CUDA)."""
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
            with dp.autocast(device):
                _, losses = training_loss(
                    lambda x_t, tt: model(x_t, tt, batch.text, batch.text_mask, batch.pos, batch.seq),
                    batch.x0, batch.seq, batch.slot_tokens, gen, t=t)
            total += float(losses.sum())
            count += losses.numel()
    model.train(was_training)
    return total / max(count, 1)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)  # noise, timesteps and caption dropout come from this stream


def _batches(packs: list[list[Example]], generators, data: TrainData, cfg: RunConfig,
             device, tasks=None) -> tuple[list[PackedBatch], dict]:
    """Collate each pack, replacing a random share of captions with the empty one (caption dropout, for CFG) and
    drawing each clip's conditioning task from ``--cond-mix`` with ``tasks`` (one numpy Generator per pack,
    train/conditioning.py; None: text-to-video only); with the packs' counts (:func:`_pack_counts`, taken before
    the batches move to ``device``)."""
    out, cpu = [], []
    for i, (pack, gen) in enumerate(zip(packs, generators)):
        if not pack:  # every row it drew was damaged (logged by the source): a pass that adds no gradient
            cpu.append(empty_pack(cfg.model.patch_dim, data.null_text, cfg.data.pad_multiple))
            out.append(cpu[-1].to(device))
            continue
        dropped = torch.rand(len(pack), generator=gen) < cfg.data.caption_dropout
        texts = [data.null_text if d else e.text for e, d in zip(pack, dropped.tolist())]
        batch = collate(pack, pad_multiple=cfg.data.pad_multiple, texts=texts)
        if tasks is not None:
            batch.cond = pack_cond(batch.grids, batch.x0.shape[1], cfg.data.cond_mix, tasks[i])
        cpu.append(batch)
        out.append(cpu[-1].to(device))
    return out, _pack_counts(cpu, cfg)


def _pack_counts(batches: list[PackedBatch], cfg: RunConfig) -> dict:
    """Clips, real tokens, computed tokens and model FLOPs (train/throughput.py) of this worker's packs."""
    return {"clips": sum(len(b.clip_ids) for b in batches), "real_tokens": sum(b.real_tokens for b in batches),
            "packs": sum(1 for b in batches if b.weight),  # packs that trained (not empty_pack stand-ins)
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


def _record_summary(out_dir, run_dir, result: TrainResult, plan: RunPlan) -> None:
    """The ``train`` entry of each OUT's ``summary.json``."""
    encodings = str(plan.encodings) if plan.encodings is not None else None
    for out in out_dirs(out_dir):
        store.update_summary(out, "train", {
            "run_dir": str(run_dir), "step": result.step, "clips": result.num_clips, "skipped": result.skipped,
            "caption_token_budget": result.caption_token_budget, "captions_over_budget": result.captions_over_budget,
            "parameters": result.parameters, "workers": plan.workers, "parallel": plan.parallel,
            "encodings": encodings, "last_loss": result.losses[-1] if result.losses else None,
            "last_val_loss": result.val_losses[-1][1] if result.val_losses else None})


def _check_workers(packs_per_step: int, world: int) -> None:
    if packs_per_step % world:
        raise ValueError(f"packs_per_step {packs_per_step} does not divide among {world} workers: use a number "
                         f"of workers that divides it (a run keeps its global batch), or a new run with "
                         f"packs_per_step {world}")
