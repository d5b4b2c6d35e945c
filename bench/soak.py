"""Soak ``rushes curate`` on a generated corpus of short videos with ~10% bad inputs (issue 12).

    python bench/soak.py [--n 500] [--preset debug] [--num-cpus 2] [--timeout-s 3600] [--keep DIR]

Generates the corpus (:mod:`rushes.testing.corpus`: ``--n`` good videos, 1-3 s, five codecs/containers, plus
``max(13, n/10)`` bad inputs of every kind: zero-byte, truncated, text/PNG/JPEG named ``.mp4``, HLS and ffconcat
lists pointing at sentinel FIFOs, a real ``.m3u8``, corrupt middle, audio-only, ``.txt``/``.json`` in the folder,
a symlinked folder, a byte-identical copy), runs the real CLI (``python -m rushes.cli curate``, a fresh local
Ray) over it with a wall-clock timeout, and reports:

- throughput: input videos per wall second and footage seconds (of the good videos) per wall second;
- peak RSS per Ray worker: ``VmHWM`` of every process under the CLI polled from ``/proc`` during the run;
- accounting: ok + error + duplicate rows + files counted as skipped = files named or expanded;
- hangs (a run past the timeout) and sentinel FIFOs opened (a file outside the inputs read): both must be 0;
- a Markdown table: each case kind -> expected outcome -> actual outcome (status:error_stage, the message's
  first words) -> pass, generated from the run's videos rows.

Exits 1 when any case mismatches, an input is unaccounted for, the run hangs or a sentinel was opened.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# bench/curate.py is named like the package the corpus uses: drop bench/ from the path so `curate` is the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))

from rushes.testing.corpus import Corpus, accounting, make_corpus, outcomes  # noqa: E402


def _proc_tree(root: int) -> dict[int, str]:
    """pid -> command line of ``root`` and every process under it."""
    parents, cmds = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            cmds[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, pp in parents.items() if pp == pid and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return {p: cmds.get(p, "") for p in tree}


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _watch(cmd: list[str], env: dict, timeout_s: float) -> dict:
    """Run ``cmd``, polling the peak RSS (VmHWM) of every process under it until it ends or times out."""
    peaks: dict[int, tuple[int, str]] = {}
    log = tempfile.TemporaryFile("w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    hang = False
    while proc.poll() is None:
        if time.perf_counter() - t0 > timeout_s:
            hang = True
            proc.kill()
            break
        for pid, cmdline in _proc_tree(proc.pid).items():
            peaks[pid] = (max(_hwm_kb(pid), peaks.get(pid, (0, ""))[0]), cmdline or peaks.get(pid, (0, ""))[1])
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    log.seek(0)
    workers = [kb for kb, c in peaks.values() if "default_worker" in c or c.startswith("ray::")]
    return {"wall_s": wall, "rc": proc.wait(), "hang": hang, "log": log.read(), "cmd": cmd,
            "worker_peaks_mb": sorted(kb / 1024 for kb in workers),
            "driver_peak_mb": peaks.get(proc.pid, (0, ""))[0] / 1024}


def run_curate(corpus: Corpus, out: Path, args) -> dict:
    """The CLI over the corpus on a fresh local Ray (rerun once, resuming, when Ray's own 30 s node start-up
    limit passes on an overloaded machine; the wall time is both runs')."""
    cmd = [sys.executable, "-m", "rushes.cli", "curate", *corpus.inputs, "--out", str(out),
           "--preset", args.preset, "--num-cpus", str(args.num_cpus), *args.extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray", dir="/tmp")}
    env.pop("RAY_ADDRESS", None)
    run = _watch(cmd, env, args.timeout_s)
    if "timed out during startup" in run["log"]:
        first = run["wall_s"]
        run = _watch(cmd, env, args.timeout_s)
        run["wall_s"] += first
    return run


def case_table(results: list[dict]) -> list[str]:
    """Markdown table: one line per (kind, expected, actual, message prefix), with its count and pass."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        c = r["case"]
        words = " ".join(r["message"].replace(c.path, "FILE").replace(os.path.dirname(c.path), "DIR").split()[:9])
        groups[(c.kind, c.expect + (f' ("{c.match}")' if c.match else ""), r["actual"], words)].append(r)
    lines = ["| case | n | expected | actual | message (first words) | pass |", "|---|---|---|---|---|---|"]
    for (kind, expect, actual, words), rs in groups.items():
        ok = sum(r["pass"] for r in rs)
        lines.append(f"| {kind} | {len(rs)} | {expect} | {actual} | {words or '-'} | "
                     f"{'yes' if ok == len(rs) else f'NO ({len(rs) - ok} failed)'} |")
    return lines


def report(corpus: Corpus, run: dict, out: Path) -> tuple[list[str], bool]:
    summary = json.loads((out / "summary.json").read_text())["curate"] if (out / "summary.json").exists() else {}
    results = outcomes(corpus, out) if (out / "videos").exists() else []
    acc = accounting(corpus, out, summary) if results else {"accounted": 0, "total": -1}
    workers = run["worker_peaks_mb"]
    inputs = acc.get("total", 0)
    opened = corpus.sentinels_opened()
    lines = [
        f"n = {len(corpus.cases)} cases ({sum(c.expect != 'ok' for c in corpus.cases)} bad or odd), "
        f"rc = {run['rc']}, wall {run['wall_s']:.1f} s (CLI process: Python, Ray start/stop, all videos)",
        f"throughput: {inputs / run['wall_s']:.2f} inputs/s, {corpus.footage_seconds() / run['wall_s']:.2f} "
        f"footage s per wall s ({corpus.footage_seconds():.0f} s of good footage)",
        f"peak RSS per Ray worker (VmHWM): max {max(workers, default=0):.0f} MB, median "
        f"{workers[len(workers) // 2] if workers else 0:.0f} MB over {len(workers)} workers; "
        f"driver {run['driver_peak_mb']:.0f} MB",
        f"accounted for: ok {acc.get('ok', 0)} + error {acc.get('error', 0)} + duplicate {acc.get('duplicate', 0)} "
        f"+ skipped {acc.get('skipped', 0)} = {acc['accounted']} of {acc['total']} inputs named or expanded",
        f"hangs: {int(run['hang'])}; sentinel files opened: {opened} of {len(corpus.sentinels)}",
        "", *case_table(results)]
    failed = (run["hang"] or opened or acc["accounted"] != acc["total"] or not results
              or not all(r["pass"] for r in results))
    return lines, bool(failed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="good videos (bad inputs: max(13, n/10) more)")
    ap.add_argument("--preset", default="debug")
    ap.add_argument("--num-cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--timeout-s", type=float, default=3600, help="a run past this is a hang")
    ap.add_argument("--keep", type=Path, help="write the corpus and run here and keep them")
    ap.add_argument("extra", nargs="*", help="more curate arguments (after --)")
    args = ap.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="soak"))
    t0 = time.perf_counter()
    corpus = make_corpus(root / "corpus", args.n)
    print(f"corpus: {len(corpus.cases)} cases in {time.perf_counter() - t0:.0f} s under {root}", flush=True)
    try:
        run = run_curate(corpus, root / "out", args)
    finally:
        corpus.close()
    lines, failed = report(corpus, run, root / "out")
    print(f"command: {' '.join(run['cmd'][1:])}")
    print("\n".join(lines))
    if failed:
        print("SOAK FAILED; the run's log tail:\n" + run["log"][-3000:])
    if not args.keep:
        subprocess.run(["rm", "-rf", str(root)], check=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
