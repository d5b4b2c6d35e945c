"""The curated formats: how each writes its clips and its index files into a :class:`Destination`.

A format splits the samples into *units*, each written whole or not at all (a clip file; a tar shard), says which
units a destination still lacks (so a rerun continues), and writes its index files last from the samples that
made it. See docs/export.md for each layout and the trainers that read it.

- ``webdataset``: ``shard-000000.tar`` ... , each ``<name>.mp4``, ``<name>.txt`` (the caption) and ``<name>.json``
  (the row below, without ``path``) per sample, ``shard_size`` samples per shard in name order;
- ``folder``: ``videos/<name>.mp4``, ``prompts.txt`` and ``videos.txt`` (line i of one is line i of the other);
- ``csv`` / ``jsonl``: ``videos/<name>.mp4`` and ``metadata.csv`` / ``metadata.jsonl``, one row per clip:
  ``path`` (relative to DEST; with ``--spans-only`` the source video, and no clip files), ``caption``,
  ``start_s``/``end_s`` (the span inside ``path``), ``fps``, ``width_px``, ``height_px``, ``num_frames``,
  ``clip_id``, ``source``, ``source_start_s``/``source_end_s`` (the span in the source video).
"""

from __future__ import annotations

import csv
import io
import json
import os
import tarfile
from pathlib import Path

from rushes.export.clipfiles import ClipFile
from rushes.export.dest import Destination
from rushes.export.samples import Sample

COLUMNS = ("path", "caption", "start_s", "end_s", "fps", "width_px", "height_px", "num_frames", "clip_id", "source",
           "source_start_s", "source_end_s")
# Encoded clips of one batch: files copied (or downloaded) per task; cut spans go one source video per task.
COPY_BATCH = 16


def _r(x):
    return None if x is None else round(float(x), 6)


def exported_size(sample: Sample, cut: bool) -> tuple[int, int]:
    """(width, height) of the file a sample is exported as: curate's clip file as it is; a span cut here is sized
    as curate sizes clips (display size, short side capped, even)."""
    c = sample.clip
    if not cut or sample.copied or not (c.width_px and c.height_px):
        return c.width_px, c.height_px
    from rushes.curate.config import EncodeConfig
    from rushes.curate.encode import output_size

    return output_size(c.width_px, c.height_px, EncodeConfig().max_short_side_px)


def row(sample: Sample, path: str | None, spans_only: bool = False) -> dict:
    """What the index files say of one sample (``COLUMNS``)."""
    c = sample.clip
    w, h = exported_size(sample, cut=not spans_only)
    start, end = (sample.source_start_s, sample.source_end_s) if spans_only else (0.0, c.duration_s)
    return {"path": path, "caption": c.caption, "start_s": _r(start), "end_s": _r(end), "fps": _r(sample.fps),
            "width_px": w, "height_px": h, "num_frames": sample.num_frames, "clip_id": c.clip_id,
            "source": sample.source, "source_start_s": _r(sample.source_start_s), "source_end_s": _r(sample.source_end_s)}


def one_line(text: str | None) -> str:
    """A caption on one line (line-based index files): newlines and tabs read as spaces."""
    return " ".join((text or "").split())


class ClipFolder:
    """Clip files under ``videos/`` plus the format's index files (the base of folder, csv and jsonl)."""

    name = "folder"
    needs_media = True

    def __init__(self, spans_only: bool = False):
        self.spans_only = spans_only

    @staticmethod
    def rel(sample: Sample) -> str:
        return f"videos/{sample.name}.mp4"

    def plan(self, samples: list[Sample], shard_size: int) -> dict:
        return {}

    def pending(self, samples: list[Sample], dest: Destination, shard_size: int,
                retry: frozenset[str] = frozenset()) -> list[list[Sample]]:
        """Units not yet written: the encoded clips in batches, the spans to cut one source video per unit (a clip
        that failed before has no file: it is written again as any missing one)."""
        if self.spans_only:
            return []
        todo = [s for s in samples if not dest.has(self.rel(s))]
        encoded = [s for s in todo if s.copied]
        units = [encoded[i:i + COPY_BATCH] for i in range(0, len(encoded), COPY_BATCH)]
        by_source: dict[str, list[Sample]] = {}
        for s in todo:
            if not s.copied:
                by_source.setdefault(s.clip.path, []).append(s)
        return units + list(by_source.values())

    def write(self, unit: list[Sample], files: dict[str, ClipFile], dest: Destination, workdir: Path) -> dict:
        """Publish each clip file of ``unit``; returns {sample name: error} of those that failed."""
        failed = {}
        for s in unit:
            f = files[s.name]
            if f.error:
                failed[s.name] = f.error
                continue
            dest.put_file(f.path, self.rel(s))
        return failed

    def finish(self, samples: list[Sample], dest: Destination) -> dict:
        """Write the index files of the samples exported (``samples``: those that made it, in name order)."""
        dest.put_text("videos.txt", "".join(f"{self.rel(s)}\n" for s in samples))
        dest.put_text("prompts.txt", "".join(f"{one_line(s.clip.caption)}\n" for s in samples))
        return {"files": ["videos.txt", "prompts.txt", "videos/"]}


class CsvTable(ClipFolder):
    name = "csv"

    def finish(self, samples: list[Sample], dest: Destination) -> dict:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for s in samples:
            writer.writerow(row(s, s.source if self.spans_only else self.rel(s), self.spans_only))
        dest.put_text("metadata.csv", buf.getvalue())
        return {"files": ["metadata.csv"] + ([] if self.spans_only else ["videos/"])}


class JsonlTable(ClipFolder):
    name = "jsonl"

    def finish(self, samples: list[Sample], dest: Destination) -> dict:
        lines = (json.dumps(row(s, s.source if self.spans_only else self.rel(s), self.spans_only),
                            ensure_ascii=False) for s in samples)
        dest.put_text("metadata.jsonl", "".join(f"{line}\n" for line in lines))
        return {"files": ["metadata.jsonl"] + ([] if self.spans_only else ["videos/"])}


class WebDatasetShards:
    """Tar shards of ``shard_size`` samples: ``<name>.mp4``, ``<name>.txt``, ``<name>.json`` each."""

    name = "webdataset"
    needs_media = True

    def __init__(self, spans_only: bool = False):
        pass

    @staticmethod
    def shard_name(index: int) -> str:
        return f"shard-{index:06d}.tar"

    def _shards(self, samples: list[Sample], shard_size: int) -> list[list[Sample]]:
        return [samples[i:i + shard_size] for i in range(0, len(samples), shard_size)]

    def plan(self, samples: list[Sample], shard_size: int) -> dict:
        n = len(self._shards(samples, shard_size))
        last = f"{n - 1:06d}"
        return {"shards": n, "urls": f"shard-{{000000..{last}}}.tar" if n > 1 else self.shard_name(0)}

    def pending(self, samples: list[Sample], dest: Destination, shard_size: int,
                retry: frozenset[str] = frozenset()) -> list[list[Sample]]:
        """Shards not yet written, and shards written without a clip that failed then (``retry``: their names):
        such a shard is written again whole, with the clip if it now succeeds."""
        self._index = {}
        units = []
        for i, shard in enumerate(self._shards(samples, shard_size)):
            self._index[shard[0].name] = i
            if not dest.has(self.shard_name(i)) or any(s.name in retry for s in shard):
                units.append(shard)
        return units

    def write(self, unit: list[Sample], files: dict[str, ClipFile], dest: Destination, workdir: Path) -> dict:
        failed = {s.name: files[s.name].error for s in unit if files[s.name].error}
        local = workdir / "shard.tar"
        with tarfile.open(local, "w", format=tarfile.PAX_FORMAT) as tar:
            for s in unit:
                if s.name in failed:
                    continue
                meta = {k: v for k, v in row(s, None).items() if k != "path"}
                _add(tar, f"{s.name}.mp4", path=files[s.name].path)
                _add(tar, f"{s.name}.txt", data=(s.clip.caption or "").encode("utf-8"))
                _add(tar, f"{s.name}.json", data=json.dumps(meta, ensure_ascii=False).encode("utf-8"))
        dest.put_file(str(local), self.shard_name(self._index[unit[0].name]))
        return failed

    def finish(self, samples: list[Sample], dest: Destination) -> dict:
        return {}


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, path: str | None = None) -> None:
    """One tar member with fixed owner, mode and time, so a rerun writes the same bytes."""
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uname, info.gname = 0o644, 0, "", ""
    if path is not None:
        info.size = os.path.getsize(path)
        with open(path, "rb") as fh:
            tar.addfile(info, fh)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
