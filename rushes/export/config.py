"""Settings of ``rushes export``: one frozen dataclass whose declared fields are the command's flags
(:mod:`rushes.settings`). Kept apart from the writers so building the command line imports nothing heavy."""

from __future__ import annotations

import os
from dataclasses import dataclass

from rushes.manifests.clips import CAPTION_FIELDS, CAPTION_LEVELS
from rushes.settings import check, invalid, setting

# The formats of rushes.export.formats.FORMATS, listed here so --help needs no import of the writers.
FORMAT_NAMES = ("webdataset", "folder", "csv", "jsonl", "diffusers")


@dataclass(frozen=True)
class ExportConfig:
    """What ``rushes export`` writes, and from which clips."""

    format: str = setting("webdataset", "what to write: webdataset (tar shards of .mp4 + .txt + .json per sample), "
                          "folder (videos/ + prompts.txt + videos.txt, as diffusers' and finetrainers' Wan and LTX "
                          "scripts read), csv or jsonl (videos/ + metadata.csv or metadata.jsonl: path, caption, "
                          "start_s, end_s, fps, width_px, height_px, ...); diffusers exports a training run's "
                          "weights (rushes.train.export)", choices=FORMAT_NAMES)
    where: str | None = setting(None, "SQL condition over the view clips of the kept, captioned clips (every clips "
                                "column, plus caption), as rushes train --where takes it, e.g. "
                                "\"duration_s >= 3 AND motion_mean > 0.01\"", metavar="SQL", shown="every clip")
    caption_field: str = setting("caption", "the captions column exported as each clip's text",
                                 choices=CAPTION_FIELDS)
    caption_level: str = setting("clip", "which captions make samples, as rushes train --caption-level takes them: "
                                 "clip (each clip whole), window (each window of `rushes caption --window-s` as a "
                                 "sample of its own span and caption; a clip without windows whole), or both",
                                 choices=CAPTION_LEVELS)
    include_flagged_captions: bool = setting(False, "also export captions a check flagged (caption_flags: truncated, "
                                             "repetition, refusal, language), as rushes train takes them")
    captioner: str | None = setting(None, "export the captions of this captioner (model id@revision)",
                                    shown="the newest ok caption per clip")
    prompt_version: str | None = setting(None, "export the captions of this prompt version, e.g. dense-v1",
                                         shown="the newest ok caption per clip")
    limit: int | None = setting(None, "export at most this many clips (the first by clip id)", ge=1, shown="all")
    shard_size: int = setting(256, "webdataset: samples per tar shard", ge=1, le=1_000_000,
                              hint="shards of 100 MB to 1 GB stream well")
    spans_only: bool = setting(False, "csv and jsonl: write no clip files; each row's path is the source video and "
                               "start_s/end_s its span there (for trainers that cut clips themselves)")
    workers: int = setting(0, "clips cut or copied at once (threads; each cut is one ffmpeg process); 0 = min(4, "
                           "CPU count)", ge=0, le=256)
    weights: str = setting("ema", "diffusers: which weights of the training run's newest checkpoint to export: the "
                           "EMA copy or the raw trained weights; passed to rushes.train.export",
                           choices=("ema", "raw"))
    lora: str = setting("merge", "diffusers: a LoRA run's adapter, merged into the base weights (merge) or saved "
                        "beside them (separate); passed to rushes.train.export", choices=("merge", "separate"))

    def __post_init__(self) -> None:
        check(self)
        if self.spans_only and self.format not in ("csv", "jsonl"):
            raise invalid(self, "spans_only", f"applies to csv and jsonl only (the {self.format} format holds the "
                          f"clips themselves); drop it or use --format csv")
        if self.where is not None and not self.where.strip():
            raise invalid(self, "where", "is empty; give a SQL condition or leave the flag out")

    def resolved_workers(self) -> int:
        return self.workers or max(1, min(4, os.cpu_count() or 1))
