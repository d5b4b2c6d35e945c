"""A kept clip, its caption, and where its pixels are: the one owner of that question for every stage.

Usage::

    from rushes.manifests import clips
    for clip in clips.captioned_clips(out):            # kept clips with an ok, unflagged caption (encode, train)
        if clip.refused:
            ...                                        # record clip.refused as this clip's error; never read it
        frames = sample_frames(clip.path, uniform_times(clip.start_s, clip.end_s, 8))
    for clip in clips.kept_clips(out):                 # every kept clip (caption)
        ...
    clip = clips.locate(out, clip_row, video_row)      # any clips row (the report's thumbnails)

**Time base.** ``start_s`` and ``end_s`` are *stream time* of ``path``: seconds from the first timestamp of that
file's video stream, the base curate measured the clips in and :mod:`rushes.media.frames` decodes in. For a clip
encoded by curate, ``path`` is the clip file and the span starts at 0; for a span of the source (``--no-encode``),
``path`` is the source video and the span is the clips row's. :meth:`KeptClip.source_time` maps a time in ``path``
back to the source video's (what the manifests record).

Nothing read back is trusted: a ``clip_path`` outside the run directory, a source video that the videos manifest
does not list, or a span that is not finite, starts below 0, does not end after its start or ends past its video,
gives a clip whose ``refused`` says why (naming the clip and the field) and whose ``path`` is never opened.
:func:`valid_span_mask` is the same span rule over a whole table (what ``rushes filter`` rejects as ``bad_span``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from rushes.manifests import select, store
from rushes.manifests.paths import UnsafePathError, resolve_inside
from rushes.storage.names import from_stored

VIDEO, IMAGE = "video", "image"  # the clips manifest's kind (null in parts written before stills: a video)


@dataclass(frozen=True)
class KeptClip:
    """One clip and where its pixels are (see the module doc for the time base)."""

    clip_id: str
    video_id: str
    path: str | None  # the file to decode: the encoded clip inside OUT, or the source video; None when unknown
    start_s: float  # span inside ``path``, stream time of that file
    end_s: float
    source_start_s: float  # where ``start_s`` lies in the source video (the clips row's start_s)
    width_px: int  # display size of the pixels (0 when neither manifest knows it)
    height_px: int
    encoded: bool  # ``path`` is curate's clip file rather than the source video
    caption: str | None = None
    refused: str | None = None  # why ``path`` must not be read: the clip is an error, never decoded
    kind: str = "video"  # or "image": a still (``path`` is the image; start_s = end_s = 0), one frame
    parent: str | None = None  # a window of a clip (its own caption, its own span): the clip's id

    @property
    def still(self) -> bool:
        return self.kind == IMAGE

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def source_time(self, t_s: float) -> float:
        """The source video's time of ``t_s`` in ``path`` (the base the manifests record)."""
        return t_s + self.source_start_s - self.start_s


def valid_span_mask(clips: pa.Table) -> pa.Array:
    """True for each clips row whose span is a time: finite, ``start_s >= 0``, ``end_s > start_s`` (null or NaN
    counts as false); a still's (``kind = 'image'``) is exactly ``start_s = end_s = 0``. The table-wide form of
    :func:`_span_problem`'s first rules."""
    start, end = pc.cast(clips["start_s"], pa.float64()), pc.cast(clips["end_s"], pa.float64())
    ok = pc.and_(pc.and_(pc.is_finite(start), pc.is_finite(end)),
                 pc.and_(pc.greater_equal(start, 0.0), pc.greater(end, start)))
    if "kind" in clips.column_names:
        still = pc.and_(pc.equal(start, 0.0), pc.equal(end, 0.0))
        ok = pc.if_else(pc.fill_null(pc.equal(clips["kind"], IMAGE), False), still, ok)
    return pc.fill_null(ok, False)


def _span_problem(clip_id: str, start, end, video_duration_s, kind: str | None = None) -> str | None:
    """Why a clips row's span cannot be decoded, or None. The span must lie inside its video (with a little slack
    for a last frame's length), so no stage sizes a frame list from a time nobody checked; a still's span is
    exactly 0 to 0."""
    if kind == IMAGE:
        return None if (start, end) == (0.0, 0.0) else (
            f"clip {clip_id}: a still image's span must be start_s = end_s = 0, got {start!r} to {end!r}; rerun "
            f"curate for it")
    for name, value in (("start_s", start), ("end_s", end)):
        if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"clip {clip_id}: {name} is {value!r}, not a finite time; rerun curate for its video"
    if start < 0:
        return f"clip {clip_id}: start_s {start} is negative; rerun curate for its video"
    if end <= start:
        return f"clip {clip_id}: end_s {end} does not come after start_s {start}; rerun curate for its video"
    if video_duration_s and end > video_duration_s + max(1.0, 0.01 * video_duration_s):
        return (f"clip {clip_id}: end_s {end} is past the end of its video ({video_duration_s:.3f} s); rerun curate "
                f"for its video")
    return None


def locate(out: str | os.PathLike, clip: dict, video: dict | None, use_clip_file: bool = True,
           caption: str | None = None) -> KeptClip:
    """Where the pixels of one clips row are: its encoded file (inside ``out``) when it has one and
    ``use_clip_file``, else its span of the source video (``video``: its videos row, or None when unknown)."""
    clip_id = clip["clip_id"]
    start, end = clip.get("start_s"), clip.get("end_s")
    video = video or {}
    kind = clip.get("kind") or VIDEO
    refused = _span_problem(clip_id, start, end, video.get("duration_s"), kind)
    start, end = (float(start), float(end)) if refused is None else (0.0, 0.0)
    encoded = use_clip_file and clip.get("clip_path") is not None
    if encoded:
        path, span_start = clip["clip_path"], 0.0
        try:  # an edited row could name any file: a clip_path is read only inside OUT
            path = str(resolve_inside(out, clip["clip_path"], column="clip_path", row=f"clip {clip_id}"))
        except UnsafePathError as exc:
            refused = refused or str(exc)
        width, height = clip.get("width_px") or video.get("width_px"), clip.get("height_px") or video.get("height_px")
    else:
        path, span_start = video.get("path"), start
        if path is not None:  # a name that is not UTF-8 is opened by its exact bytes
            path = from_stored(path, video.get("path_bytes"))
        if path is None:
            refused = refused or (f"clip {clip_id}: its video {clip.get('video_id')} is not in the videos manifest "
                                  f"and the clip has no clip file; rerun curate for it")
        width, height = video.get("width_px") or clip.get("width_px"), video.get("height_px") or clip.get("height_px")
    return KeptClip(clip_id, clip.get("video_id"), path, span_start, span_start + (end - start), start,
                    int(width or 0), int(height or 0), encoded, caption, refused, kind)


def _videos(out: str | os.PathLike) -> dict[str, dict]:
    table = store.read(out, "videos").select(["video_id", "path", "path_bytes", "duration_s", "width_px",
                                              "height_px"])
    return {r["video_id"]: r for r in table.to_pylist()}


# What locate reads of a clips row: the rest (signatures, scores) is never turned into Python objects.
_CLIP_COLUMNS = ["clip_id", "video_id", "kind", "clip_path", "start_s", "end_s", "width_px", "height_px"]


def _kept_rows(out: str | os.PathLike) -> list[dict]:
    return select.kept_clips(out).select(_CLIP_COLUMNS).to_pylist()


def kept_clips(out: str | os.PathLike) -> list[KeptClip]:
    """Every kept clip of ``out``, in the clips manifest's order."""
    videos = _videos(out)
    return [locate(out, row, videos.get(row["video_id"])) for row in _kept_rows(out)]


# The captions-manifest columns a clip's text may come from (``rushes export --caption-field``).
CAPTION_FIELDS = ("caption", "caption_short")
# Which captions make training examples (``rushes train --caption-level``): each clip's clip-level caption over its
# whole span; its window captions (``rushes caption --window-s``) over each window's span, the clip-level one for
# a clip without windows; or both.
CAPTION_LEVELS = ("clip", "window", "both")
WINDOW_SEP = "@"  # a window example's id: ``<clip_id>@<start>-<end>`` (source seconds); clip ids are hex


def source_clip_id(example_id: str) -> str:
    """The clip an example id belongs to: the id itself, or a window example's clip."""
    return example_id.split(WINDOW_SEP, 1)[0]


def example_order(example: KeptClip) -> tuple:
    """The one order of examples (train and encode, ``--limit``): by clip id, a clip before its windows, windows
    by start time (window ids sorted as text would put 10 s before 5 s)."""
    if example.parent is None:
        return (example.clip_id, 0, 0.0)
    return (example.parent, 1, example.source_start_s if example.refused is None else math.inf)


def window_of(clip: KeptClip, start_s, end_s, caption: str) -> KeptClip:
    """The example of one captioned window [start_s, end_s) (source seconds) of ``clip``: its span inside the same
    file, its own caption and id. A window that does not lie inside the clip (an edited or damaged captions row)
    is refused, naming both."""
    wid = f"{clip.clip_id}{WINDOW_SEP}{_num(start_s)}-{_num(end_s)}"
    span_end = clip.source_start_s + clip.duration_s
    ok = all(isinstance(v, (int, float)) and math.isfinite(v) for v in (start_s, end_s)) and \
        clip.source_start_s - 1e-6 <= start_s < end_s <= span_end + 1e-6
    if clip.refused or not ok:
        why = clip.refused or (f"window [{start_s}, {end_s}) s of clip {clip.clip_id} does not lie inside the clip "
                               f"[{clip.source_start_s:g}, {span_end:g}) s; rerun `rushes caption --window-s` for it")
        return KeptClip(wid, clip.video_id, clip.path, 0.0, 0.0, 0.0, clip.width_px, clip.height_px, clip.encoded,
                        caption, why, clip.kind, clip.clip_id)
    offset = clip.start_s - clip.source_start_s  # file time of source time 0
    return KeptClip(wid, clip.video_id, clip.path, start_s + offset, end_s + offset, float(start_s), clip.width_px,
                    clip.height_px, clip.encoded, caption, None, clip.kind, clip.clip_id)


def _num(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) and math.isfinite(value) else str(value)


def captioned_clips(out: str | os.PathLike, captioner: str | None = None, prompt_version: str | None = None,
                    limit: int | None = None, field: str = "caption", include_flagged: bool = False,
                    level: str = "clip") -> list[KeptClip]:
    """Kept clips of ``out`` with an ok, non-empty clip-level caption (the newest per clip unless ``captioner`` or
    ``prompt_version`` choose), sorted by clip id; raises ValueError when there are none. ``field``: the captions
    column that gives ``KeptClip.caption`` (one of :data:`CAPTION_FIELDS`).

    ``level`` (:data:`CAPTION_LEVELS`): ``window`` gives a clip with window captions as one example per window
    (:func:`window_of`, in time order at its clip's place) instead of the clip; ``both`` gives the clip and its
    windows. ``limit`` counts examples.

    A caption that a check flagged (``caption_flags``: truncated, repetition, refusal, language) is skipped unless
    ``include_flagged`` (``rushes train --include-flagged-captions``)."""
    if field not in CAPTION_FIELDS:
        raise ValueError(f"caption field {field!r} is not one of {', '.join(CAPTION_FIELDS)}")
    if level not in CAPTION_LEVELS:
        raise ValueError(f"caption level {level!r} is not one of {', '.join(CAPTION_LEVELS)}")
    text = clip_captions(out, captioner, prompt_version, field, include_flagged)
    windows = _window_text(out, captioner, prompt_version, field, include_flagged) if level != "clip" else {}
    videos = _videos(out)
    rows = sorted((r for r in _kept_rows(out) if r["clip_id"] in text or r["clip_id"] in windows),
                  key=lambda r: r["clip_id"])
    examples: list[KeptClip] = []
    for r in rows:
        clip = locate(out, r, videos.get(r["video_id"]), caption=text.get(r["clip_id"]))
        own = [window_of(clip, a, b, t) for a, b, t in windows.get(r["clip_id"], [])]
        usable = any(w.refused is None for w in own)  # every window damaged: the clip caption stands in
        if clip.caption is not None and (level != "window" or not usable):
            examples.append(clip)
        examples += own
    if not examples:
        hint = "; window captions come from `rushes caption --window-s`" if level == "window" else ""
        raise ValueError(f"no kept clip with an ok {field} in {out}: run `rushes curate` and `rushes caption` "
                         f"first (or check --captioner/--prompt-version; flagged captions count only with "
                         f"--include-flagged-captions{hint})")
    return examples[:limit]


def clip_captions(out, captioner=None, prompt_version=None, field: str = "caption",
                  include_flagged: bool = False) -> dict[str, str]:
    """clip id -> its newest ok clip-level caption (what ``--where`` sees as ``caption``, at every level)."""
    caps = select.ok_captions(out, captioner=captioner, prompt_version=prompt_version,
                              include_flagged=include_flagged)
    caps = caps.filter(pc.invert(pc.is_null(caps.column(field))))
    return dict(zip(caps.column("clip_id").to_pylist(), caps.column(field).to_pylist()))


def _window_text(out, captioner, prompt_version, field, include_flagged) -> dict[str, list[tuple]]:
    """clip id -> [(window start, end, text)] in time order: each window's newest ok caption."""
    caps = select.ok_captions(out, captioner=captioner, prompt_version=prompt_version,
                              include_flagged=include_flagged, windows=True)
    if caps.num_rows == 0:
        return {}
    caps = caps.filter(pc.invert(pc.is_null(caps.column(field))))
    # One captioning of a clip's windows: those of the run (config_hash) that wrote its newest window caption, so
    # windows of other captioners, prompts or --window-s never train beside them.
    newest: dict[str, tuple] = {}
    cols = [caps.column(c).to_pylist() for c in ("clip_id", "window_start_s", "window_end_s", field, "config_hash",
                                                 "captioner", "prompt_version", "created_at")]
    for cid, _, _, _, chash, who, version, when in zip(*cols):
        if cid not in newest or (when is not None and (newest[cid][0] is None or when > newest[cid][0])):
            newest[cid] = (when, (chash, who, version))
    found: dict[str, list[tuple]] = {}
    for cid, a, b, t, chash, who, version, _ in zip(*cols):
        if (chash, who, version) == newest[cid][1]:
            found.setdefault(cid, []).append((a, b, t))
    return {cid: sorted(w, key=lambda x: tuple(map(_time_key, x[:2]))) for cid, w in found.items()}


def _time_key(value) -> float:
    """A window bound as a sort key: a damaged one (null, NaN, not a number) sorts last and is refused later."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.inf
