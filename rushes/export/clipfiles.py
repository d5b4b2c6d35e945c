"""The bytes of each exported clip: curate's encoded clip file when the run has one, else its span cut from the
source video, exactly as ``rushes curate`` encodes clips (:func:`rushes.curate.encode.encode_clips`: one ffmpeg
process per source video for all its spans, frames chosen by stream time, rotation applied, square pixels,
H.264 yuv420p in MP4).

Usage::

    files = clip_files(samples, workdir)        # {sample name: ClipFile(path=local file) or ClipFile(error=...)}

A clip that cannot be had (its clip file gone, its source unreadable, ffmpeg failing on it) gets an error naming
the clip and the fix; the other clips go on. A source in a bucket is read through a bounded scratch copy
(:func:`rushes.storage.local_copy`), removed when its clips are cut.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from rushes import storage
from rushes.export.samples import Sample
from rushes.storage.names import display


@dataclass(frozen=True)
class ClipFile:
    """A local file holding one clip (``path``), or why there is none (``error``)."""

    path: str | None = None
    error: str | None = None


def _encoded(sample: Sample, workdir: Path) -> ClipFile:
    src = sample.clip.path
    try:
        if not storage.is_file(src):
            return ClipFile(error=f"clip {sample.clip.clip_id}: its clip file {src} is missing; rerun `rushes curate` "
                                  f"for its video (it re-encodes missing clips) and export again")
        if not storage.is_remote(src):
            return ClipFile(path=str(src))
        local = workdir / f"{uuid.uuid4().hex[:8]}-{sample.name}.mp4"
        storage.copy_file(src, local)
        return ClipFile(path=str(local))
    except OSError as exc:
        return ClipFile(error=f"clip {sample.clip.clip_id}: cannot read its clip file {src}: {exc}")


def _cut(source: str, group: list[Sample], workdir: Path, scratch) -> dict[str, ClipFile]:
    """Cut every span of ``group`` (clips of the one video ``source``) in one ffmpeg process."""
    from rushes.curate.config import EncodeConfig
    from rushes.curate.encode import EncodeError, EncodeJob, encode_clips
    from rushes.curate.probe import ProbeError, probe_video

    jobs = [EncodeJob(s.clip.clip_id, s.clip.start_s, s.clip.end_s) for s in group]
    try:
        with storage.local_copy(source, scratch) as copy:
            probe = probe_video(copy.path)
            done, _ = encode_clips(copy.path, jobs, workdir / f"cut-{uuid.uuid4().hex[:8]}", probe.width_px,
                                   probe.height_px, EncodeConfig(), probe.start_s - probe.format_start_s)
    except (EncodeError, ProbeError, OSError) as exc:  # ScratchError is an OSError
        why = f"cannot cut its span from {display(source)}: {exc}"
        return {s.name: ClipFile(error=f"clip {s.clip.clip_id}: {why}") for s in group}
    return {s.name: ClipFile(path=str(done[s.clip.clip_id])) if s.clip.clip_id in done else
            ClipFile(error=f"clip {s.clip.clip_id}: ffmpeg wrote no file for its span") for s in group}


def clip_files(samples: list[Sample], workdir: Path, scratch=None) -> dict[str, ClipFile]:
    """A local file for each sample (see the module doc), keyed by sample name; files made here live in
    ``workdir`` (the caller removes it), a local clip file is used in place."""
    out = {s.name: _encoded(s, workdir) for s in samples if s.copied}
    by_source: dict[str, list[Sample]] = {}
    for s in samples:
        if not s.copied:
            by_source.setdefault(s.clip.path, []).append(s)
    for source, group in by_source.items():
        out.update(_cut(source, group, workdir, scratch))
    return out
