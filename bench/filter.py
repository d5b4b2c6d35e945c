"""``rushes filter`` on a generated 100,000-row clips manifest against reading and rewriting it with pyarrow alone.

    python bench/filter.py [--rows 100000] [--parts 4] [--repeats 3]

The manifest is generated with realistic score distributions (a few percent nulls, a handful of
detector_params values, some clips already marked too_short) and written through ``manifests.write_part``.
Baseline: for every part, ``pyarrow.parquet.read_table`` then ``write_table`` (zstd, as the manifest
writer uses) to a temporary name and an atomic rename: the least any rewrite of the manifest costs.
Measured: ``rushes.curate.filter.filter_run`` with presets alternating so every run really rewrites every part,
and the same command re-run with unchanged thresholds (decisions compared, nothing rewritten).
Runs are interleaved and the median of ``--repeats`` is kept; prints a markdown table of ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rushes import manifests  # noqa: E402
from rushes.curate.filter import filter_run  # noqa: E402

LABELS = ["static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out", "shaky", "complex"]


def make_manifest(run_dir: Path, rows: int, parts: int, seed: int = 0) -> None:
    """Write ``rows`` synthetic clips in ``parts`` part files."""
    rng = np.random.default_rng(seed)
    per = rows // parts
    params = [json.dumps({"detector": "AdaptiveDetector", "min_clip_s": m, "max_clip_s": 60.0}) for m in (1.0, 2.0, 3.0)]
    for p in range(parts):
        n = per if p < parts - 1 else rows - per * (parts - 1)
        dur = rng.gamma(2.0, 3.0, n)

        def score(values, null_frac=0.02):
            return pa.array(values.astype(np.float32), mask=rng.random(n) < null_frac)

        cols = {
            "clip_id": pa.array([f"{p:02d}{i:08d}" for i in range(n)]),
            "video_id": pa.array([f"v{i // 20:07d}" for i in range(n)]),
            "start_s": pa.array(start := rng.uniform(0, 3000, n)), "end_s": pa.array(start + dur),
            "duration_s": pa.array(dur),
            "width_px": pa.array(rng.choice([320, 640, 1280, 1920], n).astype(np.int32)),
            "height_px": pa.array(rng.choice([240, 360, 720, 1080], n).astype(np.int32)),
            "detector_params": pa.array(rng.choice(params, n)),
            "motion_mean": score(rng.lognormal(-4, 1.5, n)), "motion_p90": score(rng.lognormal(-3.5, 1.5, n)),
            "frame_diff_mean": score(rng.lognormal(-2.5, 1, n)),
            "camera_motion": pa.array(rng.choice(LABELS, n), mask=rng.random(n) < 0.02),
            "sharpness": score(rng.lognormal(5, 1, n)), "brightness_mean": score(rng.beta(3, 4, n)),
            "contrast_std": score(rng.beta(2, 8, n) * 0.5), "black_frame_frac": score(rng.beta(0.2, 5, n)),
            "flat_frame_frac": score(rng.beta(0.2, 5, n)), "colourfulness": score(rng.gamma(3, 10, n)),
            "text_area_frac": score(rng.beta(0.3, 30, n)), "aspect_ratio": score(rng.choice([4 / 3, 16 / 9, 0.5625], n)),
        }
        short = pa.array(dur < 2.0)
        cols["keep"] = pa.array(~np.asarray(short))
        cols["reject_reason"] = pa.array(np.where(np.asarray(short), "too_short", None))
        manifests.write_part(run_dir, "clips", pa.table(cols), part_name=f"part-{p:03d}")


def pyarrow_rewrite(run_dir: Path) -> None:
    """Baseline: read every part and write it back atomically with pyarrow alone."""
    for path in sorted((run_dir / "clips").glob("*.parquet")):
        table = pq.read_table(path)
        tmp = path.with_name(f"_tmp-{path.stem}")
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def timed(fn) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="clips in the generated manifest")
    ap.add_argument("--parts", type=int, default=4, help="part files the manifest is split into")
    ap.add_argument("--repeats", type=int, default=3, help="runs per measurement; the median is reported")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rushes-bench-filter-") as tmp:
        run_dir = Path(tmp)
        make_manifest(run_dir, args.rows, args.parts)
        size_mb = sum(p.stat().st_size for p in (run_dir / "clips").glob("*.parquet")) / 2**20
        presets = ["strict", "default"]
        results: dict = {}
        walls: dict[str, list[float]] = {"base": [], "full": [], "same": []}
        # Interleaved, so load from other processes hits every measurement alike.
        for i in range(args.repeats):
            walls["base"].append(timed(lambda: pyarrow_rewrite(run_dir)))
            walls["full"].append(timed(lambda: results.update(full=filter_run(run_dir, preset=presets[i % 2]))))
            walls["same"].append(timed(lambda: results.update(same=filter_run(run_dir, preset=presets[i % 2]))))
        base, full, same = (statistics.median(walls[k]) for k in ("base", "full", "same"))
    print(f"{args.rows:,} clips in {args.parts} parts ({size_mb:.1f} MiB Parquet), median of {args.repeats} runs\n")
    print("| run | wall (s) | ratio to pyarrow read+rewrite |")
    print("|---|---:|---:|")
    print(f"| pyarrow read + rewrite (baseline) | {base:.3f} | 1.00x |")
    print(f"| `rushes filter` (thresholds changed: every part rewritten) | {full:.3f} | {full / base:.2f}x |")
    print(f"| `rushes filter` re-run, same thresholds (nothing rewritten) | {same:.3f} | {same / base:.2f}x |")
    r = results["full"]
    print(f"\nLast full run: {r['kept']:,} kept, {r['rejected']:,} rejected, {len(r['reasons'])} distinct reasons, "
          f"{r['parts_rewritten']} parts rewritten. Target: within 3x of the baseline: "
          f"{'met' if full / base <= 3 else 'NOT met'}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
