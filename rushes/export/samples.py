"""What an export holds: the kept clips of a run with a chosen caption, narrowed by ``--where``, and their names.

Usage::

    samples = select_samples("OUT", ExportConfig(where="duration_s >= 3"))
    samples[0].name        # 'beach_12s40-15s90': <video stem>_<start>-<end>, times in the source video

The clips come from :func:`rushes.manifests.clips.captioned_clips` (kept, with an ok caption; the newest caption
per clip unless ``--captioner``/``--prompt-version`` choose), so an export holds what ``rushes train`` would
train on; ``--where`` is the same SQL condition over the view ``clips`` that ``rushes train --where`` takes.

**Names.** ``<video stem>_<start>-<end>``: the source file's name without its extension, then the clip's span in
that video, seconds with two decimals and ``s`` as the decimal mark (``12s40`` is 12.40 s). There is no ``.`` in a
name: WebDataset splits a sample's key from its extension at the first dot. Anything but letters, digits, ``_``
and ``-`` becomes ``_`` (a name that is not UTF-8 arrives in its escaped display form, ``\\xNN``, see
:mod:`rushes.storage.names`, and reads ``_xNN``). Two source videos with the same stem get the first 8 characters
of their video id after the stem; clips that would still share a name get the first 8 of their clip id. Names
depend only on the selected set, so a rerun of the same export names every clip the same.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass

from rushes.manifests import store
from rushes.manifests.clips import KeptClip, captioned_clips, clip_captions

MAX_STEM = 60
_UNSAFE = re.compile(r"[^\w-]+")


@dataclass(frozen=True)
class Sample:
    """One exported clip: its name, where its pixels are (``clip``), and what the index files say of it."""

    name: str
    clip: KeptClip
    source: str  # the source video as the videos manifest shows it (display form)
    fps: float | None
    num_frames: int | None

    @property
    def copied(self) -> bool:
        """The sample is curate's clip file as it is; else its span is cut (from the source video, or from the clip
        file for a window of an encoded clip)."""
        return self.clip.encoded and self.clip.parent is None

    @property
    def source_start_s(self) -> float:
        return self.clip.source_start_s

    @property
    def source_end_s(self) -> float:
        return self.clip.source_start_s + self.clip.duration_s


@dataclass(frozen=True)
class Selection:
    """The samples to export, and the clips left out because their pixels cannot be read (``refused``)."""

    samples: list[Sample]
    refused: list[tuple[str, str]]  # (clip_id, why)

    def samples_hash(self) -> str:
        """blake2b (16 bytes, hex) of the sorted names, clip ids and captions: equal hashes, the same export."""
        text = "\n".join(sorted(json.dumps([s.name, s.clip.clip_id, s.clip.caption]) for s in self.samples))
        return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def seconds_text(t: float) -> str:
    """``12.4`` -> ``'12s40'``: two decimals, ``s`` for the decimal mark (no dot in a sample key)."""
    return f"{max(0.0, t):.2f}".replace(".", "s")


def _safe(text: str) -> str:
    """Letters, digits, ``_`` and ``-`` only (an edited id such as ``../x`` must not name a path)."""
    return _UNSAFE.sub("_", text)


def stem(path: str) -> str:
    """The file-system-safe stem of a source path or URI (display form): ``/x/My clip.v2.mp4`` -> ``My_clip_v2``."""
    base = path.rstrip("/").rsplit("/", 1)[-1]
    if "." in base[1:]:
        base = base.rsplit(".", 1)[0]
    safe = _safe(base).strip("_")[:MAX_STEM].strip("_")
    return safe or "video"


def name_samples(rows: list[tuple[KeptClip, str]]) -> list[str]:
    """Unique readable names for ``(clip, source display path)`` pairs, in the same order (see the module doc)."""
    stems = [stem(src) for _, src in rows]
    videos_of: dict[str, set] = {}
    for s, (clip, _) in zip(stems, rows):
        videos_of.setdefault(s, set()).add(clip.video_id)
    stems = [f"{s}-{_safe(clip.video_id)[:8]}" if len(videos_of[s]) > 1 else s for s, (clip, _) in zip(stems, rows)]
    names = [f"{s}_{seconds_text(c.source_start_s)}-{seconds_text(c.source_start_s + c.duration_s)}"
             for s, (c, _) in zip(stems, rows)]
    counts = Counter(names)
    names = [f"{n}-{_safe(c.clip_id)[:8]}" if counts[n] > 1 else n for n, (c, _) in zip(names, rows)]
    counts = Counter(names)  # ids that share their first 8 characters: the whole id
    return [f"{n}{_safe(c.clip_id)[8:]}" if counts[n] > 1 else n for n, (c, _) in zip(names, rows)]


def _matching(out, where: str, captions: dict[str, str]) -> set[str]:
    # The one SQL condition over a run's kept clips, as `rushes train --where` applies it.
    from rushes.train.selection import matching_ids

    return matching_ids(out, where, captions)


def select_samples(out, cfg) -> Selection:
    """The samples of run ``out`` that ``cfg`` (:class:`rushes.export.config.ExportConfig`) selects, sorted by
    name; raises ValueError when none is left (the message says what to loosen)."""
    clips = captioned_clips(out, cfg.captioner, cfg.prompt_version, field=cfg.caption_field,
                            include_flagged=cfg.include_flagged_captions, level=cfg.caption_level)
    if cfg.where:  # a window goes with its clip's row
        keep = _matching(out, cfg.where, clip_captions(out, cfg.captioner, cfg.prompt_version, cfg.caption_field,
                                                       cfg.include_flagged_captions))
        clips = [c for c in clips if (c.parent or c.clip_id) in keep]
        if not clips:
            raise ValueError(f"no kept, captioned clip of {out} satisfies --where {cfg.where!r}; loosen the "
                             f"condition (rushes inspect OUT --sql helps)")
    clips = clips[:cfg.limit]
    refused = [(c.clip_id, c.refused) for c in clips if c.refused]
    clips = [c for c in clips if not c.refused]
    wanted = {c.parent or c.clip_id for c in clips}
    rows = store.read(out, "clips").select(["clip_id", "fps", "num_frames"]).to_pylist()
    facts = {r["clip_id"]: r for r in rows if r["clip_id"] in wanted}
    videos = store.read(out, "videos").select(["video_id", "path"]).to_pylist()
    paths = {v["video_id"]: v["path"] for v in videos}
    pairs = [(c, paths.get(c.video_id) or c.video_id) for c in clips]
    # A window has its clip's rate; its frame count is the cut's own (the clip's would be wrong).
    samples = [Sample(n, c, src, facts.get(c.parent or c.clip_id, {}).get("fps"),
                      None if c.parent else facts.get(c.clip_id, {}).get("num_frames"))
               for n, (c, src) in zip(name_samples(pairs), pairs)]
    return Selection(sorted(samples, key=lambda s: s.name), refused)
