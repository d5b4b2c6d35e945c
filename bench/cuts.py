"""Scene-cut accuracy and cost per detector against the public ground truth of ``../shared/footage``.

    python bench/cuts.py [--footage ../shared/footage] [--reference-file psd_goldeneye-vfr-drop3.mp4]

Every file is decoded once by curate's real analysis pass (``rushes.curate.decode.analyse_video``, 256 px long
side, one decoder thread); all detectors read the same frames: PySceneDetect's AdaptiveDetector and
ContentDetector (``rushes.curate.split.SceneSplitter``), TransNetV2 (``rushes.curate.shots.TransNetSplitter``) and the
hybrid (TransNetV2's cuts plus Adaptive's cuts that TransNetV2 also saw, see ``rushes.curate.shots.hybrid_cuts``).
Each detector's CPU seconds are its own ``add`` calls plus its finish (decode is counted once, apart).
Torch and OpenCV run on one thread, so frames/s is per core.

Accuracy is on hard cuts: a detected cut matches a true one within one frame (each true cut matched once).
A detection inside an annotated gradual transition (fade, dissolve) is neither a hit nor a false positive:
those transitions have no single true frame; "gradual found" counts the transitions with a detection inside.
Truth comes from ``TRUTH`` below, each entry with its source.

The reference row runs the package's own ``TransNetV2.predict_frames`` on the same 48x27 frames of one file,
for the per-core speed comparison (same cuts asserted).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from rushes.curate.config import DetectorConfig  # noqa: E402
from rushes.curate.decode import analyse_video  # noqa: E402
from rushes.curate.shots import TransNetSplitter, hybrid_cuts, load_model, scene_starts, small_frame  # noqa: E402
from rushes.curate.split import SceneSplitter  # noqa: E402
from rushes.media.frames import Frame, stream_info  # noqa: E402

# file -> (hard cuts: decoded-frame indices or ("s", seconds), gradual transitions [(first, last)] to ignore)
TRUTH = {
    # README of ../shared/footage: hard cuts 30 and 180 (black <-> shot); fades/dissolve by the annotation
    # in groundtruth/psd_testvideo.groundtruth.json.
    "psd_testvideo.mp4": ([30, 180], [(205, 245), (330, 362), (390, 428), (525, 565), (660, 719)]),
    "psd_goldeneye-vfr-drop3.mp4": ([60, 140], []),  # groundtruth/psd_goldeneye-vfr-drop3.cuts.json
    "psd_issue-134-rotate.mp4": ([("s", 3.754), ("s", 8.759)], []),  # same film, cut times
    "psd_issue-195-aspect-ratio.mp4": ([70, 170, 301, 421, 484], []),
    "psd_issue-236-split-copy.mkv": ([19], []),
    "iio_cockatoo.mp4": ([], []),
    "iio_realshort.mp4": ([], []),
    "mpy_big_buck_bunny_0_30.webm": ([283, 376, 551], [(0, 40)]),  # fades in from black
    "mpy_chaplin.mp4": ([], []),
    "mpy_fire2.mp4": ([], []),
    "mpy_video_with_failing_audio.mp4": ([], [(195, 275)]),  # fade to black, no cut
}
DETECTORS = ("adaptive", "content", "transnetv2", "hybrid")


class Timed:
    """Wraps a frame consumer and adds up the CPU time of its ``add`` calls."""

    def __init__(self, inner) -> None:
        self.inner, self.cpu_s = inner, 0.0

    def add(self, frame) -> None:
        t = time.process_time()
        self.inner.add(frame)
        self.cpu_s += time.process_time() - t


class Smalls:
    """Keeps the 48x27 frames (for the reference run)."""

    def __init__(self) -> None:
        self.frames: list = []

    def add(self, frame) -> None:
        self.frames.append(small_frame(frame.rgb))


def truth_frames(entry, pts_s) -> list[int]:
    out = []
    for c in entry:
        if isinstance(c, tuple):  # a time: the frame whose PTS is nearest
            out.append(int(np.argmin(np.abs(np.asarray(pts_s) - c[1]))))
        else:
            out.append(int(c))
    return out


def score(detected: list[int], truth: list[int], gradual) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) within one frame."""
    left = list(truth)
    tp = fp = 0
    for d in detected:
        hit = next((t for t in left if abs(t - d) <= 1), None)
        if hit is not None:
            left.remove(hit)
            tp += 1
        elif not any(a <= d <= b for a, b in gradual):
            fp += 1
    return tp, fp, len(left)


def run_file(path: Path, keep_smalls: bool):
    fps = stream_info(str(path)).fps
    adaptive = Timed(SceneSplitter(DetectorConfig(name="adaptive"), fps))
    content = Timed(SceneSplitter(DetectorConfig(name="content"), fps))
    tn = Timed(TransNetSplitter())
    consumers = [adaptive, content, tn]
    smalls = Smalls() if keep_smalls else None
    if smalls:
        consumers.append(smalls)
    cpu0 = time.process_time()
    result = analyse_video(str(path), consumers, long_side_px=256, threads=1)
    total_cpu = time.process_time() - cpu0
    cuts, cpu = {}, {}
    for name, c in (("adaptive", adaptive), ("content", content), ("transnetv2", tn)):
        t = time.process_time()
        cuts[name] = c.inner.cut_frames(result.pts_s)
        cpu[name] = c.cpu_s + time.process_time() - t
    t = time.process_time()
    cuts["hybrid"] = hybrid_cuts(cuts["transnetv2"], tn.inner.probabilities(), cuts["adaptive"])
    cpu["hybrid"] = cpu["transnetv2"] + cpu["adaptive"] + time.process_time() - t
    decode_cpu = total_cpu - sum(c.cpu_s for c in consumers if isinstance(c, Timed))
    return result, cuts, cpu, decode_cpu, smalls, tn.inner


def reference_row(smalls: Smalls, ours, repeats: int) -> tuple[float, float, bool]:
    """(reference CPU s, our CPU s on the same frames, same cuts) for the package's own predict_frames;
    the two alternate and the fastest of ``repeats`` runs of each is kept (the machine may be shared)."""
    import torch

    frames = torch.from_numpy(np.stack(smalls.frames))
    model = load_model("cpu")
    ref_cpu = our_cpu = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        single, _ = model.predict_frames(frames, quiet=True)
        ref_cpu = min(ref_cpu, time.process_time() - t)
        again = TransNetSplitter()
        t = time.process_time()
        for i, f in enumerate(smalls.frames):
            again.add(Frame(i, 0.0, f))
        cuts = again.cut_frames()
        our_cpu = min(our_cpu, time.process_time() - t)
    same = cuts == scene_starts(single.numpy(), 0.5) == ours.cut_frames()
    return ref_cpu, our_cpu, same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--footage", default=str(REPO.parent / "shared" / "footage"))
    ap.add_argument("--reference-file", default="psd_goldeneye-vfr-drop3.mp4",
                    help="file on which the package's own predict_frames is timed ('' to skip)")
    ap.add_argument("--reference-repeats", type=int, default=3, help="best of N for the reference row")
    ap.add_argument("--files", nargs="*", default=None, help="only these files of TRUTH (default: all)")
    args = ap.parse_args()
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    load_model("cpu")  # loading is a one-off per worker process, not per frame
    totals = {d: [0, 0, 0] for d in DETECTORS}
    gradual_found = dict.fromkeys(DETECTORS, 0)
    gradual_total = 0
    cpu = dict.fromkeys(DETECTORS, 0.0)
    frames = 0
    decode_cpu = 0.0
    ref = None
    for name, (hard, gradual) in TRUTH.items():
        if args.files and name not in args.files:
            continue
        path = Path(args.footage) / name
        if not path.exists():
            print(f"skip {name}: not in {args.footage}", file=sys.stderr)
            continue
        result, cuts, c, d, smalls, tn = run_file(path, name == args.reference_file)
        truth = truth_frames(hard, result.pts_s)
        frames += result.num_frames
        decode_cpu += d
        gradual_total += len(gradual)
        for det in DETECTORS:
            gradual_found[det] += sum(any(a <= d <= b for d in cuts[det]) for a, b in gradual)
            for i, v in enumerate(score(cuts[det], truth, gradual)):
                totals[det][i] += v
            cpu[det] += c[det]
        print(f"{name}: {result.num_frames} frames, truth {truth}, " +
              ", ".join(f"{k} {v}" for k, v in cuts.items()), file=sys.stderr)
        if smalls is not None:
            ref = reference_row(smalls, tn, args.reference_repeats)
    print(f"\n{frames} frames in {len(args.files or TRUTH)} files; decode (shared by all) {decode_cpu:.1f} CPU s "
          f"= {frames / decode_cpu:.0f} frames/s\n")
    print("| detector | TP | FP | FN | precision | recall | F1 | gradual found | CPU s (detector only) "
          "| frames/s per core |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for det in DETECTORS:
        tp, fp, fn = totals[det]
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        print(f"| {det} | {tp} | {fp} | {fn} | {p:.3f} | {r:.3f} | {f1:.3f} | {gradual_found[det]}/{gradual_total} "
              f"| {cpu[det]:.1f} | "
              f"{frames / cpu[det]:.0f} |")
    if ref is not None:
        ref_cpu, our_cpu, same = ref
        print(f"\nreference predict_frames on {args.reference_file}: {ref_cpu:.2f} CPU s; through rushes "
              f"{our_cpu:.2f} CPU s (ratio {ref_cpu / our_cpu:.2f}x), same cuts: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
