"""Cost of the per-clip scores: the analysis pass with all scores against cuts only, same files, one run.

    python bench/scores.py [--repeats 2] [--footage ../shared/footage] [--long-side 256] [--guard]

Both modes run curate's real decode pass (``rushes.curate.decode.analyse_video``: one PyAV decode at the
analysis size, 1 decoder thread, as a curate task gets by default) with PySceneDetect's
AdaptiveDetector (``rushes.curate.split.SceneSplitter``); "all scores" adds ``rushes.curate.scores.FrameSignals``
as a second consumer of the same frames. Modes alternate per file and the fastest of ``--repeats``
runs is kept, to damp noise on a shared machine. Prints a markdown table of wall-time ratios.

``--guard`` compares today's default scores with the default scores plus the default guardrail scores
(``rushes.curate.guard.GuardSignals``: nsfw, watermark, invisible_mark, pdq; C2PA read once per file): the
cost the guardrails add to a curate pass (target <= 30% CPU). ``--guard --face-scores`` adds the opt-in faces
detector (``rushes curate --face-scores``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rushes.curate.config import DetectorConfig  # noqa: E402
from rushes.curate.decode import analyse_video  # noqa: E402
from rushes.curate.scores import FrameSignals, ScoreConfig  # noqa: E402
from rushes.curate.split import SceneSplitter  # noqa: E402
from rushes.media.frames import stream_info  # noqa: E402

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov"}


def run_once(path: str, fps: float, with_scores: bool, long_side: int, guard: bool = False,
             faces: bool = False) -> tuple[float, float, int, int]:
    """Wall and CPU seconds of one analysis pass, frames decoded, bytes FrameSignals keeps (0 without scores).
    ``guard``: the pass always has the scores; ``with_scores`` then adds the guardrail scores too."""
    consumers: list = [SceneSplitter(DetectorConfig(), fps)]
    signals = FrameSignals(ScoreConfig()) if with_scores or guard else None
    if signals is not None:
        consumers.append(signals)
    start, cpu = time.perf_counter(), time.process_time()
    if guard and with_scores:
        from rushes.curate.config import GuardConfig
        from rushes.curate.guard import GuardSignals
        from rushes.media.provenance import read_c2pa

        consumers.append(GuardSignals(GuardConfig(face_scores=faces)))
        read_c2pa(path)
    result = analyse_video(path, consumers, long_side_px=long_side, threads=1)
    consumers[0].cut_frames(result.pts_s)
    if signals is not None:  # one clip per detected scene is what curate asks for; a whole-file clip here
        signals.clip_scores(0, result.num_frames, *result.analysis_size)
    if guard and with_scores:
        consumers[-1].clip_scores(0, result.num_frames)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    kept = 0
    if signals is not None:
        cols = [*signals._frames.data.values(), *signals._flow.data.values(), *signals._text.data.values()]
        kept = sum(c.itemsize * len(c) for c in cols)
    return wall, cpu, result.num_frames, kept


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--footage", default=str(REPO.parent / "shared" / "footage"), help="folder of videos")
    ap.add_argument("--repeats", type=int, default=2, help="runs per file and mode; the fastest is kept")
    ap.add_argument("--long-side", type=int, default=256, help="analysis long side in px (curate's default)")
    ap.add_argument("--cv-threads", type=int, default=1,
                    help="OpenCV threads (1 = what a 1-CPU curate task should use; 0 = OpenCV's default)")
    ap.add_argument("--guard", action="store_true", help="compare default scores with default scores + guardrails")
    ap.add_argument("--face-scores", action="store_true", help="with --guard: the faces detector too (opt-in)")
    args = ap.parse_args()
    if args.cv_threads:
        import cv2

        cv2.setNumThreads(args.cv_threads)
    files = sorted(p for p in Path(args.footage).iterdir() if p.suffix in VIDEO_SUFFIXES)
    if not files:
        print(f"no videos in {args.footage}", file=sys.stderr)
        return 2
    print(f"{len(files)} files from {args.footage}, analysis long side {args.long_side} px, OpenCV threads "
          f"{args.cv_threads or 'default'}, best of {args.repeats} runs per mode\n")
    modes = ("scores", "scores + guardrails") if args.guard else ("cuts only", "cuts + all scores")
    print(f"| file | frames | {modes[0]} wall (s) | {modes[1]} wall (s) | wall ratio | CPU ratio "
          "| kept bytes/frame |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    totals = {k: 0.0 for k in ("wall0", "wall1", "cpu0", "cpu1")}
    for path in files:
        fps = stream_info(str(path)).fps
        best = {k: float("inf") for k in totals}
        frames = kept = 0
        for _ in range(args.repeats):
            for mode in (0, 1):
                wall, cpu, frames, k = run_once(str(path), fps, bool(mode), args.long_side, args.guard,
                                                  args.face_scores)
                best[f"wall{mode}"] = min(best[f"wall{mode}"], wall)
                best[f"cpu{mode}"] = min(best[f"cpu{mode}"], cpu)
                kept = k or kept
        for k in totals:
            totals[k] += best[k]
        print(f"| {path.name} | {frames} | {best['wall0']:.3f} | {best['wall1']:.3f} | "
              f"{best['wall1'] / best['wall0']:.2f}x | {best['cpu1'] / best['cpu0']:.2f}x | {kept / max(frames, 1):.0f} |")
    total_all, total_cuts = totals["wall1"], totals["wall0"]
    print(f"| **all files** | | **{total_cuts:.2f}** | **{total_all:.2f}** | **{total_all / total_cuts:.2f}x** "
          f"| **{totals['cpu1'] / totals['cpu0']:.2f}x** | |")
    if args.guard:
        ratio = totals["cpu1"] / totals["cpu0"]
        print(f"\nTarget: the guardrails add <= 30% CPU over today's default scores (ratio <= 1.30x): "
              f"{'met' if ratio <= 1.30 else 'NOT met'} ({ratio - 1:+.0%}).")
        return 0
    print(f"\nTarget: all scores add <= 40% wall time over cuts only (ratio <= 1.40x): "
          f"{'met' if total_all / total_cuts <= 1.40 else 'NOT met'} ({(total_all / total_cuts - 1):+.0%}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
