"""Caption throughput: the whole Ray pipeline (the ``rushes caption`` path) vs ``generate`` in a loop.

    python bench/caption.py [--clips 32] [--batch-size 4] [--max-new-tokens 64] [--layers 6] [--hidden 768]

Both sides use the same random-weight Qwen2.5-VL built offline (rushes/testing/tiny.py), on CPU,
the same clips, the same frames (8 per clip) and the same batches. The baseline decodes every batch
first and then times only ``Captioner.generate`` over them in a loop (model loaded, no Ray, no
decoding, no manifest writes). The pipeline side runs ``rushes.caption.pipeline.run`` on a fresh run
directory: Ray Data decode tasks, the model actor, Parquet parts. Prints a markdown table of ratios.
No GPU is used here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rushes.caption.adapter import decode_batch, frames_from_row, plan_run  # noqa: E402
from rushes.caption.captioner import Captioner, frame_spec, load_processor, resolve_model  # noqa: E402
from rushes.caption.config import preset  # noqa: E402
from rushes.caption.pipeline import run  # noqa: E402
from rushes.caption.prompts import get_prompt  # noqa: E402
from rushes.testing.grey_clips import make_grey_video, make_run  # noqa: E402
from rushes.testing.tiny import build_tiny_qwen25_vl  # noqa: E402


def _baseline(cfg, out, batch_size: int) -> tuple[float, int, int]:
    """Seconds, output tokens and parameter count of generate() over pre-decoded batches (model loaded)."""
    resolved = resolve_model(cfg)
    spec = frame_spec(load_processor(resolved, cfg), cfg)
    tasks = plan_run(out, resolved.captioner, "dense-v1").tasks
    batches = []
    for i in range(0, tasks.num_rows, batch_size):
        frames = decode_batch(tasks.slice(i, batch_size), spec, cfg.num_frames, cfg.fps)
        batches.append([frames_from_row(r) for r in frames.to_pylist()])
    captioner = Captioner(cfg, resolved)
    prompt = get_prompt(cfg.prompt).text
    captioner.generate(batches[0], prompt)  # warm-up, as the pipeline's first batch pays it too
    start = time.perf_counter()
    tokens = sum(g.output_tokens for batch in batches for g in captioner.generate(batch, prompt))
    return time.perf_counter() - start, tokens, sum(p.numel() for p in captioner.model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--layers", type=int, default=6, help="language-model layers of the tiny Qwen2.5-VL")
    ap.add_argument("--hidden", type=int, default=768, help="language-model width")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads on both sides (1: the other core decodes; 2 threads on a loaded "
                         "2-core machine oversubscribe and run ~10x slower)")
    args = ap.parse_args()

    import ray
    import torch

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="rushes-bench-caption-"))
    video = make_grey_video(root / "grey.mp4")
    starts = [round((i * 0.43) % 10.0, 2) for i in range(args.clips)]  # distinct spans, 1 or 2 s long
    spans = [(s, s + 1.0 + (i % 2)) for i, s in enumerate(starts)]
    model = build_tiny_qwen25_vl(root / "model", text_layers=args.layers, hidden=args.hidden, max_pixels=112 * 112)
    cfg = preset("default", model=str(model), num_frames=8, max_new_tokens=args.max_new_tokens,
                 batch_size=args.batch_size, torch_threads=args.threads, frame_max_side=112)

    base_out = root / "base"
    make_run(base_out, video, spans, encoded=set(range(0, args.clips, 2)))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        base_s, base_tokens, params = _baseline(cfg, base_out, args.batch_size)
        pipe_out = root / "pipe"
        make_run(pipe_out, video, spans, encoded=set(range(0, args.clips, 2)))
        start = time.perf_counter()
        summary = run(pipe_out, cfg)
        pipe_s = time.perf_counter() - start
        base2_s, _, _ = _baseline(cfg, base_out, args.batch_size)
    finally:
        ray.shutdown()
    base_rate = args.clips / ((base_s + base2_s) / 2)
    e2e_rate = args.clips / pipe_s
    steady = summary["steady_clips_per_s"]
    print(f"\nmodel: Qwen2.5-VL random weights, {args.layers} layers x {args.hidden} wide "
          f"({params / 1e6:.1f}M parameters), 8 frames/clip at <=112x112, {args.max_new_tokens} new tokens max, batch {args.batch_size}, "
          f"{args.clips} clips, CPU, {args.threads} torch threads; {os.cpu_count()} cores\n")
    print("| measure | clips/s | ratio vs direct generate |")
    print("|---|---|---|")
    print(f"| direct `generate` loop on pre-decoded batches (baseline: mean of a run before and after the "
          f"pipeline: {args.clips / base_s:.3f} and {args.clips / base2_s:.3f}) | {base_rate:.3f} | 1.00 |")
    print(f"| pipeline steady state (after the first batch) | {steady:.3f} | {steady / base_rate:.2f} |")
    print(f"| pipeline end to end (Ray actor start + model load + decode + write) | {e2e_rate:.3f} | "
          f"{e2e_rate / base_rate:.2f} |")
    print(f"\noutput tokens: baseline {base_tokens}, pipeline {summary['output_tokens']}; "
          f"pipeline startup (until the first batch) {summary['startup_s']:.1f} s; "
          f"status ok {summary['ok']}/{summary['captioned']}")


if __name__ == "__main__":
    main()
