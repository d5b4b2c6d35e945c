"""``rushes train`` and ``rushes sample``: train a diffusion transformer from a manifest, and sample from it."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from train.config import PRESETS, RunConfig, preset

log = logging.getLogger(__name__)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows real defaults; flags whose default comes from the preset say so themselves."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _by_preset(section: str, name: str) -> str:
    """'preset: tiny 8, small 16, ...' for a config field, so --help states every default."""
    values = [f"{p} {getattr(getattr(fn(), section), name)}" for p, fn in PRESETS.items()]
    return f"(default from the preset: {', '.join(values)})"


def register(subparsers) -> None:
    """Add ``train`` and ``sample`` to the ``rushes`` parser."""
    fmt = _Formatter
    p = subparsers.add_parser(
        "train", formatter_class=fmt,
        help="train a text-to-video diffusion transformer on the captioned, kept clips of OUT",
        description="Train a spacetime-patch diffusion transformer (rectified flow) on the kept clips of OUT that "
                    "have an ok caption. Clips of different sizes are packed into sequences of --batch-tokens. "
                    "Writes RUN/config.json, RUN/log.jsonl, RUN/checkpoints/; rerunning with the same --run "
                    "resumes from its newest checkpoint (its saved config wins; --steps may extend it). "
                    "Preset defaults are shown by --dry-run.")
    p.add_argument("out", metavar="OUT", help="run directory of curate/caption holding videos/, clips/, captions/: a folder or "
                   "s3://bucket/prefix (clips are read through local copies)")
    p.add_argument("--run", required=True, metavar="RUN_DIR", help="where config, logs and checkpoints go")
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                   help="model/data/optimiser sizes: tiny (CPU smoke test) .. xl (GPU cluster)")
    p.add_argument("--steps", type=int, help=f"total optimisation steps {_by_preset('train', 'steps')}")
    p.add_argument("--text-encoder", metavar="ID_OR_PATH",
                   help="transformers id or folder of a T5 encoder or CLIP text model "
                        "(default: google/t5-v1_1-base; e.g. openai/clip-vit-large-patch14)")
    p.add_argument("--vae", metavar="ID_OR_PATH",
                   help="diffusers id or folder of a VAE (AutoencoderKL, AutoencoderKLWan, ...) to train in latent "
                        "space (default: none, pixel space)")
    p.add_argument("--vae-subfolder", metavar="NAME",
                   help="subfolder of --vae holding the VAE, e.g. vae for a pipeline repo (default: none)")
    p.add_argument("--fps", type=float, help=f"frame rate clips are sampled at {_by_preset('data', 'fps')}")
    p.add_argument("--max-frames", type=int, help=f"most frames per clip {_by_preset('data', 'max_frames')}")
    p.add_argument("--clip-tokens", type=int,
                   help=f"token budget of a full-length clip; its frame size is the largest that fits, keeping aspect "
                        f"{_by_preset('data', 'clip_tokens')}")
    p.add_argument("--batch-tokens", type=int, help=f"tokens per packed sequence, per device and step {_by_preset('data', 'batch_tokens')}")
    p.add_argument("--lr", type=float, help=f"peak AdamW learning rate {_by_preset('train', 'lr')}")
    p.add_argument("--caption-dropout", type=float, help="fraction of clips trained with the empty caption, for guidance (default: 0.1)")
    p.add_argument("--seed", type=int, help="seed of the weights, data order, noise and caption dropout (default: 0)")
    p.add_argument("--captioner", help="train on captions of this captioner only (default: newest per clip)")
    p.add_argument("--prompt-version", help="train on captions of this prompt version only")
    p.add_argument("--limit", type=int, help="use at most this many clips, a quick trial (default: all)")
    p.add_argument("--checkpoint-every", type=int, help=f"steps between checkpoints; one is always written last {_by_preset('train', 'checkpoint_every')}")
    p.add_argument("--val-every", type=int, help=f"steps between validation losses on held-out clips {_by_preset('train', 'val_every')}")
    p.add_argument("--log-every", type=int, help=f"steps between log lines {_by_preset('train', 'log_every')}")
    p.add_argument("--device", help="torch device, e.g. cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and clip count, train nothing")
    p.set_defaults(func=run_train)

    s = subparsers.add_parser(
        "sample", formatter_class=fmt, help="generate a video from a trained run for a text prompt",
        description="Sample one clip from the newest checkpoint of RUN_DIR (EMA weights) with Euler steps and "
                    "classifier-free guidance, and write it as an H.264 yuv420p MP4.")
    s.add_argument("run", metavar="RUN_DIR", help="a run directory written by `rushes train`")
    s.add_argument("--prompt", required=True, help="the caption to generate")
    s.add_argument("--frames", type=int, default=8, help="frames to generate (must fit the patch grid)")
    s.add_argument("--size", default="64x64", metavar="HxW", help="height x width in pixels (must fit the patches)")
    s.add_argument("--out", required=True, metavar="VIDEO.mp4", help="output MP4 path")
    s.add_argument("--steps", type=int, help="Euler steps (default: the run's sample_steps, 30)")
    s.add_argument("--guidance", type=float, help="classifier-free guidance scale; 1 disables (default: the run's guidance, 4.0)")
    s.add_argument("--negative-prompt", default="", help="caption guided away from (default: the empty caption)")
    s.add_argument("--seed", type=int, default=0, help="noise seed")
    s.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA weights")
    s.add_argument("--device", help="torch device (default: cuda when available)")
    s.set_defaults(func=run_sample)


def resolve_config(args) -> RunConfig:
    """The preset with the flags applied; a run dir with a config.json keeps its config (resume)."""
    saved = Path(args.run) / "config.json"
    if saved.exists():
        cfg = RunConfig.from_dict(json.loads(saved.read_text()))
        log.info("using the saved config of %s (resume); only --steps and logging flags apply", args.run)
        return cfg.with_overrides(train={"steps": args.steps, "log_every": args.log_every,
                                         "val_every": args.val_every, "checkpoint_every": args.checkpoint_every})
    return preset(args.preset).with_overrides(
        data={"text_encoder": args.text_encoder, "vae": args.vae, "vae_subfolder": args.vae_subfolder, "fps": args.fps, "max_frames": args.max_frames,
              "clip_tokens": args.clip_tokens, "batch_tokens": args.batch_tokens,
              "caption_dropout": args.caption_dropout, "captioner": args.captioner,
              "prompt_version": args.prompt_version, "limit": args.limit},
        train={"steps": args.steps, "lr": args.lr, "seed": args.seed, "log_every": args.log_every,
               "val_every": args.val_every, "checkpoint_every": args.checkpoint_every})


def run_train(args) -> int:
    try:
        cfg = resolve_config(args)
    except ValueError as exc:
        print(f"rushes train: {exc}")
        return 2
    if args.dry_run:
        from train.data import training_clips

        clips = training_clips(args.out, cfg.data.captioner, cfg.data.prompt_version, cfg.data.limit)
        print(cfg.to_json())
        print(f"{len(clips)} captioned kept clip(s) in {args.out}; run dir {args.run}; "
              f"{cfg.train.steps} steps of {cfg.data.batch_tokens} tokens")
        return 0
    from train.loop import train

    result = train(args.out, args.run, cfg, device=args.device)
    print(f"trained steps {result.start_step} -> {result.step}; checkpoints in {Path(args.run) / 'checkpoints'}")
    return 0


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (height, width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {text!r} must look like HEIGHTxWIDTH, e.g. 64x96") from None
    return h, w


def run_sample(args) -> int:
    from train.sample import sample_to_file

    try:
        path = sample_to_file(args.run, args.prompt, args.out, args.frames, parse_size(args.size), steps=args.steps,
                              guidance=args.guidance, seed=args.seed, use_ema=not args.no_ema, device=args.device,
                              negative_prompt=args.negative_prompt)
    except (ValueError, FileNotFoundError) as exc:
        print(f"rushes sample: {exc}")
        return 2
    print(f"wrote {path}")
    return 0
