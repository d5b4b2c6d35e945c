"""Text score: PP-OCR detection against the classical heuristic on synthetic text cases over real footage.

    python bench/text.py [--footage ../shared/footage] [--work /tmp/rushes-text-bench]

Cases (built once with ffmpeg into --work, 3 s each, 854 px wide): text-free shots cut from
``../shared/footage`` (documentary, animation, handheld; checked by eye to hold no text), and each of them
with one kind of text burned in: a subtitle line, a small corner watermark, a two-line caption on a
semi-transparent box, a scrolling ticker, and sign-like scene text (a board with a word on it, mid-frame).
Big Buck Bunny's own credit and title cards are two natural text cases.

Every method runs inside curate's real analysis pass (``rushes.curate.decode.analyse_video`` with
``rushes.curate.scores.FrameSignals``, AdaptiveDetector beside it, one thread): the heuristic at its 2 samples/s on
the analysis frames; OCR settings (``METHODS``: the default, and other models, sizes and rates) on the sharper
copy the same pass builds. A clip counts as "text" when
its ``text_area_frac`` is at least ``--min-area`` (0.001: a 100x10 px box on 854x480). Prints recall per
kind, false positives on the text-free clips, and CPU seconds of the whole pass per clip for each method.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rushes.curate.config import DetectorConfig  # noqa: E402
from rushes.curate.decode import analyse_video  # noqa: E402
from rushes.curate.scores import FrameSignals, ScoreConfig  # noqa: E402
from rushes.curate.split import SceneSplitter  # noqa: E402
from rushes.media.ffmpeg import run_ffmpeg  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
# (file, start s) of 3 s text-free shots
BASES = [("psd_issue-195-aspect-ratio.mp4", 0.5), ("psd_issue-195-aspect-ratio.mp4", 7.5),
         ("psd_issue-195-aspect-ratio.mp4", 13.0), ("psd_issue-195-aspect-ratio.mp4", 19.5),
         ("mpy_big_buck_bunny_0_30.webm", 3.0), ("mpy_big_buck_bunny_0_30.webm", 9.0),
         ("mpy_big_buck_bunny_0_30.webm", 15.0), ("iio_cockatoo.mp4", 1.0), ("iio_cockatoo.mp4", 8.0)]
NATURAL = [("mpy_big_buck_bunny_0_30.webm", 21.5, "credits"), ("mpy_big_buck_bunny_0_30.webm", 25.5, "title")]


def _dt(text: str, size: str, x: str, y: str, extra: str = "") -> str:
    return f"drawtext=fontfile={FONT}:text='{text}':fontsize={size}:x={x}:y={y}:fontcolor=white{extra}"


KINDS = {
    "subtitle": _dt("I never thought we would find it here", "h/18", "(w-tw)/2", "h-th-h/12",
                    ":borderw=2:bordercolor=black"),
    "watermark": _dt("NEWS24", "h/30", "w-tw-w/40", "h/30", "@0.7"),
    "caption_box": "drawbox=x=iw/10:y=ih*0.68:w=iw*0.8:h=ih*0.22:color=black@0.5:t=fill," +
                   _dt("The excavation began in 1998", "h/22", "w/8", "h*0.71") + "," +
                   _dt("and lasted eleven years", "h/22", "w/8", "h*0.80"),
    "ticker": "drawbox=x=0:y=ih*0.9:w=iw:h=ih*0.1:color=navy@0.8:t=fill," +
              _dt("BREAKING  markets close higher as rain continues in the north", "h/20",
                  "w-mod(t*160\\,w+tw)", "h*0.915"),
    "sign": "drawbox=x=iw*0.35:y=ih*0.3:w=iw*0.3:h=ih*0.16:color=darkgreen:t=fill," +
            _dt("EXIT 12", "h/12", "(w-tw)/2", "h*0.33"),
}


def build(footage: Path, work: Path) -> list[tuple[str, str, Path]]:
    """(kind, name, path) of every case; 'none' is a text-free clip."""
    work.mkdir(parents=True, exist_ok=True)
    cases = []
    jobs = [(f, s, "none", "null") for f, s in BASES]
    jobs += [(f, s, kind, vf) for f, s in BASES for kind, vf in KINDS.items()]
    jobs += [(f, s, "natural", "null") for f, s, _ in NATURAL]
    for f, start, kind, vf in jobs:
        out = work / f"{Path(f).stem}-{start:g}-{kind}.mp4"
        if not out.exists():
            run_ffmpeg(["-ss", str(start), "-t", "3", "-i", str(footage / f), "-an",
                        "-vf", f"scale=854:-2,setsar=1,{vf}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
                        "-pix_fmt", "yuv420p", str(out.with_suffix(".tmp.mp4"))])
            out.with_suffix(".tmp.mp4").rename(out)
        cases.append((kind, out.stem, out))
    return cases


# name -> ScoreConfig changes: the heuristic, and OCR with each shipped detection model.
METHODS = {"heuristic": {"text_method": "heuristic"},
           "ocr default (v4-mobile, 480 px, 0.5/s)": {"text_method": "ocr"},
           "ocr v4-mobile 1/s": {"text_method": "ocr", "ocr_fps": 1.0},
           "ocr v6-small 1/s": {"text_method": "ocr", "ocr_model": "v6-small", "ocr_fps": 1.0},
           "ocr v4-mobile 384 px 1/s": {"text_method": "ocr", "ocr_long_side": 384, "ocr_fps": 1.0}}


def measure(path: Path, method: str) -> tuple[float, float, float]:
    """(text_area_frac, text_boxes or nan, CPU s of the whole pass) with ``method`` (a key of METHODS)."""
    signals = FrameSignals(dataclasses.replace(ScoreConfig(), **METHODS[method]))
    consumers = [SceneSplitter(DetectorConfig(), 25.0), signals]
    t = time.process_time()
    result = analyse_video(str(path), consumers, long_side_px=256, threads=1)
    scores = signals.clip_scores(0, result.num_frames, *result.analysis_size)
    cpu = time.process_time() - t
    boxes = scores["text_boxes"]
    return scores["text_area_frac"] or 0.0, boxes if boxes is not None else float("nan"), cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--footage", default=str(REPO.parent / "shared" / "footage"))
    ap.add_argument("--work", default="/tmp/rushes-text-bench")
    ap.add_argument("--min-area", type=float, default=0.001)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS),
                    help="what to compare; the first is the baseline of the CPU ratio (default: %(default)s)")
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    cases = build(Path(args.footage), Path(args.work))
    methods = tuple(args.methods)
    for m in methods:  # load the models once, as a worker does
        measure(cases[0][2], m)
    hits = {m: {} for m in methods}
    cpu = dict.fromkeys(methods, 0.0)
    for kind, name, path in cases:
        for m in methods:
            area, boxes, c = measure(path, m)
            cpu[m] += c
            found = area >= args.min_area
            hits[m].setdefault(kind, []).append(found)
            print(f"{name} {m}: area {area:.4f} boxes {boxes:.1f} -> {'text' if found else 'none'}", file=sys.stderr)
    kinds = [*KINDS, "natural"]
    print("| method | " + " | ".join(kinds) + " | recall (all text) | FP (text-free) | CPU s per 3 s clip |")
    print("|---|" + "---|" * (len(kinds) + 3))
    for m in methods:
        text = [h for k in kinds for h in hits[m][k]]
        none = hits[m]["none"]
        print(f"| {m} | " + " | ".join(f"{sum(hits[m][k])}/{len(hits[m][k])}" for k in kinds) +
              f" | {sum(text) / len(text):.2f} | {sum(none)}/{len(none)} | {cpu[m] / len(cases):.2f} |")
    for m in methods[1:]:
        print(f"\n{m} adds {cpu[m] / cpu[methods[0]] - 1:+.0%} CPU to the default analysis pass "
              f"(decode + AdaptiveDetector + all scores) over {len(cases)} clips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
