"""``rushes train`` and ``rushes sample``: train a diffusion transformer from a manifest, and sample from it."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass

from rushes import exits, settings
from rushes.settings import check, setting
from rushes.train.config import PRESETS, EncodeConfig, RunConfig, TrainConfig, preset
from rushes.train.label import LabelSettings

log = logging.getLogger(__name__)

_PRESET_HELP = "model/data/optimiser sizes: tiny (CPU smoke test) .. xl (GPU cluster)"
# The settings that shape a clip's tensors: set by ``train`` and ``encode`` alike, so both resolve the same key.
SHAPING = ("model.init", "data.text_encoder", "data.text_encoder_subfolder", "data.max_text_tokens", "data.vae",
           "data.vae_subfolder", "data.dtype", "data.fps", "data.max_frames", "data.clip_tokens", "data.captioner",
           "data.prompt_version", "data.include_flagged_captions", "data.caption_level")
# What a resumed run still takes from the command line (its saved config decides the rest).
RESUMABLE = ("train.steps", "train.log_every", "train.val_every", "train.checkpoint_every")


@dataclass(frozen=True)
class TrainRun:
    """Settings of one ``rushes train`` that are not the run's config: the preset, where and how it runs."""

    preset: str = setting("tiny", _PRESET_HELP, choices=tuple(sorted(PRESETS)))
    encodings: bool = setting(True, "decode and encode clips on the fly even when OUT/encodings has (or mismatches) "
                              "encodings; without it `rushes encode` output matching this run's settings is "
                              "streamed", flag="--no-encodings")
    prefetch: str = setting("auto", "prepare the next step's packs in a background thread during this step: on, off, "
                            "or auto: on a GPU, and on CPU when the node has a core for the thread beside the workers' "
                            "torch threads (off when they fill the cores). Losses and checkpoints are the same either "
                            "way", choices=("auto", "on", "off"),
                            consts=(("--no-prefetch", "off", "the same as --prefetch off"),))
    workers: int | None = setting(None, "data-parallel workers under Ray Train (TorchTrainer, DDP; gloo on CPU, NCCL "
                                  "on GPU), on a local Ray or the cluster of --address/$RAY_ADDRESS", ge=1, le=100000,
                                  shown="none, one process, no Ray")
    gpus_per_worker: float = setting(0.0, "GPUs per Ray Train worker; 0 trains on CPU", ge=0, le=64)
    parallel: str = setting("ddp", "how --workers share the model: ddp keeps a whole copy per worker; fsdp (FSDP2) "
                            "shards weights, gradients, optimizer state and EMA per transformer block, for the large "
                            "and xl presets; checkpoints hold whole tensors either way, so a run may switch on resume",
                            choices=("ddp", "fsdp"))
    address: str | None = setting(None, "Ray cluster address for --workers", shown="$RAY_ADDRESS, else a local Ray")
    device: str | None = setting(None, "torch device, e.g. cuda, cuda:1, cpu", shown="cuda when available, else cpu")
    compile: bool = setting(False, "torch.compile each transformer block (one compiled graph shared by all blocks; "
                            "the first steps compile); the same losses within rounding. Meant for a GPU (bench/gpu.py "
                            "measures what it gains)")
    profile_steps: int = setting(0, "time every N-th step phase by phase (data wait, forward, backward, optimizer), "
                                 "synchronising the GPU between phases, and log it; without it a GPU step is never "
                                 "synchronised mid-step and log.jsonl gives its step_s whole", ge=0, le=2**31,
                                 shown="off", metavar="N")
    progress_every: float = setting(10.0, "when stdout is not a terminal, seconds between 'train progress:' lines "
                                    "(steps done of total, samples/s, tokens/s, ETA); a terminal gets a live bar "
                                    "instead", ge=0, le=86400, metavar="SECONDS")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class EncodeRun:
    """Settings of one ``rushes encode`` that are not encode config: the preset, a trial's limit, the cluster."""

    preset: str = setting("tiny", "the training preset whose data settings (and patch size) to encode for",
                          choices=tuple(sorted(PRESETS)))
    limit: int | None = setting(None, "encode at most this many clips in this run", ge=1, shown="all")
    address: str | None = setting(None, "Ray cluster address", shown="$RAY_ADDRESS, else a fresh local Ray")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class SampleSettings:
    """How ``rushes sample`` draws one clip from a trained run."""

    frames: int = setting(8, "frames to generate: a multiple of the time patch, or 1 + a multiple of 4 with a "
                          "causal video VAE", ge=1, le=1024)
    size: str = setting("64x64", "height x width in pixels: multiples of the patch size (times the VAE's "
                        "compression)", metavar="HxW")
    steps: int | None = setting(None, "Euler steps from noise to video", ge=1, le=10000,
                                shown=f"the run's sample_steps, {TrainConfig().sample_steps} unless changed")
    guidance: float | None = setting(None, "classifier-free guidance scale; 1 disables", ge=0, le=100,
                                     shown=f"the run's guidance, {TrainConfig().guidance} unless changed")
    negative_prompt: str = setting("", "caption guided away from", shown="the empty caption")
    solver: str = setting("euler", "sampler: euler (flow-matching Euler steps) or unipc (diffusers' UniPC multistep "
                          "in flow mode, Wan's own sampler: fewer steps)", choices=("euler", "unipc"))
    shift: float | None = setting(None, "timestep shift towards noise (Wan uses 3 at 480p, 5 at 720p)", gt=0, le=100,
                                  shown="the run's resolution shift for the clip's token count")
    fps: float | None = setting(None, "frame rate written into the MP4", gt=0, le=240, shown="the run's training fps")
    num_samples: int = setting(1, "clips per prompt (seeds --seed, --seed + 1, ...); several clips are written as "
                               "NAME-000.mp4, NAME-001.mp4, ... beside --out", ge=1, le=10000)
    dtype: str = setting("auto", "dtype of the transformer and text encoder: auto is bfloat16 on a GPU, float32 on "
                         "CPU", choices=("auto", "float32", "bfloat16", "float16"))
    seed: int = setting(0, "seed of the starting noise; the same seed gives the same video", ge=0, le=2**63 - 1)
    ema: bool = setting(True, "use the raw weights instead of the EMA weights", flag="--no-ema")
    device: str | None = setting(None, "torch device, e.g. cuda, cuda:1, cpu", shown="cuda when available, else cpu")
    image: str | None = setting(None, "animate a still: this image (any size, fitted to --size) is the first frame",
                                metavar="FILE", shown="none, text to video")
    last_image: str | None = setting(None, "this image is the last frame (with or without --image)", metavar="FILE",
                                     shown="none")
    video: str | None = setting(None, "a clip to continue (--extend-s) or edit (--strength), read at the run's fps "
                                "and fitted to --size", metavar="FILE", shown="none")
    extend_s: float | None = setting(None, "continue --video by this many seconds: its last --frames minus these "
                                     "seconds' frames are kept exactly as the output's start", gt=0, le=3600,
                                     shown="none", metavar="S")
    strength: float | None = setting(None, "edit --video (SDEdit): noise it to this level and integrate from there; "
                                     "0 returns it, 1 ignores it", ge=0, le=1, shown="none", metavar="0..1")

    def __post_init__(self) -> None:
        check(self)
        self.inputs  # noqa: B018 - checks the combination of inputs
        self.height_width  # noqa: B018 - parses the size, raising on a bad one

    @property
    def inputs(self):
        """The material the sample starts from (rushes.train.inputs.Inputs), its combination checked."""
        from rushes.train.inputs import InputError, Inputs

        try:
            return Inputs(self.image, self.last_image, self.video, self.extend_s, self.strength).check()
        except InputError as exc:
            raise settings.invalid(self, "video" if self.video or "extend" in str(exc) else "image", str(exc)) \
                from None

    @property
    def height_width(self) -> tuple[int, int]:
        """``size`` as (height, width); each side 1..4096 px."""
        try:
            h, w = (int(v) for v in self.size.lower().split("x"))
        except ValueError:
            raise settings.invalid(self, "size", f"{self.size!r} must look like HEIGHTxWIDTH, e.g. 64x96") from None
        if not (1 <= h <= 4096 and 1 <= w <= 4096):
            raise settings.invalid(self, "size", f"must have both sides in 1..4096 px, got {self.size}")
        return h, w


TRAIN = settings.Command(
    "train", settings.Section("run", TrainRun, title="how it runs"),
    settings.Section("config", RunConfig, presets=PRESETS, title="what it trains"))
ENCODE = settings.Command(
    "encode", settings.Section("run", EncodeRun),
    settings.Section("config", RunConfig, presets=PRESETS, fields=SHAPING, title="what the tensors are"),
    settings.Section("encode", EncodeConfig, title="batching and resources"),
    settings.scratch_section("copies of clip files read from a bucket, each removed after its clip"))
SAMPLE = settings.Command("sample", settings.Section("sample", SampleSettings),
                          settings.Section("label", LabelSettings, title="labels: C2PA manifest, visible mark"))


def register(subparsers) -> None:
    """Add ``train``, ``encode`` and ``sample`` to the ``rushes`` parser."""
    _add_train(subparsers)
    _add_encode(subparsers)
    _add_sample(subparsers)


def _add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train", formatter_class=settings.HelpFormatter,
        help="train a text-to-video diffusion transformer on the captioned, kept clips of OUT (or several OUTs)",
        description="Train a spacetime-patch diffusion transformer (rectified flow) on the kept clips of OUT that "
                    "have an ok caption. Clips of different sizes are packed into sequences of --batch-tokens. "
                    "Writes RUN/config.json, RUN/log.jsonl, RUN/checkpoints/; rerunning with the same --run "
                    "resumes from its newest checkpoint (its saved config wins; --steps may extend it). "
                    "Errors go to stderr with exit status 2.")
    p.add_argument("out", metavar="OUT", nargs="+",
                   help="run directories of curate/caption holding videos/, clips/, captions/: folders or "
                        "s3://bucket/prefix (clip files are decoded from local copies); one or several, a clip in "
                        "several is trained once")
    p.add_argument("--run", required=True, metavar="RUN_DIR",
                   help="where config, logs and checkpoints go: a folder or s3://bucket/prefix (training works "
                        "in a local copy, uploading each checkpoint; nothing needs a shared disk); required; an "
                        "existing run resumes")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved config and clip count, train nothing (default: off)")
    TRAIN.add_arguments(p)
    p.set_defaults(func=run_train)


def _add_encode(subparsers) -> None:
    p = subparsers.add_parser(
        "encode", formatter_class=settings.HelpFormatter,
        help="encode the captioned, kept clips of OUT once for training (writes OUT/encodings/<key>)",
        description="Decode each kept, captioned clip as training plans it, encode it with the VAE (when --vae is "
                    "given) and its caption with the text encoder, on Ray Data (CPU decode tasks feeding encoder "
                    "actors), into Parquet shards under OUT/encodings/<key>/, where <key> hashes every setting "
                    "that shaped them (listed in key.json). `rushes train` with the same settings streams them. "
                    "Reruns skip clips already encoded; failed clips are rows with a reason and are retried.")
    p.add_argument("out", metavar="OUT", help="run directory of curate/caption holding videos/, clips/, captions/: "
                   "a folder or s3://bucket/prefix (clip files are decoded from local copies)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the key folder and how many clips would be encoded, encode nothing (default: off)")
    ENCODE.add_arguments(p)
    p.set_defaults(func=run_encode)


def _add_sample(subparsers) -> None:
    s = subparsers.add_parser(
        "sample", formatter_class=settings.HelpFormatter, help="generate a video from a trained run for a text prompt",
        description="Sample clips from the newest checkpoint of RUN_DIR (EMA weights) with Euler or UniPC steps "
                    "and classifier-free guidance, and write each as an H.264 yuv420p MP4; a Wan run (--init) "
                    "samples as a native one. "
                    "Errors go to stderr with exit status 2.")
    s.add_argument("run", metavar="RUN_DIR", help="a run directory written by `rushes train` (folder or bucket URI)")
    prompt = s.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="the caption to generate; this or --prompts is required (default: none)")
    prompt.add_argument("--prompts", metavar="FILE", help="a text file of captions, one a line (blank lines "
                        "skipped); the model and encoders load once for all (default: none)")
    s.add_argument("--out", required=True, metavar="VIDEO.mp4", help="output MP4 path (required)")
    SAMPLE.add_arguments(s)
    s.set_defaults(func=run_sample)


def resolve_config(args, values: settings.Values | None = None) -> RunConfig:
    """The preset, then the ``--config`` file, then the flags; a run dir with a config.json keeps its config
    (resume), taking only :data:`RESUMABLE` from the command line."""
    from rushes.train import rundir

    values = values or settings.resolve(args)
    run = values.build("run")
    saved = rundir.read_config(args.run)
    if saved is not None:
        cfg = RunConfig.from_dict(saved)
        where = values.get("where")
        if where is not None and where != cfg.data.where:
            raise ValueError(f"{args.run} was started with --where {cfg.data.where!r}; resume it with the same "
                             f"condition (or none), or train a new --run for --where {where!r}")
        init = values.get("init")
        if init is not None and init != cfg.model.init:
            raise ValueError(f"{args.run} was started from --init {cfg.model.init!r}; resume it without --init (or "
                             f"with the same), or train a new --run from {init!r}")
        log.info("using the saved config of %s (resume); only --steps and logging flags apply", args.run)
        return values.build("config", cfg, only=RESUMABLE)
    cfg = with_init(values.build("config", preset(run.preset)), values)
    if not values.given("packs_per_step") and run.workers and run.workers > 1:
        cfg = cfg.with_overrides(data={"packs_per_step": run.workers})
    return cfg


def with_init(cfg: RunConfig, values: settings.Values) -> RunConfig:
    """``cfg`` shaped by ``--init`` (train/wan.py): the model's architecture, and its repo's encoders and caption
    budget for the data settings not given."""
    if not cfg.model.init:
        return cfg
    from rushes.train.wan import INIT_DATA, init_run_config

    return init_run_config(cfg, keep=tuple(k for k in INIT_DATA if values.given(k)))


def shaped_config(args, values: settings.Values | None = None) -> RunConfig:
    """The preset with the settings of :data:`SHAPING` applied (``rushes encode``), shaped by ``--init``."""
    values = values or settings.resolve(args)
    return with_init(values.build("config", preset(values.build("run").preset)), values)


def _fail(command: str, exc: Exception | str) -> int:
    """Print a user error to stderr and return the exit status 2."""
    print(f"rushes {command}: {exc}", file=sys.stderr)
    return exits.USAGE


def run_train(args) -> int:
    from rushes.manifests.lock import LockError
    from rushes.train.encoders import EncoderError

    try:
        values = settings.resolve(args)
        run = values.build("run")
        cfg = resolve_config(args, values)
    except settings.SettingError as exc:
        return settings.usage_error(args, exc)
    except (ValueError, OSError) as exc:  # a resumed run given another --where, an unreadable saved config
        return _fail("train", exc)
    try:
        if args.dry_run:
            _print_plan(args, run, cfg)
            return 0
        if run.parallel != "ddp" and not run.workers:
            raise ValueError(f"--parallel {run.parallel} needs --workers N (Ray Train sets up the process group "
                             f"it shards over); add e.g. --workers 2")
        result = _train_with_progress(args, run, cfg)
    except (ValueError, OSError, EncoderError, LockError) as exc:  # OSError: e.g. a bucket refusing an upload
        return _fail("train", settings.explain(exc, "--run"))
    from rushes import storage

    print(f"trained steps {result.start_step} -> {result.step}; checkpoints in {storage.join(args.run, 'checkpoints')}")
    return 0


def _print_plan(args, run: TrainRun, cfg: RunConfig) -> None:
    """``--dry-run``: the config the run will save as config.json (completed from the encodings or the encoders'
    configs, train/plan.py), the clip selection, and a summary line."""
    from rushes.train.plan import plan_run

    plan = plan_run(args.out, cfg, use_encodings=run.encodings, workers=run.workers or 1, parallel=run.parallel)
    print(plan.config_json())
    print(json.dumps(plan.selection.record, indent=2, sort_keys=True))
    source = f"streamed from {plan.encodings}" if plan.encodings is not None else "decoded on the fly"
    print(f"{len(plan.selection.clips)} captioned kept clip(s) in {', '.join(args.out)} ({source}); run dir "
          f"{args.run}; {cfg.train.steps} steps of {cfg.data.batch_tokens} tokens")


_PREFETCH = {"auto": None, "on": True, "off": False}


def _train_with_progress(args, run: TrainRun, cfg: RunConfig):
    """Train in this process or on Ray Train workers, with live progress on stdout (train/progress.py)."""
    from rushes.train import rundir
    from rushes.progress import StepProgress

    with StepProgress(cfg.train.steps, rundir.latest_step(args.run), every_s=run.progress_every) as progress:
        if run.workers:
            from rushes.train.pipeline import run_train_workers

            return run_train_workers(args.out, args.run, cfg, run.workers, run.gpus_per_worker, run.address,
                                     use_encodings=run.encodings, parallel=run.parallel,
                                     progress=progress, prefetch=_PREFETCH[run.prefetch], compile=run.compile,
                                     profile_steps=run.profile_steps)
        from rushes.train.loop import train

        return train(args.out, args.run, cfg, device=run.device, use_encodings=run.encodings,
                     echo=progress.write, on_step=progress.update, prefetch=_PREFETCH[run.prefetch],
                     compile=run.compile, profile_steps=run.profile_steps)


def run_encode(args) -> int:
    """``rushes encode``: 0 when every clip was encoded, 1 when some failed (grouped by reason on stderr), 2 on bad
    arguments (:mod:`rushes.exits`)."""
    from rushes.manifests.lock import LockError
    from rushes.train.encoders import EncoderError

    try:
        values = settings.resolve(args)
        run = values.build("run")
        cfg = shaped_config(args, values)
        enc = values.build("encode")
        scratch = values.build("scratch").to_scratch()
    except settings.SettingError as exc:
        return settings.usage_error(args, exc)
    except ValueError as exc:  # --init naming no Wan transformer
        return _fail("encode", exc)
    try:
        from rushes.train.pipeline import run_encode as encode

        summary = encode(args.out, cfg, enc, limit=run.limit, address=run.address, dry_run=args.dry_run,
                         scratch=scratch)
    except (ValueError, FileNotFoundError, EncoderError, LockError) as exc:
        return _fail("encode", settings.explain(exc, "--out"))
    print(json.dumps(summary, indent=2, sort_keys=True))
    if args.dry_run:
        return exits.OK
    lines = [f"encode: {summary.get('ok', 0)} ok / {summary.get('error', 0)} failed clips, "
             f"{summary.get('skipped_done', 0)} done before -> {summary['folder']}"]
    if summary.get("error"):
        lines += ["failed clips by reason (each shard row has its error_stage and error_message):",
                  *exits.failure_lines((reason, None) for reason, n in summary.get("error_by_reason", {}).items()
                                       for _ in range(n))]
    print("\n".join(lines), file=sys.stderr)
    return exits.finished(failed=summary.get("error", 0))


def run_sample(args) -> int:
    from rushes.train.encoders import EncoderError
    from rushes.manifests.paths import check_output_path
    from rushes.train.sample import SampleOptions, output_paths, sample_to_files

    try:
        values = settings.resolve(args)
        opts, label = values.build("sample"), values.build("label")
    except settings.SettingError as exc:
        return settings.usage_error(args, exc)
    try:
        prompts = [args.prompt] if args.prompt is not None else _read_prompts(args.prompts)
        paths = output_paths(args.out, len(prompts) * opts.num_samples)
        for path in paths:
            check_output_path(path, args.run)  # never over a checkpoint, a manifest part or a folder
        options = SampleOptions(opts.steps, opts.guidance, opts.shift, opts.solver, opts.negative_prompt)
        paths = sample_to_files(args.run, prompts, args.out, opts.frames, opts.height_width, opts.num_samples,
                                seed=opts.seed, fps=opts.fps, use_ema=opts.ema, device=opts.device, dtype=opts.dtype,
                                options=options, label=label, inputs=opts.inputs)
    except (ValueError, FileNotFoundError, EncoderError) as exc:
        return _fail("sample", exc)
    for path in paths:
        print(f"wrote {path}")
    return 0


def _read_prompts(path: str) -> list[str]:
    """The captions of a prompts file: one a line, blank lines skipped."""
    try:
        with open(path, encoding="utf-8") as fh:
            prompts = [line.strip() for line in fh if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read --prompts {path}: {exc}; give a UTF-8 text file of one prompt a line") from None
    if not prompts:
        raise ValueError(f"--prompts {path} has no prompt; write one caption a line")
    return prompts
