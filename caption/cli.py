"""``rushes caption OUT``: dense captions of the kept clips of a curated run.

Heavy imports (torch, transformers, ray) happen inside the handler so ``rushes --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys

from rushes import storage

from rushes.caption.config import DEFAULT_MODEL, PRESETS, RECOMMENDED_GPU_MODEL, CaptionConfig


def _preset_default(name: str) -> str:
    """'(default: from --preset: default 8, debug 4)' for a config field, so --help states every default."""
    values = [f"{p} {getattr(fn(), name)}" for p, fn in PRESETS.items()]
    return f"(default: from --preset: {', '.join(values)})"


def register(subparsers) -> None:
    """Add ``caption`` to the ``rushes`` parser."""
    p = subparsers.add_parser(
        "caption", help="caption kept clips with a vision-language model (writes OUT/captions)",
        description="Caption every kept clip of a curated run with a vision-language model, batched on Ray, "
                    "into OUT/captions/*.parquet. Reruns skip clips already captioned OK by the same model "
                    "revision and prompt version, and retry failed clips. A new --model or --prompt adds new "
                    f"caption rows beside the old ones. On a GPU try --model {RECOMMENDED_GPU_MODEL} "
                    "--num-gpus 1 --batch-size 8.",
        formatter_class=argparse.HelpFormatter)  # each flag states its default itself (most come from the preset)
    p.add_argument("out", metavar="OUT", help="run directory written by 'rushes curate' (reads OUT/clips): "
                   "a folder or s3://bucket/prefix")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="named settings the flags below override (debug = 4 frames, 16 tokens, tiny batches) "
                        "(default: default)")
    p.add_argument("--model", default=None,
                   help=f"hub model id or local folder (save_pretrained output) (default: {DEFAULT_MODEL})")
    p.add_argument("--revision", default=None, help="hub branch, tag or commit (default: the default branch)")
    p.add_argument("--prompt", default=None,
                   help="prompt name or version: dense (one paragraph) or structured (JSON: short and dense "
                        f"caption, camera motion, shot type) {_preset_default('prompt')}")
    p.add_argument("--frames", type=int, default=None, dest="num_frames",
                   help="frames per clip, spread uniformly over the clip; with --fps the cap on frames per clip "
                        f"{_preset_default('num_frames')}")
    p.add_argument("--fps", type=float, default=None,
                   help="sample frames at this rate instead, capped to --frames (at least one frame) "
                        "(default: none, uniform over the clip)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"clips per generate call, halved on out-of-memory {_preset_default('batch_size')}")
    p.add_argument("--concurrency", type=int, default=None,
                   help=f"model actors, each loading the model once {_preset_default('concurrency')}")
    p.add_argument("--num-gpus", type=float, default=None,
                   help=f"GPUs per model actor; 0 runs on CPU {_preset_default('num_gpus')}")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help=f"longest caption in tokens {_preset_default('max_new_tokens')}")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default=None,
                   help="model dtype; auto = bfloat16 on GPU, float32 on CPU (default: auto)")
    p.add_argument("--limit", type=int, default=None, help="caption at most N clips, a quick trial (default: all)")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would run (model, clips to caption, skipped, output) and exit (default: off)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow the model repository's own Python code to run, only for repos you trust "
                        "(default: off)")
    storage.add_scratch_flags(p, "copies of clip files read from a bucket, each removed after its clip")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join: host:port, ray://host:10001, or 'auto' for the one `ray start` "
                        "recorded on this machine (default: $RAY_ADDRESS, else a fresh local Ray)")
    p.set_defaults(func=handle)


def config_from_args(args) -> CaptionConfig:
    """The preset with every flag the user gave applied."""
    overrides = {k: v for k, v in {
        "model": args.model, "revision": args.revision, "prompt": args.prompt, "num_frames": args.num_frames,
        "fps": args.fps, "batch_size": args.batch_size, "concurrency": args.concurrency,
        "num_gpus": args.num_gpus, "max_new_tokens": args.max_new_tokens, "dtype": args.dtype,
    }.items() if v is not None}
    if args.trust_remote_code:
        overrides["trust_remote_code"] = True
    return PRESETS[args.preset](**overrides)


def _error(message: str, code: int = 2) -> int:
    print(f"rushes caption: {message}", file=sys.stderr)
    return code


def handle(args) -> int:
    """Run the caption stage; exit code 1 when every clip failed, 2 on bad arguments."""
    try:
        cfg = config_from_args(args)
        scratch = storage.Scratch.from_flags(args.scratch, args.scratch_max_gb)
    except ValueError as exc:
        return _error(str(exc))
    if args.limit is not None and args.limit < 1:
        return _error(f"--limit {args.limit}: must be >= 1")
    if not storage.is_dir(storage.join(args.out, "clips")):
        return _error(f"{args.out} has no clips manifest (OUT/clips): run 'rushes curate INPUT --out {args.out}' "
                      f"first")
    from rushes.caption.captioner import ModelNotFoundError
    from rushes.caption.pipeline import run
    from rushes.manifests.lock import LockError

    try:
        summary = run(args.out, cfg, limit=args.limit, address=args.address, dry_run=args.dry_run, scratch=scratch)
    except (ModelNotFoundError, LockError) as exc:
        return _error(str(exc))
    print(json.dumps(summary, indent=2, sort_keys=True))
    if not args.dry_run and summary["captioned"] and not summary["ok"]:
        return _error(f"every clip failed; see error_stage/error_message in {args.out}/captions", 1)
    return 0
