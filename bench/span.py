"""Whole-span training frames: how much of a captioned clip training sees, at what rate, and what decoding costs.

    python bench/span.py [--footage ../shared/footage (or $RUSHES_FOOTAGE)] [--repeats 3]

The clips are the real shots of ``../shared/footage`` (its cut lists, README.md there), 0.4 s to 14 s long. For
each training preset (its ``fps`` and ``max_frames``) it prints, over those shots: the share of each shot's span
the frames stand for (before: the first ``max_frames`` frames at ``fps``; now: ``rushes.train.data.frame_times``,
the whole span), and the rate the frames are then shown at (``fps`` where the shot fits, lower where it does
not). Then the decode time of a shot's training frames, across its span against its head, for the longest shot
of each file (median of ``--repeats``, one process, PyAV, 256 px): the price of seeing the whole span.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rushes.media.frames import sample_frames, stream_info  # noqa: E402
from rushes.train.config import PRESETS  # noqa: E402
from rushes.train.data import frame_times  # noqa: E402

# file -> (frame rate the cut list counts in, cut frames): the footage's own cut lists (footage README.md)
CUTS = {
    "psd_testvideo.mp4": (29.97, [30, 180, 394, 691]),
    "psd_issue-195-aspect-ratio.mp4": (25.0, [70, 170, 301, 421, 484]),
    "mpy_big_buck_bunny_0_30.webm": (24.0, [283, 376, 551]),
    "psd_goldeneye-vfr-drop3.mp4": (1.0, [3.754, 8.759]),  # times: a VFR file
    "iio_cockatoo.mp4": (20.0, []),
    "mpy_chaplin.mp4": (25.0, []),
    "mpy_video_with_failing_audio.mp4": (25.0, []),
}


def shots(footage: Path) -> list[tuple[str, float, float]]:
    """(path, start_s, end_s) of every shot of the files in :data:`CUTS` present in ``footage``."""
    out = []
    for name, (rate, cuts) in CUTS.items():
        path = footage / name
        if not path.exists():
            continue
        duration = stream_info(str(path)).duration_s
        bounds = [0.0, *[c / rate for c in cuts], duration]
        out += [(str(path), a, b) for a, b in zip(bounds, bounds[1:]) if b - a > 0.2]
    return out


def coverage_table(spans: list[tuple[str, float, float]]) -> list[str]:
    rows = ["| preset | fps, max frames | shots longer than max frames | span seen before (mean, min) | span seen now "
            "| frame rate now (min, median) |", "|---|---|---|---|---|---|"]
    for name, make in PRESETS.items():
        d = make().data
        before, rates, longer = [], [], 0
        for _, a, b in spans:
            n = min(d.max_frames, int((b - a) * d.fps + 1e-6))
            before.append(min(1.0, n / d.fps / (b - a)))
            longer += int((b - a) * d.fps + 1e-6) > d.max_frames
            times = frame_times(a, b, n, d.fps)
            rates.append(d.fps if len(times) < 2 else 1.0 / (times[1] - times[0]))
        rows.append(f"| {name} | {d.fps:g}, {d.max_frames} | {longer} of {len(spans)} | "
                    f"{100 * statistics.mean(before):.0f}%, {100 * min(before):.0f}% | 100% | "
                    f"{min(rates):.2f}, {statistics.median(rates):.2f} |")
    return rows


def decode_table(spans: list[tuple[str, float, float]], repeats: int) -> list[str]:
    d = PRESETS["base"]().data
    longest: dict[str, tuple[float, float]] = {}
    for path, a, b in spans:
        if path not in longest or b - a > longest[path][1] - longest[path][0]:
            longest[path] = (a, b)
    rows = ["| shot | length | head (s) | whole span (s) | ratio |", "|---|---|---|---|---|"]
    for path, (a, b) in longest.items():
        n = min(d.max_frames, int((b - a) * d.fps + 1e-6))
        head = [a + (i + 0.5) / d.fps for i in range(n)]
        span = frame_times(a, b, n, d.fps)
        took = {}
        for label, times in (("head", head), ("span", span)):
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                sample_frames(path, times, size=(256, 144))
                runs.append(time.perf_counter() - t0)
            took[label] = statistics.median(runs)
        rows.append(f"| {Path(path).name} {a:.1f}-{b:.1f} s | {b - a:.1f} s | {took['head']:.3f} | "
                    f"{took['span']:.3f} | {took['span'] / took['head']:.2f}x |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--footage", default=os.environ.get("RUSHES_FOOTAGE", str(REPO.parent / "shared" / "footage")))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    spans = shots(Path(args.footage))
    if not spans:
        sys.exit(f"no footage in {args.footage}: pass --footage")
    lengths = sorted(b - a for _, a, b in spans)
    print(f"{len(spans)} shots, {lengths[0]:.1f}-{lengths[-1]:.1f} s (median {statistics.median(lengths):.1f} s)\n")
    print("\n".join(coverage_table(spans)))
    print()
    print("\n".join(decode_table(spans, args.repeats)))


if __name__ == "__main__":
    main()
