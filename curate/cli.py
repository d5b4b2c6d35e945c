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

import contextlib
import dataclasses
import functools
import json
import logging
import sys
from dataclasses import dataclass

from rushes import exits, settings, storage
from rushes.curate import config as C
from rushes.settings import check, setting

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    """Add ``rushes curate`` and ``rushes filter`` to the ``rushes`` parser."""
    register_curate(subparsers)
    register_filter(subparsers)


@dataclass(frozen=True)
class CurateRun:
    """Settings of one ``rushes curate`` that are not curate config: the preset, a trial's limit, and the detector
    threshold (one flag for the threshold field of whichever detector runs)."""

    preset: str = setting("default", "named config; 'debug' = short clips and tiny fast encodes for trials",
                          choices=tuple(sorted(C.PRESETS)))
    limit: int | None = setting(None, "process only the first N videos (a quick trial)", ge=1, shown="all")
    threshold: float | None = setting(None, "detector threshold: AdaptiveDetector's adaptive_threshold, "
                                      "ContentDetector's threshold, or TransNetV2's transition probability for "
                                      "transnetv2/hybrid", gt=0, metavar="X",
                                      shown="preset's: adaptive 3.0, content 27, transnetv2/hybrid 0.5")

    def __post_init__(self) -> None:
        check(self)


CURATE = settings.Command(
    "curate", settings.Section("run", CurateRun),
    settings.scratch_section("copies of remote inputs and clips staged for upload, removed after each video"),
    settings.Section("curate", C.CurateConfig, presets=C.PRESETS, title="cuts, clip rules and encoding"),
    settings.Section("ray", C.RayConfig, title="Ray"))


def register_curate(subparsers) -> None:
    """Add ``rushes curate`` to the ``rushes`` parser: its settings' flags come from :data:`CURATE`."""
    p = subparsers.add_parser(
        "curate", help="probe raw footage and cut it into scene clips with Parquet manifests",
        description="Probe every input video, decode it once at low resolution to find scene cuts "
                    "(PySceneDetect) and per-clip scores, encode the clips (H.264), and write "
                    "OUT/videos, OUT/clips, OUT/media, OUT/summary.json. Rerunning the same command "
                    "resumes: videos completed with the same config are skipped.",
        formatter_class=settings.HelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders (searched recursively), quoted globs, or .txt files listing inputs; "
                        "each may be in a bucket (s3://bucket/raw/, 's3://bucket/raw/**/*.mp4', s3://bucket/list.txt); "
                        "credentials and endpoint from the AWS environment (AWS_PROFILE, AWS_ENDPOINT_URL, ...)")
    p.add_argument("--out", required=True,
                   help="run directory for manifests, clips and summary.json: a folder or s3://bucket/prefix")
    p.add_argument("--dry-run", action="store_true",
                   help="list what would be processed (count, total duration, output location) and exit "
                        "(default: off)")
    p.add_argument("--dedup-against", action="append", default=None, metavar="OTHER_OUT",
                   help="also search the clips of this earlier run (a folder or s3://bucket/prefix, read only, "
                        "never written) for near-duplicates: a clip of OUT that repeats one of its clips gets "
                        "duplicate_of and the near_duplicate reject; repeatable. OUT itself is always searched "
                        "(default: none)")
    p.add_argument("--block-hashes", default=None, metavar="FILE",
                   help="PDQ hash list (one 64-hex-digit hash per line; vPDQ's frame,quality,hash,timestamp lines "
                        "work too): clips whose hashes match it are rejected as blocklisted, re-encoded, rescaled "
                        "and trimmed copies included; kept as OUT/config/block_hashes.txt for later runs and "
                        "rushes filter (default: the list OUT already has, if any)")
    CURATE.add_arguments(p)
    p.set_defaults(func=main)


def _check_models(cfg) -> None:
    """Fail before any video is touched when a model the config asks for cannot load (ValueError: exit 2)."""
    if cfg.detector.uses_transnet:
        from rushes.curate.shots import ShotModelError, weights_path

        try:
            weights_path()
        except ShotModelError as exc:
            raise ValueError(str(exc)) from exc
    if cfg.guard.detectors:
        from rushes.curate.guard import missing

        gaps = missing(cfg.guard)
        if gaps:
            raise ValueError(gaps[0])
    scores = cfg.score_config()
    if scores is not None and scores.text_method == "ocr":
        from rushes.curate import ocr

        if not ocr.available():
            raise ValueError(f"--scores ocr needs rapidocr and onnxruntime: pip install 'rushes[quality]' "
                             f"(or pip install {ocr.PACKAGE_PIN} onnxruntime)")


def build_config(args, values: settings.Values | None = None) -> C.CurateConfig:
    """The resolved config: the preset, then the ``--config`` file, then every flag that was given."""
    values = values or settings.resolve(args)
    cfg = values.build("curate", C.preset(values.build("run").preset))
    threshold = values.get("threshold")
    if threshold is not None:
        det = cfg.detector
        try:
            det = dataclasses.replace(det, **{det.threshold_field: threshold})
        except settings.SettingValueError as exc:
            raise values.error("threshold", f"{exc.reason} ({exc.name} of the {det.name} detector)") from None
        cfg = dataclasses.replace(cfg, detector=det)
    return cfg


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
    """Handler of ``rushes curate``: 0 when every video is ok (or skipped, or a duplicate), 1 when some failed
    (counted in the closing line and summary.json), 2 on bad usage or input (:mod:`rushes.exits`)."""
    try:
        values = settings.resolve(args)
        run = values.build("run")
        cfg = build_config(args, values)
        ray_cfg = values.build("ray")
        scratch = values.build("scratch").to_scratch()
    except settings.SettingError as exc:
        return settings.usage_error(args, exc)
    try:
        _check_models(cfg)
        if args.block_hashes is not None:
            from rushes.curate.pdq import Blocklist

            Blocklist.read(args.block_hashes)  # a bad list fails before any video is touched
    except ValueError as exc:
        print(f"rushes curate: {exc}", file=sys.stderr)
        return exits.USAGE
    from rushes.curate.inputs import NoVideoFound, collect_inputs

    if args.dry_run:
        try:
            plan = dry_run(collect_inputs(args.inputs, run.limit, exclude_dir=args.out), args.out, cfg)
        except NoVideoFound as exc:
            print(f"rushes curate: {exc}", file=sys.stderr)
            return exits.USAGE
        print(json.dumps(plan, indent=2))
        return 0
    from rushes.curate.pipeline import run_curate
    from rushes.manifests.lock import LockError
    from rushes.manifests.store import ManifestError

    try:
        cfg = kept_filter(cfg, args.out, given=values.given("filter_preset"))
        summary = run_curate(args.inputs, args.out, cfg, ray_cfg, limit=run.limit, scratch=scratch,
                             dedup_against=args.dedup_against or (), block_hashes=args.block_hashes)
    except (LockError, ManifestError, NoVideoFound) as exc:
        print(f"rushes curate: {settings.explain(exc, '--out')}", file=sys.stderr)
        return exits.USAGE
    print(closing_summary(summary, args.out))
    return exits.finished(failed=summary["videos"]["error"])


def kept_filter(cfg: C.CurateConfig, out: str, given: bool) -> C.CurateConfig:
    """``cfg`` keeping the thresholds ``rushes filter`` applied last to ``out``, unless ``--filter-preset`` was
    ``given`` (then it replaces them); one line says which happens. A run never filtered by hand: ``cfg``."""
    from rushes.curate.filter import last_chosen

    chosen = last_chosen(out) if storage.is_dir(out) else None
    if chosen is None:
        return cfg
    if given:
        log.warning("curate: --filter-preset %s replaces the filter `rushes filter` applied last to %s (preset %s)",
                    cfg.filter_preset, out, chosen.preset)
        return cfg
    log.warning("curate: keeping the filter `rushes filter` applied last to %s (preset %s, its thresholds); pass "
                "--filter-preset to apply another", out, chosen.preset)
    return dataclasses.replace(cfg, filter_preset=chosen.preset, filter_params=chosen.config.to_json())


def closing_summary(summary: dict, out: str) -> str:
    """The closing lines of ``rushes curate``: counts, then the failed videos grouped by reason."""
    v, c = summary["videos"], summary["clips"]
    dups = f", {v['duplicate']} duplicate" if v.get("duplicate") else ""
    lines = [f"curate: {v['ok']} ok / {v['error']} failed{dups} videos, {c['kept']} kept / {c['total']} clips, "
             f"{summary['kept_s']:.1f} s kept of {summary['footage_s']:.1f} s footage in {summary['wall_s']:.1f} s "
             f"-> {out}/summary.json"]
    if v["error"]:
        from rushes.manifests.store import read

        rows = read(out, "videos").select(["path", "status", "error_stage", "error_message"]).to_pylist()
        lines += ["failed videos by reason (the videos manifest has each one's error_stage and error_message):",
                  *exits.failure_lines((f"{r['error_stage']}: {r['error_message']}", r["path"])
                                       for r in rows if r["status"] == "error")]
    return "\n".join(lines)


@functools.cache
def _filter_command() -> settings.Command:
    """The settings of ``rushes filter``: the preset and one flag per :class:`FilterConfig` field."""
    from rushes.curate.filter import PRESETS, FilterConfig

    @dataclass(frozen=True)
    class FilterRun:
        preset: str = setting("default", "named threshold set: " + "; ".join(
            f"{k}: {' '.join(v.__doc__.split())}" for k, v in PRESETS.items()), choices=tuple(sorted(PRESETS)))

        def __post_init__(self) -> None:
            check(self)

    return settings.Command("filter", settings.Section("run", FilterRun),
                            settings.Section("filter", FilterConfig, presets=PRESETS, title="thresholds"))


def register_filter(subparsers) -> None:
    """Add ``rushes filter`` to the ``rushes`` parser: one flag per :class:`FilterConfig` field."""
    p = subparsers.add_parser(
        "filter", help="re-apply thresholds to a clips manifest (seconds, no video decoded)",
        description="Set keep/reject_reason of every clip in OUT/clips from its stored scores, write the "
                    "manifest atomically, record the thresholds in OUT/filter.json and print counts per reason. "
                    "A flag overrides the preset's value; 'none' switches a rule off.",
        formatter_class=settings.HelpFormatter)
    p.add_argument("out", metavar="OUT", help="run directory written by `rushes curate`")
    p.add_argument("--dry-run", action="store_true",
                   help="print the counts without rewriting anything (default: off)")
    p.add_argument("--block-hashes", default=None, metavar="FILE",
                   help="a new PDQ hash list for the blocklisted rule (one hex hash per line, or vPDQ's "
                        "frame,quality,hash,timestamp lines); it replaces OUT/config/block_hashes.txt (default: "
                        "the list OUT has, if any)")
    _filter_command().add_arguments(p)
    p.set_defaults(func=filter_main)


def filter_main(args) -> int:
    """Handler of ``rushes filter``: re-apply thresholds, print counts per reason; 2 on a bad run or value."""
    from rushes.curate.filter import PRESETS, filter_run, format_counts
    from rushes.manifests.lock import LockError, writer_lock
    from rushes.manifests.store import ManifestError

    try:
        values = settings.resolve(args)
        preset = values.build("run").preset
        values.build("filter", PRESETS[preset]())  # a bad value: a usage error naming its flag
    except settings.SettingError as exc:
        return settings.usage_error(args, exc)
    overrides = {path[-1]: value for path, (value, _key) in values.overrides("filter").items()}
    # A folder that is not there is no run: filter_run says so without the lock creating the folder.
    writing = not args.dry_run and storage.is_dir(args.out)
    try:
        with writer_lock(args.out, "rushes filter") if writing else contextlib.nullcontext():
            result = filter_run(args.out, preset=preset, overrides=overrides, dry_run=args.dry_run,
                                block_hashes=args.block_hashes)
    except (LockError, ManifestError, ValueError) as exc:
        print(f"rushes filter: {settings.explain(exc, '--out')}", file=sys.stderr)
        return exits.USAGE
    print(format_counts(result))
    return 0
