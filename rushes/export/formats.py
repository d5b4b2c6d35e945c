"""The format registry of ``rushes export``, and the run that writes a curated format.

Usage::

    kind = source_kind("OUT")                      # "curated", "training" or None
    result = export_curated("OUT", "DEST", ExportConfig(format="webdataset"))
    export_training("RUN", "DEST", ExportConfig(format="diffusers"))

Each :class:`Format` says what it exports from (a curated run's clips, or a training run's weights) and who
writes it: a curated format is a writer class of :mod:`rushes.export.writers`; a training format is a function
``name(run_dir, dest, *, weights, lora)`` named by its module path and imported only when used (``diffusers``:
``rushes.train.export.export_diffusers``), so ``rushes export`` needs no torch for the curated formats and a
missing module is one clear error, exit 2.
"""

from __future__ import annotations

import importlib
import logging
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from rushes import storage
from rushes.export import writers
from rushes.export.clipfiles import clip_files
from rushes.export.dest import Destination, ExportError
from rushes.export.samples import Sample, select_samples

log = logging.getLogger("rushes.export")

CURATED, TRAINING = "curated", "training"


@dataclass(frozen=True)
class Format:
    """One ``--format``: what it exports from, who writes it, and which trainers read it."""

    name: str
    source: str  # CURATED or TRAINING
    writer: type | str  # a writers class (curated) or "module:function" (training, imported when used)
    reads: str


FORMATS = {f.name: f for f in (
    Format("webdataset", CURATED, writers.WebDatasetShards,
           "the webdataset package (WebDataset, wds.WebLoader), video2dataset-style loaders, Open-Sora-style tar "
           "pipelines"),
    Format("folder", CURATED, writers.ClipFolder,
           "finetrainers and the diffusers training scripts for Wan, LTX-Video and CogVideoX (--data_root, "
           "--caption_column prompts.txt --video_column videos.txt)"),
    Format("csv", CURATED, writers.CsvTable, "Open-Sora-style CSV loaders, pandas, Hugging Face datasets"),
    Format("jsonl", CURATED, writers.JsonlTable, "musubi-tuner's JSONL video datasets, Hugging Face datasets"),
    Format("diffusers", TRAINING, "rushes.train.export:export_diffusers",
           "diffusers pipelines (from_pretrained of the folder): the trained transformer as a diffusers model"),
)}


def source_kind(src) -> str | None:
    """``"training"`` for a training run (``config.json`` and ``checkpoints/``), ``"curated"`` for a run with a clips
    manifest, None for neither."""
    if storage.is_file(storage.join(src, "config.json")) and storage.is_dir(storage.join(src, "checkpoints")):
        return TRAINING
    if storage.is_dir(storage.join(src, "clips")):
        return CURATED
    return None


def export_training(src, dest, cfg) -> object:
    """Dispatch a training format (``--format diffusers``) to its function, imported now."""
    fmt = FORMATS[cfg.format]
    module_name, func_name = fmt.writer.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise
        raise ExportError(f"--format {fmt.name} needs {module_name}, which this rushes does not have (it exports "
                          f"a training run as a diffusers folder); update rushes, or export the run's clips from "
                          f"its OUT with --format webdataset|folder|csv|jsonl") from None
    func = getattr(module, func_name, None)
    if func is None:
        raise ExportError(f"--format {fmt.name} needs {module_name}.{func_name}, which this rushes does not have; "
                          f"update rushes")
    return func(src, dest, weights=cfg.weights, lora=cfg.lora)


@dataclass
class ExportResult:
    """What an export wrote: samples selected, exported, and the failures (``{"name", "clip_id", "error"}``)."""

    dest: str
    format: str
    selected: int
    exported: int
    resumed: bool
    failed: list[dict] = field(default_factory=list)
    record: dict = field(default_factory=dict)


def _plan(src, cfg, samples: list[Sample], samples_hash: str, writer) -> dict:
    from rushes.versions import tool_versions

    return {"format": cfg.format, "run": str(src) if storage.is_remote(src) else str(storage.resolve(src)[1]),
            "samples_hash": samples_hash, "caption_field": cfg.caption_field, "where": cfg.where,
            "captioner": cfg.captioner, "prompt_version": cfg.prompt_version, "limit": cfg.limit,
            "shard_size": cfg.shard_size if cfg.format == "webdataset" else None, "spans_only": cfg.spans_only,
            "samples": len(samples), "tool_versions": tool_versions([], ffmpeg=True), **writer.plan(samples, cfg.shard_size)}


def _write_unit(writer, unit: list[Sample], dest: Destination, scratch) -> dict:
    with storage.staging_dir(scratch) as work:
        return writer.write(unit, clip_files(unit, work, scratch), dest, work)


def _write_units(writer, units: list[list[Sample]], dest: Destination, cfg, scratch, total: int) -> dict:
    """Write ``units`` on ``cfg.workers`` threads with a progress bar; returns {sample name: error}."""
    from rushes.progress import CountProgress

    failed: dict[str, str] = {}
    done_before = total - sum(len(u) for u in units)
    pool = ThreadPoolExecutor(max_workers=cfg.resolved_workers())
    try:
        with CountProgress(total=total, unit="clip", desc="export", log=log) as progress:
            progress.update(done=done_before)
            futures = {pool.submit(_write_unit, writer, unit, dest, scratch): unit for unit in units}
            for future in as_completed(futures):
                errors = future.result()
                failed.update(errors)
                progress.update(done=len(futures[future]), failed=len(errors))
    except BaseException:  # Ctrl-C, SIGTERM, a full disk: start no further unit, let the running ones end
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return failed


def _earlier_failures(before: dict) -> dict[str, str | None]:
    """{sample name: error} of an earlier export.json's ``failed`` (read back: anything malformed is skipped)."""
    failed = before.get("failed") if isinstance(before, dict) else None
    if not isinstance(failed, list):
        return {}
    return {f["name"]: f.get("error") if isinstance(f.get("error"), str) else None
            for f in failed if isinstance(f, dict) and isinstance(f.get("name"), str)}


def export_curated(src, dest_root, cfg, scratch=None) -> ExportResult:
    """Export the clips of the curated run ``src`` that ``cfg`` selects into ``dest_root`` (see the module doc);
    raises :class:`ExportError` or ValueError when it cannot start. Resumes an interrupted export of the same plan."""
    selection = select_samples(src, cfg)
    samples = selection.samples
    writer = FORMATS[cfg.format].writer(spans_only=cfg.spans_only)
    dest = Destination(dest_root)
    before = dest.read_plan() or {}
    plan = _plan(src, cfg, samples, selection.samples_hash(), writer)
    earlier = _earlier_failures(before)
    # The earlier failures stay on record until their shards are written again: a rerun stopped half way keeps them.
    resumed = dest.begin({**plan, "failed": [{"name": n, "error": e} for n, e in earlier.items()]})
    units = writer.pending(samples, dest, cfg.shard_size, retry=frozenset(earlier))  # failures are tried again
    failed = _write_units(writer, units, dest, cfg, scratch, len(samples))
    rerun = {s.name for u in units for s in u}
    by_name = {s.name: s for s in samples}
    # A clip that failed in an earlier run and was not written again (spans only) stays on the record.
    for name, error in earlier.items():
        if name in by_name and name not in rerun and name not in failed:
            failed[name] = error or "failed in an earlier run"
    exported = [s for s in samples if s.name not in failed]
    extra = writer.finish(exported, dest)
    failures = [{"name": n, "clip_id": by_name[n].clip.clip_id, "error": e} for n, e in sorted(failed.items())]
    failures += [{"name": None, "clip_id": cid, "error": why} for cid, why in selection.refused]
    record = {**plan, **extra, "exported": len(exported), "failed": failures}
    dest.finish(record)
    return ExportResult(dest.root, cfg.format, len(samples) + len(selection.refused), len(exported), resumed,
                        failures, record)
