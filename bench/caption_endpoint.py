"""The openai engine against an endpoint: is the endpoint kept busy?

    python bench/caption_endpoint.py [--clips 48] [--batch-size 2] [--request-concurrency 8] [--latency-s 1.0]

A real chat-completions server on 127.0.0.1 (rushes/testing/chat_server.py, a tiny random-weight Qwen2.5-VL) stands in
for a vLLM or hosted endpoint: each request is answered after a random wait of 0 to ``--latency-s`` seconds (mean
half of it; requests wait side by side, as on a server that batches), then the tiny model's own answer (one at a
time). ``rushes caption --engine openai`` runs on ``--clips`` clips with one actor.

The physical limit is the endpoint's: ``request_concurrency / mean wait`` clips per second when requests are always
``request_concurrency`` deep (or the tiny model's serial answer rate, measured, when that is lower). The table gives
each run's steady clips/s (the caption summary's, after the first part: Ray and actor start-up left out) against it,
and the most requests the server saw at once, for an actor that takes one batch at a time (as before: requests in
flight capped by the batch size, each batch waiting for its slowest answer) and one that takes several.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rushes.caption.config import preset  # noqa: E402
from rushes.caption.pipeline import run  # noqa: E402
from rushes.testing.chat_server import ChatServer  # noqa: E402
from rushes.testing.grey_clips import make_grey_video, make_run  # noqa: E402
from rushes.testing.tiny import build_tiny_qwen25_vl  # noqa: E402


def _run(root: Path, name: str, video, spans, model, args, one_batch: bool) -> dict:
    """One caption run against a fresh server; ``one_batch``: an actor takes one batch at a time (as before)."""
    import ray

    from rushes.caption import pipeline

    make_run(root / name, video, spans)
    with ChatServer(model, delay_s=args.latency_s, seed=1) as server:
        cfg = preset("default", model="served", engine="openai", endpoint=server.url, num_frames=4,
                     max_new_tokens=16, frame_max_side=112, retry_flagged=False, batch_size=args.batch_size,
                     request_concurrency=args.request_concurrency, concurrency=1, actor_cpus=0.25)
        pool = pipeline._actor_pool
        if one_batch:
            pipeline._actor_pool = lambda c: ray.data.ActorPoolStrategy(size=c.concurrency)
        try:
            t0 = time.perf_counter()
            summary = run(root / name, cfg)
            wall = time.perf_counter() - t0
        finally:
            pipeline._actor_pool = pool
        return {"summary": summary, "wall": wall, "in_flight": server.max_in_flight,
                "answered": sum(r.get("status") == 200 for r in server.requests), "server": server}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--request-concurrency", type=int, default=8)
    ap.add_argument("--latency-s", type=float, default=1.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        video = make_grey_video(root / "grey.mp4")
        spans = [(round((i * 0.37) % 10.0, 2), round((i * 0.37) % 10.0, 2) + 1.5) for i in range(args.clips)]
        model = build_tiny_qwen25_vl(root / "model")
        runs = {"one batch at a time per actor (before)": _run(root, "a", video, spans, model, args, True),
                "several batches per actor (now)": _run(root, "b", video, spans, model, args, False)}
        server = runs["several batches per actor (now)"]["server"]
        t0 = time.perf_counter()
        for _ in range(4):  # the serial part: the server's model answers one request at a time
            server.model.answer([], "a", 16, 0.0, 1.0, 0)
        serial = (time.perf_counter() - t0) / 4
    # The endpoint's limit: request_concurrency requests always in flight, each waiting latency/2 on average, plus
    # the stand-in model's serial answer time.
    limit = 1.0 / max(serial, (args.latency_s / 2) / args.request_concurrency)
    print(f"{args.clips} clips, batch size {args.batch_size}, request_concurrency {args.request_concurrency}, "
          f"endpoint wait 0-{args.latency_s:g} s; endpoint limit {limit:.1f} clips/s\n")
    print("| actor | captioned | most requests in flight | wall (s) | steady clips/s | of the endpoint limit |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in runs.items():
        steady = r["summary"].get("steady_clips_per_s") or 0.0
        print(f"| {name} | {r['summary']['captioned']} | {r['in_flight']} | {r['wall']:.1f} | {steady:.2f} | "
              f"{steady / limit:.2f} |")


if __name__ == "__main__":
    main()
