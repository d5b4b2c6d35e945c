"""``rushes export``: a curated run's clips and captions in the formats other trainers read.

    rushes export OUT DEST --format webdataset            tar shards: .mp4 + .txt + .json per sample
    rushes export OUT DEST --format folder                videos/ + prompts.txt + videos.txt
    rushes export OUT DEST --format csv --where "duration_s >= 3"
    rushes export RUN DEST --format diffusers             a training run's weights (rushes.train.export)
"""

from __future__ import annotations

import argparse
import sys

from rushes import settings
from rushes.export.config import ExportConfig

EPILOG = """\
Which clips: the kept clips with an ok caption (the newest per clip unless --captioner/--prompt-version choose),
as `rushes train` reads them; --where narrows them with one SQL condition over the view clips (every clips column,
plus caption). Names read <video stem>_<start>-<end> (e.g. beach_12s40-15s90: seconds, 's' for the decimal mark).
Clip files: curate's encoded clip when the run has one, else the span cut from the source with ffmpeg.

DEST is a folder or s3://bucket/prefix. Files appear whole under their final names (written under a _tmp- name,
then renamed); DEST/export.json records the export and says "complete": true when it finished. A rerun of the
same command continues an interrupted export; a different export into the same DEST is refused.

exit status: 0 every clip exported; 1 finished, but some clips failed (listed in export.json); 2 bad usage or input.

examples:
  rushes export OUT exports/wds --format webdataset --shard-size 512
  rushes export OUT exports/wan --format folder --where "duration_s >= 3 AND motion_mean > 0.01"
  rushes export OUT exports/meta --format jsonl --caption-field caption_short
  rushes export OUT s3://bucket/exports/a --format csv --spans-only
"""

EXPORT = settings.Command("export", settings.Section("export", ExportConfig))


class _Formatter(settings.HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Flags state their defaults; the epilog keeps its lines."""


def register(subparsers) -> None:
    """Add ``export`` to the ``rushes`` parser."""
    p = subparsers.add_parser(
        "export", help="write a curated run's clips and captions as WebDataset shards, a folder, CSV or JSONL "
                       "(or a training run as a diffusers folder)",
        description="Export the kept, captioned clips of a run into what other trainers read.",
        epilog=EPILOG, formatter_class=_Formatter)
    p.add_argument("run_dir", metavar="OUT", help="run directory written by `rushes curate` and `rushes caption` "
                   "(a folder or s3://bucket/prefix); with --format diffusers, a training run (rushes train --run)")
    p.add_argument("dest", metavar="DEST", help="where to write the export: a new or empty folder, or "
                   "s3://bucket/prefix; rerunning the same export into it continues it")
    EXPORT.add_arguments(p)
    p.set_defaults(func=run_export)


def _error(message: str) -> int:
    print(f"rushes export: {message}", file=sys.stderr)
    return 2


def _check_source(src, cfg: ExportConfig) -> str | None:
    """Why ``src`` cannot give ``cfg.format``, or None."""
    from rushes import storage
    from rushes.export.formats import CURATED, FORMATS, source_kind

    if not storage.is_dir(src):
        return f"{src} does not exist; pass the OUT folder of `rushes curate` (or a training RUN for diffusers)"
    kind, wanted = source_kind(src), FORMATS[cfg.format].source
    if kind is None:
        return f"{src} is neither a curated run (no clips/ manifest) nor a training run (no config.json and " \
               f"checkpoints/); pass the OUT folder of `rushes curate`"
    if kind != wanted and wanted == CURATED:
        return f"{src} is a training run: --format {cfg.format} exports a curated run's clips; pass the OUT it " \
               f"trained on (its selection.json lists them), or use --format diffusers for its weights"
    if kind != wanted:
        return f"{src} is a curated run: --format {cfg.format} exports a training run's weights; pass the --run " \
               f"folder of `rushes train`, or use --format webdataset|folder|csv|jsonl for the clips"
    return None


def run_export(args) -> int:
    """Handler of ``rushes export``: 0 all exported, 1 some clips failed, 2 bad usage or input."""
    from rushes import storage
    from rushes.export.dest import ExportError
    from rushes.export.formats import TRAINING, FORMATS, export_curated, export_training
    from rushes.manifests.lock import LockError, writer_lock

    try:
        cfg = settings.resolve(args).build("export")
    except settings.SettingError as exc:
        return settings.usage_error(args, exc)
    src, dest = args.run_dir, args.dest
    problem = _check_source(src, cfg)
    if problem:
        return _error(problem)
    if not storage.is_remote(src) and not storage.is_remote(dest) and \
            storage.resolve(src)[1] == storage.resolve(dest)[1]:
        return _error(f"DEST {dest} is the run directory itself; export into another folder")
    try:
        if FORMATS[cfg.format].source == TRAINING:
            export_training(src, dest, cfg)
            print(f"exported {src} as {cfg.format} into {dest}")
            return 0
        with writer_lock(dest, "rushes export"):
            result = export_curated(src, dest, cfg)
    except LockError as exc:
        return _error(settings.explain(exc, "DEST"))
    except (ExportError, ValueError) as exc:  # a bad --where, no captioned clip, a DEST holding another export
        return _error(str(exc))
    _report(result)
    return 1 if result.failed else 0


def _report(result) -> None:
    where = result.record.get("urls")
    n = result.record.get("shards")
    shards = f" ({n} shard{'s' if n != 1 else ''}: {result.dest}/{where})" if where else ""
    again = " (continued an earlier run)" if result.resumed else ""
    print(f"exported {result.exported} of {result.selected} clips as {result.format} into {result.dest}{shards}"
          f"{again}")
    if result.failed:
        reasons: dict[str, int] = {}
        for f in result.failed:
            reasons[f["error"].split(": ", 1)[-1]] = reasons.get(f["error"].split(": ", 1)[-1], 0) + 1
        for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
            print(f"  {n} failed: {reason}", file=sys.stderr)
        print(f"rushes export: {len(result.failed)} clips failed (listed in {result.dest}/export.json); fix them "
              f"and rerun the same command to add them", file=sys.stderr)
