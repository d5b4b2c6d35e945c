"""Near-duplicate clips on the shared footage: catch rate per transform, false positives, cost.

    python bench/dedup.py [--footage ../shared/footage] [--work /tmp/rushes-dedup] [--scale 100000]

1. Every shared video gets five copies (``rushes.testing.near_copies``: x264 CRF 34, MPEG-4 part 2, 0.5x,
   5% centre crop, first 1.3 s trimmed). The originals are curated into OUT (default config, no clip files),
   then originals + copies into the same OUT, each video through ``rushes.curate.adapter.process_video`` and the
   run's search through ``rushes.curate.dedup.dedup_run`` (what ``rushes curate`` runs). Caught = the copy's clip
   points at the original's clip over the same time. The same clips searched as one run (copies and
   originals together, no earlier run to prefer): found = the copy's clip and the original's are marked
   one way or the other.
2. False positives: every pair of distinct clips of the shared footage (other videos, and other shots of
   the same video) verified with ``rushes.curate.dedup.match_share``; and the marks of the originals searched alone.
3. Cost: the analysis pass of every original with and without the signature consumer (process CPU time,
   interleaved, best of 2), as CPU seconds added per minute of footage; the search's time on the run, and
   on ``--scale`` synthetic clips (random signatures, a fifth of them still shots).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rushes import manifests  # noqa: E402
from rushes.curate.adapter import RunInfo, process_video  # noqa: E402
from rushes.curate.config import EncodeConfig, default  # noqa: E402
from rushes.curate.decode import analyse_video  # noqa: E402
from rushes.curate.dedup import DedupConfig, candidate_pairs, dedup_run, match_share  # noqa: E402
from rushes.curate.probe import probe_video  # noqa: E402
from rushes.curate.scores import FrameSignals  # noqa: E402
from rushes.curate.signature import FrameSignature  # noqa: E402
from rushes.curate.split import SceneSplitter  # noqa: E402
from rushes.testing.near_copies import TRANSFORMS, make_copies, marked, score_copies  # noqa: E402


def _curate(paths, out, cfg) -> None:
    run = RunInfo("bench", "{}")
    for p in paths:
        process_video(str(p), out, cfg, run)


def _copy_run(src: Path, dst: Path, videos: set[str] | None = None) -> None:
    """The videos and clips parts of ``src`` (of ``videos``' ids only, when given) in a new OUT ``dst``."""
    for kind in ("videos", "clips"):
        (dst / kind).mkdir(parents=True)
        for part in (src / kind).glob("part-*.parquet"):
            if videos is None or part.stem.removeprefix("part-") in videos:
                shutil.copy(part, dst / kind / part.name)


def catch_rates(sources, plan, work: Path, cfg) -> tuple[dict, dict, dict]:
    """(two-run scores, one-run scores, dedup_run result of the two-run OUT) per transform.

    One run is the two-run OUT's parts searched again without the earlier run's precedence: process_video
    writes the same parts whichever run it is in, so no video is decoded twice."""
    two, one = work / "two-runs", work / "one-run"
    _curate(sources, two, cfg)
    before = manifests.now_utc() + timedelta(microseconds=1)
    _curate(sorted(plan), two, cfg)
    result = dedup_run(two, before=before)
    _copy_run(two, one)
    dedup_run(one)
    return score_copies(two, plan), score_copies(one, plan), result


def false_positives(sources, work: Path) -> dict:
    """Verified pairs among all distinct clips of the originals, and the marks of a run of them alone."""
    out = work / "originals"
    paths = {str(Path(p).resolve()) for p in sources}
    ids = {v["video_id"] for v in manifests.read(work / "two-runs", "videos").to_pylist() if v["path"] in paths}
    _copy_run(work / "two-runs", out, ids)
    dedup_run(out)
    t = manifests.read(out, "clips")
    sigs = [np.asarray(s or [], np.uint64) for s in t["signature"].to_pylist()]
    videos = t["video_id"].to_pylist()
    dc = DedupConfig()
    pairs = same_video = passed = 0
    best = 0.0
    for i, j in itertools.combinations(range(len(sigs)), 2):
        a, b = (sigs[i], sigs[j]) if np.count_nonzero(sigs[i]) <= np.count_nonzero(sigs[j]) else (sigs[j], sigs[i])
        share, matches = match_share(a, b, dc)
        pairs += 1
        same_video += videos[i] == videos[j]
        passed += share >= dc.min_share and matches >= dc.min_matches
        best = max(best, share)
    return {"clips": len(sigs), "pairs": pairs, "same_video_pairs": same_video, "verified": passed,
            "max_share": best, "marked_in_run": len(marked(out))}


def _pass_cpu(path: Path, with_signature: bool) -> float:
    probe = probe_video(str(path))
    consumers = [SceneSplitter(default().detector, probe.fps), FrameSignals()]
    if with_signature:
        consumers.append(FrameSignature())
    t = time.process_time()
    analyse_video(str(path), consumers, 256)
    return time.process_time() - t


def pass_cost(sources) -> dict:
    """CPU seconds of the default analysis pass with and without the signature consumer (best of 2)."""
    base = sig = 0.0
    minutes = sum(probe_video(str(p)).duration_s or 0.0 for p in sources) / 60
    for p in sources:
        runs = {True: [], False: []}
        for flag in (False, True, False, True):
            runs[flag].append(_pass_cpu(p, flag))
        base += min(runs[False])
        sig += min(runs[True])
    return {"footage_min": minutes, "base_cpu_s": base, "signature_cpu_s": sig}


def search_scale(n: int) -> dict:
    """Candidate generation on ``n`` synthetic clips of 16 samples (a fifth of them still shots)."""
    rng = np.random.default_rng(0)
    sigs = [rng.integers(1, 2**63, size=16, dtype=np.uint64) if k % 5 else
            np.repeat(rng.integers(1, 2**63, size=1, dtype=np.uint64), 16) for k in range(n)]
    t = time.perf_counter()
    pairs = candidate_pairs(sigs, np.arange(n), DedupConfig())
    return {"clips": n, "candidates": len(pairs), "s": time.perf_counter() - t}


def _table(two: dict, one: dict) -> list[str]:
    lines = ["| copy | clips | unhashable (flat) | caught, two runs | rate | found, one run | rate |",
             "|---|---|---|---|---|---|---|"]
    total = [0, 0, 0, 0]
    for name in TRANSFORMS:
        c, o = two[name], one[name]
        hashable = c.clips - c.unhashable
        found = o.caught + o.inverted
        total = [total[0] + c.clips, total[1] + c.unhashable, total[2] + c.caught, total[3] + found]
        lines.append(f"| {name} | {c.clips} | {c.unhashable} | {c.caught} | {c.caught / hashable:.3f} | {found} | "
                     f"{found / (o.clips - o.unhashable):.3f} |")
    h = total[0] - total[1]
    lines.append(f"| all | {total[0]} | {total[1]} | {total[2]} | {total[2] / h:.3f} | {total[3]} | "
                 f"{total[3] / h:.3f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--footage", type=Path, default=REPO.parent / "shared" / "footage")
    ap.add_argument("--work", type=Path, default=Path("/tmp/rushes-dedup"))
    ap.add_argument("--scale", type=int, default=100_000, help="synthetic clips for the search-cost row")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    sources = sorted(p for p in args.footage.iterdir() if p.suffix in (".mp4", ".mkv", ".webm"))
    (args.work / "copies").mkdir(parents=True, exist_ok=True)
    for d in ("two-runs", "one-run", "originals"):
        if (args.work / d).exists():
            sys.exit(f"{args.work / d} exists: give an empty --work folder")
    plan = make_copies(sources, args.work / "copies")
    cfg = dataclasses.replace(default(), encode=EncodeConfig(enabled=False))
    two, one, result = catch_rates(sources, plan, args.work, cfg)
    fp = false_positives(sources, args.work)
    cost = pass_cost(sources)
    scale = search_scale(args.scale)
    print(f"{len(sources)} videos, {len(plan)} copies; DedupConfig defaults {dataclasses.asdict(DedupConfig())}\n")
    print("\n".join(_table(two, one)))
    print(f"\nfalse positives: {fp['verified']} of {fp['pairs']} distinct clip pairs ({fp['clips']} clips, "
          f"{fp['same_video_pairs']} pairs within one video) pass verification, best share {fp['max_share']:.2f}; "
          f"{fp['marked_in_run']} clips marked in a run of the originals alone")
    added = cost["signature_cpu_s"] - cost["base_cpu_s"]
    print(f"cost: default analysis pass {cost['base_cpu_s'] / cost['footage_min']:.2f} CPU s per footage minute, "
          f"with the signature {cost['signature_cpu_s'] / cost['footage_min']:.2f} (+{added / cost['footage_min']:.2f}"
          f" s/min, {100 * added / cost['base_cpu_s']:+.1f}%)")
    print(f"search: {result['clips']} clips in {result['dedup_s']:.2f} s (read, search, rewrite); candidates on "
          f"{scale['clips']} synthetic clips: {scale['candidates']} pairs in {scale['s']:.1f} s")


if __name__ == "__main__":
    main()
