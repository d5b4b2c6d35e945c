"""Near-duplicate copies of a video made with ffmpeg: the uploads a near-duplicate search must catch.

Used by ``tests/curate/test_dedup.py`` and ``bench/dedup.py``::

    make_copy("footage/a.mp4", "copies/a.half.mp4", "half")

Each transform re-encodes the whole video (no stream copy), so no copy shares bytes with its source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rushes.media.ffmpeg import media_input, run_ffmpeg

_X264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
_EVEN = "trunc(iw*{f}/2)*2:trunc(ih*{f}/2)*2"

# name -> (input options, output options), what each copy of the source is.
TRANSFORMS = {
    "crf": ([], [*_X264, "-crf", "34"]),  # heavy re-encode, same codec
    "codec": ([], ["-c:v", "mpeg4", "-q:v", "6", "-pix_fmt", "yuv420p"]),  # another codec (MPEG-4 part 2)
    "half": ([], ["-vf", f"scale={_EVEN.format(f=0.5)}", *_X264, "-crf", "23"]),  # rescaled to 0.5x
    "crop5": ([], ["-vf", f"crop={_EVEN.format(f=0.95)}", *_X264, "-crf", "23"]),  # 5% cropped off, centred
    "trim": (["-ss", "1.3"], [*_X264, "-crf", "23"]),  # the first 1.3 s dropped (off the 0.5 s sample grid)
}
# Trimming a video shorter than this would leave too little to compare.
MIN_TRIM_SOURCE_S = 4.0


def make_copy(src: str | os.PathLike, dst: str | os.PathLike, transform: str) -> str:
    """Write the ``transform`` copy of ``src`` to ``dst`` (an .mp4 path, video only); returns ``dst``."""
    if transform not in TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; use one of {', '.join(TRANSFORMS)}")
    pre, post = TRANSFORMS[transform]
    run_ffmpeg([*pre, *media_input(str(src)), "-map", "0:v:0", "-an", "-sn", "-dn", *post, "-y", str(dst)],
               timeout_s=300)
    return str(dst)


@dataclass
class Catch:
    """How the near-duplicate search did on one transform's copies."""

    clips: int = 0  # clips of the copies
    unhashable: int = 0  # clips with fewer than two non-flat samples (black, flat): nothing to compare
    caught: int = 0  # duplicate_of points at the source video's clip over the same time
    inverted: int = 0  # found, but the source's clip points at the copy's (the copy ranked better)
    wrong: int = 0  # missed (duplicate_of null), or pointing at a clip of another video

    @property
    def rate(self) -> float | None:
        """Caught share of the clips that have something to compare."""
        hashable = self.clips - self.unhashable
        return self.caught / hashable if hashable else None


def make_copies(sources, folder, transforms=tuple(TRANSFORMS)) -> dict[str, tuple[str, str, float]]:
    """Copies of every source in ``folder``: ``{copy path: (source path, transform, seconds trimmed)}``
    (no trimmed copy of a source shorter than :data:`MIN_TRIM_SOURCE_S`)."""
    from rushes.curate.probe import probe_video

    plan = {}
    for src in sources:
        stem = Path(src).stem
        for t in transforms:
            if t == "trim" and (probe_video(str(src)).duration_s or 0) < MIN_TRIM_SOURCE_S:
                continue
            dst = Path(folder) / f"{stem}.{t}.mp4"
            if not dst.exists():
                make_copy(src, dst, t)
            plan[str(dst)] = (str(src), t, float(TRANSFORMS[t][0][1]) if TRANSFORMS[t][0] else 0.0)
    return plan


def _clips_by_path(out) -> tuple[dict[str, list[dict]], dict[str, dict]]:
    from rushes import manifests

    videos = {v["video_id"]: v["path"] for v in manifests.read(out, "videos").to_pylist() if v["status"] == "ok"}
    rows = manifests.read(out, "clips").select(["clip_id", "video_id", "start_s", "end_s", "signature",
                                                "duplicate_of"]).to_pylist()
    by_path: dict[str, list[dict]] = {}
    for r in rows:
        path = videos.get(r["video_id"])
        by_path.setdefault(os.path.realpath(path) if path else "", []).append(r)  # a footage dir behind a symlink
    return by_path, {r["clip_id"]: r for r in rows}


def score_copies(out, plan: dict[str, tuple[str, str, float]]) -> dict[str, Catch]:
    """Per transform, how many clips of the copies in ``plan`` (see :func:`make_copies`) the run in ``out``
    caught: the copy's clip and a clip of its source over the same time (the copy's times + the trimmed
    seconds) are one group, one pointing at the other."""
    by_path, by_id = _clips_by_path(out)
    result: dict[str, Catch] = {}
    for copy, (src, transform, trimmed) in plan.items():
        c = result.setdefault(transform, Catch())
        src_path = os.path.realpath(src)
        for clip in by_path.get(os.path.realpath(copy), []):
            c.clips += 1
            if sum(1 for h in clip["signature"] or [] if h) < 2:
                c.unhashable += 1
                continue
            lo, hi = clip["start_s"] + trimmed, clip["end_s"] + trimmed
            twins = {r["clip_id"] for r in by_path.get(src_path, []) if r["start_s"] < hi and r["end_s"] > lo}
            if clip["duplicate_of"] in twins:
                c.caught += 1
            elif any(by_id[t]["duplicate_of"] == clip["clip_id"] for t in twins):
                c.inverted += 1
            else:
                c.wrong += 1
    return result


def marked(out) -> list[tuple[str, str]]:
    """(clip_id, duplicate_of) of every clip marked as a near-duplicate in ``out``."""
    _, by_id = _clips_by_path(out)
    return sorted((cid, r["duplicate_of"]) for cid, r in by_id.items() if r["duplicate_of"])
