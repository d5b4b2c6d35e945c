"""``rushes caption OUT``: dense captions of the kept clips of a curated run.

Heavy imports (torch, transformers, ray) happen inside the handler so ``rushes --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass

from rushes import exits, settings, storage
from rushes.caption.config import PRESETS, RECOMMENDED_GPU_MODEL, CaptionConfig
from rushes.settings import check, setting

PROMPT_FILE_MAX_BYTES = 64 << 10


@dataclass(frozen=True)
class CaptionRun:
    """Settings of one ``rushes caption`` that are not caption config: the preset, a trial's limit, the cluster."""

    preset: str = setting("default", "named settings the flags below override (debug = 4 frames, 16 tokens, tiny "
                          "batches)", choices=tuple(sorted(PRESETS)))
    limit: int | None = setting(None, "caption at most N clips, a quick trial", ge=1, shown="all")
    address: str | None = setting(None, "Ray cluster to join: host:port, ray://host:10001, or 'auto' for the one "
                                  "`ray start` recorded on this machine", shown="$RAY_ADDRESS, else a fresh local Ray")

    def __post_init__(self) -> None:
        check(self)


CAPTION = settings.Command(
    "caption", settings.Section("run", CaptionRun),
    settings.Section("caption", CaptionConfig, presets=PRESETS, title="captioning"),
    settings.scratch_section("copies of clip files read from a bucket, each removed after its clip"))


def register(subparsers) -> None:
    """Add ``caption`` to the ``rushes`` parser: its settings' flags come from :data:`CAPTION`."""
    p = subparsers.add_parser(
        "caption", help="caption kept clips with a vision-language model (writes OUT/captions)",
        description="Caption every kept clip of a curated run with a vision-language model, batched on Ray, "
                    "into OUT/captions/*.parquet. Reruns skip clips already captioned OK by the same model "
                    "revision and prompt version, and retry failed clips. A new --model or --prompt adds new "
                    f"caption rows beside the old ones. On a GPU try --model {RECOMMENDED_GPU_MODEL} "
                    "--num-gpus 1 --batch-size 8.",
        formatter_class=settings.HelpFormatter)
    p.add_argument("out", metavar="OUT", help="run directory written by 'rushes curate' (reads OUT/clips): "
                   "a folder or s3://bucket/prefix")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would run (model, clips to caption, skipped, output) and exit (default: off)")
    p.add_argument("--prompt-file", metavar="FILE",
                   help="your own prompt text (UTF-8) in place of --prompt's; parsed as --prompt's kind (dense or "
                        "structured JSON); its sha256 goes into the prompt version, e.g. dense-v1+file-1a2b3c4d5e6f "
                        "(default: the built-in text)")
    CAPTION.add_arguments(p)
    p.set_defaults(func=handle)


def config_from_args(args, values: settings.Values | None = None) -> CaptionConfig:
    """The preset, then the ``--config`` file, then every flag the user gave; ``--prompt-file``'s text last."""
    values = values or settings.resolve(args)
    cfg = values.build("caption", PRESETS[values.build("run").preset]())
    path = getattr(args, "prompt_file", None)
    if path:
        try:
            if storage.size(path) > PROMPT_FILE_MAX_BYTES:
                raise OSError(f"it is over {PROMPT_FILE_MAX_BYTES // 1024} KiB, not a prompt")
            text = storage.read_bytes(path).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise settings.SettingError(f"argument --prompt-file: cannot read {path}: {exc}; pass a UTF-8 text "
                                        f"file") from None
        if not text.strip():
            raise settings.SettingError(f"argument --prompt-file: {path} is empty; write your prompt in it")
        cfg = dataclasses.replace(cfg, prompt_text=text.strip())
    return cfg


def _error(message: str, code: int = 2) -> int:
    print(f"rushes caption: {message}", file=sys.stderr)
    return code


def handle(args) -> int:
    """Run the caption stage: 0 when every clip was captioned, 1 when some failed (grouped by reason in the closing
    lines, counted in summary.json), 2 on bad arguments (:mod:`rushes.exits`)."""
    try:
        values = settings.resolve(args)
        run_cfg = values.build("run")
        cfg = config_from_args(args, values)
        scratch = values.build("scratch").to_scratch()
    except settings.SettingError as exc:
        return settings.usage_error(args, exc)
    if not storage.is_dir(storage.join(args.out, "clips")):
        return _error(f"{args.out} has no clips manifest (OUT/clips): run 'rushes curate INPUT --out {args.out}' "
                      f"first")
    from rushes.caption.captioner import ModelNotFoundError
    from rushes.caption.engine import EngineUnavailableError
    from rushes.caption.pipeline import run
    from rushes.manifests.lock import LockError

    try:
        summary = run(args.out, cfg, limit=run_cfg.limit, address=run_cfg.address, dry_run=args.dry_run,
                      scratch=scratch)
    except (ModelNotFoundError, LockError, EngineUnavailableError) as exc:
        return _error(settings.explain(exc, "--out"))
    print(json.dumps(summary, indent=2, sort_keys=True))
    if args.dry_run:
        return exits.OK
    print(closing_summary(args.out, summary), file=sys.stderr)
    return exits.finished(failed=summary["error"])


def closing_summary(out: str, summary: dict) -> str:
    """``caption: 11 ok / 2 failed clips ...``, then the failed clips of this captioner grouped by reason."""
    lines = [f"caption: {summary['ok']} ok / {summary['error']} failed clips, {summary['skipped_done']} done before "
             f"-> {storage.join(out, 'captions')}"]
    if summary["error"]:
        import pyarrow.compute as pc

        from rushes.manifests.store import read

        caps = read(out, "captions")
        mine = pc.and_(pc.equal(caps.column("captioner"), summary["captioner"]),
                       pc.equal(caps.column("prompt_version"), summary["prompt_version"]))
        failed = caps.filter(pc.and_(mine, pc.equal(caps.column("status"), "error")))
        rows = failed.select(["clip_id", "error_stage", "error_message"]).to_pylist()
        lines += ["failed clips by reason (OUT/captions has each one's error_stage and error_message):",
                  *exits.failure_lines((f"{r['error_stage']}: {r['error_message']}", r["clip_id"]) for r in rows)]
    return "\n".join(lines)
