"""The openai engine against an endpoint: is the endpoint kept busy?

    python bench/caption_endpoint.py [--clips 48] [--batch-size 2] [--request-concurrency 8] [--latency-s 1.0]

A real chat-completions server on 127.0.0.1 (rushes/testing/chat_server.py, a tiny random-weight Qwen2.5-VL) stands in
for a vLLM or hosted endpoint: each request is answered after a random wait of 0 to ``--latency-s`` seconds (mean
half of it; requests wait side by side, as on a server that batches), then the tiny model's own answer (one at a
time). ``rushes caption --engine openai`` runs on ``--clips`` clips with one actor.

The physical limit is the endpoint's: ``clips x mean wait / request_concurrency`` seconds when requests are always
``request_concurrency`` deep (the tiny model's serial answer time is measured and added). The table gives the
pipeline's wall time against it, and the most requests the server saw at once. Before an actor took several batches at
once, requests in flight were capped by the batch size and every batch waited for its slowest answer.
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
        make_run(root / "run", video, spans)
        with ChatServer(model, delay_s=args.latency_s, seed=1) as server:
            cfg = preset("default", model="served", engine="openai", endpoint=server.url, num_frames=4,
                         max_new_tokens=16, frame_max_side=112, retry_flagged=False, batch_size=args.batch_size,
                         request_concurrency=args.request_concurrency, concurrency=1, actor_cpus=0.25)
            t0 = time.perf_counter()
            summary = run(root / "run", cfg)
            wall = time.perf_counter() - t0
            answered = [r for r in server.requests if r.get("status") == 200]
            # The serial part: the server's model answers one request at a time.
            t0 = time.perf_counter()
            for _ in range(4):
                server.model.answer([], "a", 16, 0.0, 1.0, 0)
            serial = (time.perf_counter() - t0) / 4 * len(answered)
            limit = len(answered) * (args.latency_s / 2) / args.request_concurrency + serial
    print(f"{args.clips} clips, batch size {args.batch_size}, request_concurrency {args.request_concurrency}, "
          f"endpoint wait 0-{args.latency_s:g} s\n")
    print("| captioned | requests | most in flight | pipeline wall (s) | endpoint limit (s) | limit / wall |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {summary['captioned']} | {len(answered)} | {server.max_in_flight} | {wall:.1f} | {limit:.1f} | "
          f"{limit / wall:.2f} |")


if __name__ == "__main__":
    main()
