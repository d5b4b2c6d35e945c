"""``rushes train`` and ``rushes sample``: train a diffusion transformer from a manifest, and sample from it."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from rushes.train.config import PRESETS, EncodeConfig, RunConfig, TrainConfig, preset

log = logging.getLogger(__name__)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults; flags whose default comes from the preset say so themselves."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _by_preset(section: str, name: str) -> str:
    """'(default: 0.1)' when every preset agrees, else '(default from the preset: tiny 8, small 16, ...)'."""
    values = {p: getattr(getattr(fn(), section), name) for p, fn in PRESETS.items()}
    if len(set(values.values())) == 1:
        return f"(default: {next(iter(values.values()))})"
    return f"(default from the preset: {', '.join(f'{p} {v}' for p, v in values.items())})"


def register(subparsers) -> None:
    """Add ``train``, ``encode`` and ``sample`` to the ``rushes`` parser."""
    _add_train(subparsers)
    _add_encode(subparsers)
    _add_sample(subparsers)


def _add_shaping_flags(p) -> None:
    """Flags that shape a clip's tensors, shared by ``train`` and ``encode`` so both resolve the same key."""
    p.add_argument("--text-encoder", metavar="ID_OR_PATH",
                   help="transformers id or folder of a T5 encoder or CLIP text model "
                        f"{_by_preset('data', 'text_encoder')}; e.g. openai/clip-vit-large-patch14")
    p.add_argument("--vae", metavar="ID_OR_PATH",
                   help="diffusers id or folder of a VAE (AutoencoderKL, AutoencoderKLWan, ...) to train in latent "
                        "space (default: none, pixel space)")
    p.add_argument("--vae-subfolder", metavar="NAME",
                   help="subfolder of --vae holding the VAE, e.g. vae for a pipeline repo (default: none)")
    p.add_argument("--fps", type=float, help=f"frame rate clips are sampled at {_by_preset('data', 'fps')}")
    p.add_argument("--max-frames", type=int, help=f"most frames per clip {_by_preset('data', 'max_frames')}")
    p.add_argument("--clip-tokens", type=int,
                   help="token budget of a full-length clip; its frame size is the largest that fits, keeping "
                        f"aspect {_by_preset('data', 'clip_tokens')}")
    p.add_argument("--captioner", help="use captions of this captioner only (default: the newest per clip)")
    p.add_argument("--prompt-version", help="use captions of this prompt version only (default: any)")


def _add_train(subparsers) -> None:
    p = subparsers.add_parser(
        "train", formatter_class=_Formatter,
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
    p.add_argument("--where", metavar="SQL",
                   help="train only on clips whose clips-manifest row satisfies this DuckDB condition, e.g. "
                        "\"motion_mean > 0.01 AND duration_s >= 3\" (columns of the clips manifest, plus caption); "
                        "the selection is recorded in RUN_DIR/selection.json (default: every kept, captioned clip)")
    p.add_argument("--run", required=True, metavar="RUN_DIR",
                   help="where config, logs and checkpoints go: a folder or s3://bucket/prefix (training works "
                        "in a local copy, uploading each checkpoint; nothing needs a shared disk); required; an "
                        "existing run resumes")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                   help="model/data/optimiser sizes: tiny (CPU smoke test) .. xl (GPU cluster)")
    p.add_argument("--steps", type=int, help=f"total optimisation steps {_by_preset('train', 'steps')}")
    _add_shaping_flags(p)
    p.add_argument("--batch-tokens", type=int,
                   help=f"tokens per packed sequence, per device and step {_by_preset('data', 'batch_tokens')}")
    p.add_argument("--lr", type=float, help=f"peak AdamW learning rate {_by_preset('train', 'lr')}")
    p.add_argument("--caption-dropout", type=float,
                   help=f"fraction of clips trained with the empty caption, for guidance "
                        f"{_by_preset('data', 'caption_dropout')}")
    p.add_argument("--seed", type=int,
                   help=f"seed of the weights, data order, noise and caption dropout {_by_preset('train', 'seed')}")
    p.add_argument("--limit", type=int, help="use at most this many clips, a quick trial (default: all)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints; one is always written last "
                                                       f"{_by_preset('train', 'checkpoint_every')}")
    p.add_argument("--val-every", type=int,
                   help=f"steps between validation losses on held-out clips {_by_preset('train', 'val_every')}")
    p.add_argument("--log-every", type=int, help=f"steps between log lines {_by_preset('train', 'log_every')}")
    p.add_argument("--packs-per-step", type=int,
                   help="packed sequences per step over all workers: the global batch is this times --batch-tokens, "
                        "whatever the number of workers (default: the preset's 1, or --workers when given)")
    p.add_argument("--no-encodings", action="store_true",
                   help="decode and encode clips on the fly even when OUT/encodings has (or mismatches) encodings "
                        "(default: off; `rushes encode` output matching this run's settings is streamed)")
    _add_execution_flags(p)
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved config and clip count, train nothing (default: off)")
    p.set_defaults(func=run_train)


_PREFETCH = {"auto": None, "on": True, "off": False}


def _add_execution_flags(p) -> None:
    """Flags of ``rushes train`` that say where and how it runs, not what it trains (not RunConfig fields)."""
    p.add_argument("--prefetch", choices=("auto", "on", "off"), default="auto",
                   help="prepare the next step's packs in a background thread during this step: on, off, or auto: "
                        "on a GPU, and on CPU when the node has a core for the thread beside the workers' torch "
                        "threads (off when they fill the cores). Losses and checkpoints are the same either way "
                        "(default: auto)")
    p.add_argument("--no-prefetch", dest="prefetch", action="store_const", const="off",
                   help="the same as --prefetch off (default: off, i.e. --prefetch decides)")
    p.add_argument("--workers", type=int,
                   help="data-parallel workers under Ray Train (TorchTrainer, DDP; gloo on CPU, NCCL on GPU), on a "
                        "local Ray or the cluster of --address/$RAY_ADDRESS (default: none, one process, no Ray)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray Train worker; 0 trains on CPU")
    p.add_argument("--parallel", choices=("ddp", "fsdp"), default="ddp",
                   help="how --workers share the model: ddp keeps a whole copy per worker; fsdp (FSDP2) shards "
                        "weights, gradients, optimizer state and EMA per transformer block, for the large and xl "
                        "presets; checkpoints hold whole tensors either way, so a run may switch on resume")
    p.add_argument("--address", help="Ray cluster address for --workers (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--device", help="torch device, e.g. cuda, cuda:1, cpu (default: cuda when available, else cpu)")
    p.add_argument("--progress-every", type=float, default=10.0, metavar="SECONDS",
                   help="when stdout is not a terminal, seconds between 'train progress:' lines (steps done of "
                        "total, samples/s, tokens/s, ETA); a terminal gets a live bar instead")


def _add_encode(subparsers) -> None:
    defaults = EncodeConfig()
    p = subparsers.add_parser(
        "encode", formatter_class=_Formatter,
        help="encode the captioned, kept clips of OUT once for training (writes OUT/encodings/<key>)",
        description="Decode each kept, captioned clip as training plans it, encode it with the VAE (when --vae is "
                    "given) and its caption with the text encoder, on Ray Data (CPU decode tasks feeding encoder "
                    "actors), into Parquet shards under OUT/encodings/<key>/, where <key> hashes every setting "
                    "that shaped them (listed in key.json). `rushes train` with the same settings streams them. "
                    "Reruns skip clips already encoded; failed clips are rows with a reason and are retried.")
    p.add_argument("out", metavar="OUT", help="run directory of curate/caption holding videos/, clips/, captions/: "
                   "a folder or s3://bucket/prefix (clip files are decoded from local copies)")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                   help="the training preset whose data settings (and patch size) to encode for")
    _add_shaping_flags(p)
    p.add_argument("--limit", type=int, help="encode at most this many clips in this run (default: all)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="clips per decode task and encoder call")
    p.add_argument("--concurrency", type=int, default=defaults.concurrency,
                   help="encoder actors, each loading the encoders once")
    p.add_argument("--num-gpus", type=float, default=defaults.num_gpus, help="GPUs per encoder actor; 0 runs on CPU")
    p.add_argument("--shard-rows", type=int, default=defaults.shard_rows, help="clips per shard file")
    from rushes import storage

    storage.add_scratch_flags(p, "copies of clip files read from a bucket, each removed after its clip")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a fresh local Ray)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the key folder and how many clips would be encoded, encode nothing (default: off)")
    p.set_defaults(func=run_encode)


def _add_sample(subparsers) -> None:
    s = subparsers.add_parser(
        "sample", formatter_class=_Formatter, help="generate a video from a trained run for a text prompt",
        description="Sample one clip from the newest checkpoint of RUN_DIR (EMA weights) with Euler steps and "
                    "classifier-free guidance, and write it as an H.264 yuv420p MP4. "
                    "Errors go to stderr with exit status 2.")
    s.add_argument("run", metavar="RUN_DIR", help="a run directory written by `rushes train` (folder or bucket URI)")
    s.add_argument("--prompt", required=True, help="the caption to generate (required)")
    s.add_argument("--frames", type=int, default=8,
                   help="frames to generate: a multiple of the time patch, or 1 + a multiple of 4 with a causal "
                        "video VAE")
    s.add_argument("--size", default="64x64", metavar="HxW",
                   help="height x width in pixels: multiples of the patch size (times the VAE's compression)")
    s.add_argument("--out", required=True, metavar="VIDEO.mp4", help="output MP4 path (required)")
    s.add_argument("--steps", type=int, help=f"Euler steps (default: the run's sample_steps, "
                                             f"{TrainConfig().sample_steps} unless changed)")
    s.add_argument("--guidance", type=float, help="classifier-free guidance scale; 1 disables (default: the run's "
                                                  f"guidance, {TrainConfig().guidance} unless changed)")
    s.add_argument("--negative-prompt", default="", help="caption guided away from (default: the empty caption)")
    s.add_argument("--seed", type=int, default=0, help="seed of the starting noise; the same seed gives the same video")
    s.add_argument("--no-ema", action="store_true",
                   help="use the raw weights instead of the EMA weights (default: off, EMA weights)")
    s.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    s.set_defaults(func=run_sample)


def resolve_config(args) -> RunConfig:
    """The preset with the flags applied; a run dir with a config.json keeps its config (resume)."""
    from rushes.train import rundir

    saved = rundir.read_config(args.run)
    if saved is not None:
        cfg = RunConfig.from_dict(saved)
        if args.where is not None and args.where != cfg.data.where:
            raise ValueError(f"{args.run} was started with --where {cfg.data.where!r}; resume it with the same "
                             f"condition (or none), or train a new --run for --where {args.where!r}")
        log.info("using the saved config of %s (resume); only --steps and logging flags apply", args.run)
        return cfg.with_overrides(train={"steps": args.steps, "log_every": args.log_every,
                                         "val_every": args.val_every, "checkpoint_every": args.checkpoint_every})
    packs = args.packs_per_step or (args.workers if args.workers and args.workers > 1 else None)
    return shaped_config(args).with_overrides(
        data={"batch_tokens": args.batch_tokens, "caption_dropout": args.caption_dropout, "limit": args.limit,
              "packs_per_step": packs, "where": args.where},
        train={"steps": args.steps, "lr": args.lr, "seed": args.seed, "log_every": args.log_every,
               "val_every": args.val_every, "checkpoint_every": args.checkpoint_every})


def shaped_config(args) -> RunConfig:
    """The preset with the flags of :func:`_add_shaping_flags` applied."""
    return preset(args.preset).with_overrides(data={
        "text_encoder": args.text_encoder, "vae": args.vae, "vae_subfolder": args.vae_subfolder, "fps": args.fps,
        "max_frames": args.max_frames, "clip_tokens": args.clip_tokens, "captioner": args.captioner,
        "prompt_version": args.prompt_version})


def _fail(command: str, exc: Exception) -> int:
    """Print a user error to stderr and return the exit status 2."""
    print(f"rushes {command}: {exc}", file=sys.stderr)
    return 2


def run_train(args) -> int:
    from rushes.manifests.lock import LockError
    from rushes.train.encoders import EncoderError

    try:
        cfg = resolve_config(args)
        if args.dry_run:
            _print_plan(args, cfg)
            return 0
        if args.parallel != "ddp" and not args.workers:
            raise ValueError(f"--parallel {args.parallel} needs --workers N (Ray Train sets up the process group "
                             f"it shards over); add e.g. --workers 2")
        result = _train_with_progress(args, cfg)
    except (ValueError, OSError, EncoderError, LockError) as exc:  # OSError: e.g. a bucket refusing an upload
        return _fail("train", exc)
    from rushes import storage

    print(f"trained steps {result.start_step} -> {result.step}; checkpoints in {storage.join(args.run, 'checkpoints')}")
    return 0


def _print_plan(args, cfg: RunConfig) -> None:
    """``--dry-run``: the config the run will save as config.json (completed from the encodings or the encoders'
    configs, train/plan.py), the clip selection, and a summary line."""
    from rushes.train.plan import plan_run

    plan = plan_run(args.out, cfg, use_encodings=not args.no_encodings, workers=args.workers or 1,
                    parallel=args.parallel)
    print(plan.config_json())
    print(json.dumps(plan.selection.record, indent=2, sort_keys=True))
    source = f"streamed from {plan.encodings}" if plan.encodings is not None else "decoded on the fly"
    print(f"{len(plan.selection.clips)} captioned kept clip(s) in {', '.join(args.out)} ({source}); run dir "
          f"{args.run}; {cfg.train.steps} steps of {cfg.data.batch_tokens} tokens")


def _train_with_progress(args, cfg: RunConfig):
    """Train in this process or on Ray Train workers, with live progress on stdout (train/progress.py)."""
    from rushes.train import rundir
    from rushes.progress import StepProgress

    with StepProgress(cfg.train.steps, rundir.latest_step(args.run), every_s=args.progress_every) as progress:
        if args.workers:
            from rushes.train.pipeline import run_train_workers

            return run_train_workers(args.out, args.run, cfg, args.workers, args.gpus_per_worker, args.address,
                                     use_encodings=not args.no_encodings, parallel=args.parallel,
                                     progress=progress, prefetch=_PREFETCH[args.prefetch])
        from rushes.train.loop import train

        return train(args.out, args.run, cfg, device=args.device, use_encodings=not args.no_encodings,
                     echo=progress.write, on_step=progress.update, prefetch=_PREFETCH[args.prefetch])


def run_encode(args) -> int:
    """``rushes encode``: exit status 1 when every clip failed, 2 on bad arguments."""
    from rushes.manifests.lock import LockError
    from rushes.train.encoders import EncoderError

    try:
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit {args.limit}: must be >= 1")
        cfg = shaped_config(args)
        enc = EncodeConfig(batch_size=args.batch_size, concurrency=args.concurrency, num_gpus=args.num_gpus,
                           shard_rows=args.shard_rows)
        from rushes import storage
        from rushes.train.pipeline import run_encode as encode

        scratch = storage.Scratch.from_flags(args.scratch, args.scratch_max_gb)
        summary = encode(args.out, cfg, enc, limit=args.limit, address=args.address, dry_run=args.dry_run,
                         scratch=scratch)
    except (ValueError, FileNotFoundError, EncoderError, LockError) as exc:
        return _fail("encode", exc)
    print(json.dumps(summary, indent=2, sort_keys=True))
    if summary.get("encoded") and not summary.get("ok"):
        print(f"rushes encode: every clip failed; see error_stage/error_message in {summary['folder']}",
              file=sys.stderr)
        return 1
    return 0


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (height, width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {text!r} must look like HEIGHTxWIDTH, e.g. 64x96") from None
    return h, w


def run_sample(args) -> int:
    from rushes.train.encoders import EncoderError
    from rushes.train.sample import sample_to_file

    from rushes.manifests.paths import check_output_path

    try:
        check_output_path(args.out, args.run)  # never over a checkpoint, a manifest part or a folder
        path = sample_to_file(args.run, args.prompt, args.out, args.frames, parse_size(args.size), steps=args.steps,
                              guidance=args.guidance, seed=args.seed, use_ema=not args.no_ema, device=args.device,
                              negative_prompt=args.negative_prompt)
    except (ValueError, FileNotFoundError, EncoderError) as exc:
        return _fail("sample", exc)
    print(f"wrote {path}")
    return 0
