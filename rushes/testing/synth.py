"""Synthetic test videos made with ffmpeg's lavfi sources: shots joined by hard cuts at known frames."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from rushes.media.ffmpeg import run_ffmpeg

# Visually distinct sources: consecutive shots must differ so a cut detector sees the cut.
SOURCES = (
    "testsrc2=size={w}x{h}:rate={fps}",
    "mandelbrot=size={w}x{h}:rate={fps}",
    "smptebars=size={w}x{h}:rate={fps}",
    "cellauto=size={w}x{h}:rate={fps}:rule=110",
    "rgbtestsrc=size={w}x{h}:rate={fps}",
    "life=size={w}x{h}:rate={fps}:mold=10:ratio=0.5:death_color=#C83232:life_color=#00ff00",
)


@dataclass(frozen=True)
class SynthVideo:
    """A synthetic video and its ground truth."""

    path: str
    cut_frames: list[int]  # first frame of each new shot
    num_frames: int
    fps: int
    width: int
    height: int


def make_cut_video(path: str | os.PathLike, shot_seconds: Sequence[float], fps: int = 25,
                   size: tuple[int, int] = (320, 240), sources: Sequence[str] | None = None,
                   extra_output_args: Sequence[str] = ()) -> SynthVideo:
    """Write an H.264 MP4 made of shots of the given lengths, each from a different lavfi source.

    Shot lengths are rounded to whole frames; the returned ``cut_frames`` are exact decoded-frame indices.
    """
    w, h = size
    sources = list(sources or SOURCES)
    frames = [int(round(s * fps)) for s in shot_seconds]
    args: list[str] = []
    for i, n in enumerate(frames):
        src = sources[i % len(sources)].format(w=w, h=h, fps=fps)
        args += ["-f", "lavfi", "-i", f"{src},trim=end_frame={n},setpts=PTS-STARTPTS,format=yuv420p"]
    chains = "".join(f"[{i}:v]" for i in range(len(frames)))
    args += ["-filter_complex", f"{chains}concat=n={len(frames)}:v=1:a=0[v]", "-map", "[v]",
             "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-g", str(fps * 2),
             "-pix_fmt", "yuv420p", *extra_output_args, "-y", str(path)]
    run_ffmpeg(args, timeout_s=120, whitelist=None)
    cuts, acc = [], 0
    for n in frames[:-1]:
        acc += n
        cuts.append(acc)
    return SynthVideo(str(path), cuts, sum(frames), fps, w, h)
