"""Bench: does the HTML report scale? A 10,000-clip run against a 100-clip run, in headless Chromium.

    python bench/report.py [--clips 10000] [--baseline 100] [--repeats 5] [--workdir DIR]

Builds one synthetic run (source videos made with ffmpeg's lavfi, clips as 2 s spans into them, random
scores, reasons and ~50-word captions), writes a report for the first ``--baseline`` clips and one for
all ``--clips``, then opens each page ``--repeats`` times in a fresh headless Chromium (cold start,
interleaved) and reads from the page the time from navigation start until DOMContentLoaded and until the
first screen of contact-sheet thumbnails has loaded. Prints a markdown table of the medians and their
ratio (target: page ready for 10,000 clips within 2x of 100), plus the report-generation time with
thumbnail extraction on its own line.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rushes.manifests import store  # noqa: E402
from rushes.media.ffmpeg import run_ffmpeg  # noqa: E402
from rushes.inspect.page import ReportConfig, build_report  # noqa: E402
from rushes.inspect.thumbs import ThumbConfig  # noqa: E402
from rushes.testing.browser import Browser, find_chromium  # noqa: E402

CLIP_S = 2.0
SOURCES = 4
WORDS = ("a person walks slowly across the frame while the camera pans left over a busy street at dusk with "
         "warm light reflecting on wet pavement and cars passing in the background near tall buildings").split()
REASONS = ("dark", "motion<0.02", "too_short", "text", "blurry", "dark;motion<0.02", "blurry;dark")


def make_sources(src_dir: Path, seconds: float) -> list[Path]:
    """``SOURCES`` tiny lavfi videos (128x72, 2 fps) of ``seconds`` each, different patterns."""
    src_dir.mkdir(parents=True, exist_ok=True)
    patterns = ("testsrc2", "smptebars", "cellauto", "rgbtestsrc")  # cheap lavfi sources
    paths = []
    for i in range(SOURCES):
        path = src_dir / f"source{i}.mp4"
        if not path.exists():
            run_ffmpeg(["-f", "lavfi", "-i", f"{patterns[i]}=size=128x72:rate=2", "-t", f"{seconds}",
                        "-c:v", "libx264", "-preset", "ultrafast", "-g", "20", "-pix_fmt", "yuv420p", "-y",
                        str(path)], timeout_s=600, whitelist=None)
        paths.append(path)
    return paths


def make_run(run: Path, sources: list[Path], n_clips: int, seed: int = 0) -> Path:
    """A run directory of ``n_clips`` 2 s clips spread over the sources, with scores and captions."""
    rng = random.Random(seed)
    per_source = -(-n_clips // len(sources))
    store.write_part(run, "videos", [{"video_id": f"v{i}", "path": str(p), "status": "ok",
                                      "duration_s": per_source * CLIP_S, "width_px": 128, "height_px": 72}
                                     for i, p in enumerate(sources)], part_name="part-0")
    clips, captions = [], []
    for k in range(n_clips):
        v, j = divmod(k, per_source)
        keep = rng.random() < 0.6
        clip_id = f"clip{k:06d}"
        clips.append({"clip_id": clip_id, "video_id": f"v{v}", "start_s": j * CLIP_S, "end_s": (j + 1) * CLIP_S,
                      "duration_s": CLIP_S, "width_px": 128, "height_px": 72, "keep": keep,
                      "reject_reason": None if keep else rng.choice(REASONS),
                      "motion_mean": rng.lognormvariate(-3, 1), "motion_p90": rng.lognormvariate(-2, 1),
                      "frame_diff_mean": rng.random() * 0.2, "sharpness": rng.lognormvariate(5, 1),
                      "brightness_mean": rng.random(), "contrast_std": rng.random() * 0.5,
                      "black_frame_frac": rng.random() * 0.1, "flat_frame_frac": rng.random() * 0.1,
                      "colourfulness": rng.random() * 100, "text_area_frac": rng.random() * 0.2,
                      "aspect_ratio": 16 / 9, "camera_motion": rng.choice(("static", "pan_left", "shaky"))})
        if keep:
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(30, 70)))
            captions.append({"caption_id": f"cap{k:06d}", "clip_id": clip_id, "caption": words.capitalize() + ".",
                             "captioner": "bench-vlm", "prompt_version": "dense-v1", "status": "ok"})
    store.write_part(run, "clips", clips, part_name="part-0")
    store.write_part(run, "captions", captions, part_name="part-0")
    return run


WARMUP = ("data:text/html,<title>warm-up</title><body style='font:14px system-ui'><h2>warm-up</h2>"
          "<select><option>x</option></select><input type=search><svg><rect width=9 height=9/></svg></body>")
READY = "document.documentElement.dataset.ready === '1'"
TIMES = """(() => { const n = performance.getEntriesByType('navigation')[0];
  return {dcl: n.domContentLoadedEventEnd, ready: window.__rushesReady,
          imgs: window.__rushesReadyImages,
          loaded: Array.from(document.querySelectorAll('#rows img')).filter(i => i.complete && i.naturalWidth > 0
                  && i.getBoundingClientRect().top < innerHeight).length,
          heap: performance.memory ? performance.memory.usedJSHeapSize : null}; })()"""
RESORT = """(() => { const r = window.rushesReport, t = performance.now();
  r.state.sort = 'sharpness'; r.state.filter = 'rejected'; r.render(); return performance.now() - t; })()"""


def measure_page(chromium: str, html: Path) -> dict:
    """One cold load in a fresh browser: times (ms) from navigation start, and one sort+filter re-render."""
    with Browser(chromium, width=1400, height=1000, timeout_s=60) as b:
        # Warm the renderer (process start, fonts) on another page so the timing is the report's own.
        b.navigate(WARMUP)
        b.navigate(html.as_uri() + "#sheet")
        b.wait_for(READY, timeout_s=60)
        out = b.evaluate(TIMES)
        out["resort"] = b.evaluate(RESORT)
        return out


def median_of(samples: list[dict], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=10_000, help="clips in the large run (default: 10000)")
    ap.add_argument("--baseline", type=int, default=100, help="clips in the baseline run (default: 100)")
    ap.add_argument("--repeats", type=int, default=5, help="cold page loads per run (default: 5)")
    ap.add_argument("--workdir", type=Path, help="keep sources and runs here (default: a temp dir, removed)")
    args = ap.parse_args()
    chromium = find_chromium()
    if chromium is None:
        print("headless Chromium not found: apt install chromium or set RUSHES_CHROMIUM", file=sys.stderr)
        return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rushes-bench-report-"))
    try:
        t = time.perf_counter()
        sources = make_sources(work / "src", -(-args.clips // SOURCES) * CLIP_S)
        print(f"sources: {time.perf_counter() - t:.1f} s", file=sys.stderr)
        runs, builds = {}, {}
        for n in (args.baseline, args.clips):
            shutil.rmtree(work / f"run{n}", ignore_errors=True)
            run = make_run(work / f"run{n}", sources, n)
            builds[n] = build_report(run, run / "report.html", ReportConfig(thumbs=ThumbConfig()))
            runs[n] = []
            print(f"report {n}: {builds[n].total_s:.1f} s (thumbnails {builds[n].thumbs_s:.1f} s, "
                  f"{builds[n].thumbs_failed} failed)", file=sys.stderr)
        for _ in range(args.repeats):
            for n in runs:
                runs[n].append(measure_page(chromium, builds[n].html_path))
        print_table(args.baseline, args.clips, runs, builds)
        print_extraction(work / f"run{args.clips}", min(1000, args.clips))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(small: int, big: int, runs: dict, builds: dict) -> None:
    """Markdown table of medians for both runs and their ratio."""
    def row(name, a, b, fmt="{:.0f}"):
        ratio = f"{b / a:.2f}x" if a else "-"
        print(f"| {name} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")

    print(f"\n| metric (median of {len(runs[small])} cold loads) | {small:,} clips | {big:,} clips | ratio |")
    print("|---|---:|---:|---:|")
    row("**page ready** (nav start -> first screen of thumbnails loaded), ms",
        median_of(runs[small], "ready"), median_of(runs[big], "ready"))
    row("DOMContentLoaded, ms", median_of(runs[small], "dcl"), median_of(runs[big], "dcl"))
    row("thumbnails loaded in the first screen", median_of(runs[small], "imgs"), median_of(runs[big], "imgs"))
    row("sort + filter + re-render, ms", median_of(runs[small], "resort"), median_of(runs[big], "resort"), "{:.1f}")
    if runs[small][0]["heap"] is not None:
        row("JS heap after ready, MB", median_of(runs[small], "heap") / 2**20, median_of(runs[big], "heap") / 2**20,
            "{:.1f}")
    size = {n: b.html_path.stat().st_size / 2**20 for n, b in builds.items()}
    row("report.html size, MB", size[small], size[big], "{:.2f}")
    row("report generation total, s", builds[small].total_s, builds[big].total_s, "{:.1f}")
    row("of which thumbnail extraction, s", builds[small].thumbs_s, builds[big].thumbs_s, "{:.1f}")
    rate = {n: b.clips / b.thumbs_s for n, b in builds.items()}
    row("thumbnail strips per s", rate[small], rate[big], "{:.0f}")


def print_extraction(run: Path, n: int) -> None:
    """Thumbnail extraction of the first ``n`` clips: one decode pass per run of adjacent spans (what the
    report does) against one seek-and-decode per clip, both in one process."""
    from rushes.inspect.thumbs import extract_thumbnails, thumb_tasks

    clips = store.read(run, "clips").slice(0, n).to_pylist()
    videos = {v["video_id"]: v for v in store.read(run, "videos").to_pylist()}
    secs = {}
    for name, cfg in (("per clip", ThumbConfig(workers=1, max_batch_clips=1)), ("batched", ThumbConfig(workers=1))):
        tasks, _ = thumb_tasks(run, clips, videos, cfg)
        out = run / f"bench-thumbs-{name.replace(' ', '-')}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        extract_thumbnails(tasks, out, cfg)
        secs[name] = time.perf_counter() - t
    print(f"\n| thumbnail extraction, {n:,} clips, 1 process | one decode per clip | one pass per source "
          f"(batched) | speed-up |\n|---|---:|---:|---:|\n| seconds | {secs['per clip']:.1f} | "
          f"{secs['batched']:.1f} | {secs['per clip'] / secs['batched']:.2f}x |")


if __name__ == "__main__":
    sys.exit(main())
