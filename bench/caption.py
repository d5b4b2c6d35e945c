"""Caption throughput: output tokens/s of the whole pipeline (the ``rushes caption`` path) against the engine alone.

    python bench/caption.py [--clips 32] [--batch-size 4] [--max-new-tokens 64] [--layers 6] [--hidden 768]
    python bench/caption.py --engine vllm --num-gpus 1 --layers 28 --hidden 3584 --heads 28 --clips 256 \
        --batch-size 64 --max-new-tokens 256

Both sides use the same random-weight Qwen2.5-VL built offline (rushes/testing/tiny.py), the same clips, the same
frames (8 per clip), the same prompt and the same greedy decoding, so they generate the same tokens (the script
checks the counts match): this is cosmos-curate's "speed of light" ratio. The engine-alone side decodes every
batch first, then times only the engine's ``generate`` over them in a loop inside one Ray actor with the pipeline
actor's resources (model loaded, no Ray Data, no decoding, no checks, no manifest writes), once before and once
after the pipeline; the faster of the two is the reference. The pipeline side runs
``rushes.caption.pipeline.run`` on a fresh run directory: Ray Data decode tasks, the model actor, the caption checks,
Parquet parts. Flagged captions are not retried here (``retry_flagged=False``): a retry is extra generation the
engine-alone side does not do, and a random-weight model's captions are all flagged (truncated).

``--engine vllm`` (GPU, vllm installed in its own environment) runs the same comparison with vLLM's offline
engine; compare its engine-alone figure with ``vllm bench throughput`` at the same lengths (printed). Prints a
markdown table.
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
from rushes.caption.captioner import frame_spec, load_processor, resolve_model  # noqa: E402
from rushes.caption.config import preset  # noqa: E402
from rushes.caption.engine import engine_class, sampling_of  # noqa: E402
from rushes.caption.pipeline import run  # noqa: E402
from rushes.caption.prompts import get_prompt  # noqa: E402
from rushes.testing.grey_clips import make_grey_video, make_run  # noqa: E402
from rushes.testing.tiny import build_tiny_qwen25_vl  # noqa: E402


def _batches(cfg, out, batch_size: int) -> list[list]:
    """Every clip of ``out`` decoded, in the pipeline's batches."""
    resolved = resolve_model(cfg)
    spec = frame_spec(load_processor(resolved, cfg), cfg)
    tasks = plan_run(out, resolved.captioner, get_prompt(cfg.prompt).version).tasks
    batches = []
    for i in range(0, tasks.num_rows, batch_size):
        frames = decode_batch(tasks.slice(i, batch_size), spec, cfg.num_frames, cfg.fps)
        batches.append([frames_from_row(r) for r in frames.to_pylist()])
    return batches


def _engine_alone(engine, batches, cfg) -> tuple[float, int]:
    """Seconds and output tokens of the engine's generate over pre-decoded batches (after one warm-up batch)."""
    prompt, sampling = get_prompt(cfg.prompt).text, sampling_of(cfg)
    engine.generate(batches[0], prompt, sampling)  # warm-up, as the pipeline's first batch pays it too
    start = time.perf_counter()
    tokens = sum(g.output_tokens for batch in batches for g in engine.generate(batch, prompt, sampling))
    return time.perf_counter() - start, tokens


def _alone_in_actor(ray, cfg, batches) -> tuple[float, int, int | None]:
    """The engine alone, timed inside a Ray actor with the pipeline actor's resources (the same process setup:
    Ray's thread settings, its CPU reservation), then the actor is released (the GPU too, for vllm)."""

    @ray.remote(num_cpus=cfg.actor_cpus, num_gpus=cfg.num_gpus or None)
    class Alone:
        def __init__(self):
            self.engine = engine_class(cfg)(cfg, resolve_model(cfg))

        def run(self, batches):
            seconds, tokens = _engine_alone(self.engine, batches, cfg)
            model = getattr(self.engine, "model", None)
            return seconds, tokens, sum(p.numel() for p in model.parameters()) if model is not None else None

    actor = Alone.remote()
    try:
        return ray.get(actor.run.remote(batches))
    finally:
        ray.kill(actor)


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=("transformers", "vllm"), default="transformers")
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--layers", type=int, default=6, help="language-model layers of the tiny Qwen2.5-VL")
    ap.add_argument("--hidden", type=int, default=768, help="language-model width")
    ap.add_argument("--heads", type=int, default=4, help="attention heads (vLLM's kernels want head size <= 256: "
                    "28 for a 7B-shaped 3584-wide model)")
    ap.add_argument("--num-gpus", type=float, default=0.0, help="GPUs for the model (vllm: 1)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads on both sides (1: the other core decodes; 2 threads on a loaded "
                         "2-core machine oversubscribe and run ~10x slower)")
    return ap.parse_args()


def _setup(args, root: Path):
    video = make_grey_video(root / "grey.mp4")
    starts = [round((i * 0.43) % 10.0, 2) for i in range(args.clips)]  # distinct spans, 1 or 2 s long
    spans = [(s, s + 1.0 + (i % 2)) for i, s in enumerate(starts)]
    model = build_tiny_qwen25_vl(root / "model", text_layers=args.layers, hidden=args.hidden, max_pixels=112 * 112,
                                 heads=args.heads)
    cfg = preset("default", model=str(model), num_frames=8, max_new_tokens=args.max_new_tokens,
                 batch_size=args.batch_size, torch_threads=args.threads, frame_max_side=112, engine=args.engine,
                 num_gpus=args.num_gpus, retry_flagged=False, vllm_gpu_memory_utilization=0.5)
    for name in ("base", "pipe"):
        make_run(root / name, video, spans, encoded=set(range(0, args.clips, 2)))
    return cfg


def main() -> None:
    args = _args()
    import ray
    import torch

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="rushes-bench-caption-"))
    cfg = _setup(args, root)
    ray.init(address="local", num_cpus=2 if not args.num_gpus else None, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    try:
        batches = ray.put(_batches(cfg, root / "base", args.batch_size))
        time.sleep(10)  # let Ray's prestarted workers finish importing before anything is timed
        base_s, base_tokens, params = _alone_in_actor(ray, cfg, batches)
        start = time.perf_counter()
        summary = run(root / "pipe", cfg)
        pipe_s = time.perf_counter() - start
        base2_s, base2_tokens, _ = _alone_in_actor(ray, cfg, batches)
    finally:
        ray.shutdown()
    from rushes.manifests import store

    summary["prompt_tokens_mean"] = round(float(store.read(root / "pipe", "captions")["input_tokens"]
                                                .to_numpy(zero_copy_only=False).mean()), 1)
    summary["model_folder"] = str(root / "model")
    _report(args, params, (base_s, base_tokens), (base2_s, base2_tokens), summary, pipe_s)


def _report(args, params, first, second, summary: dict, pipe_s: float) -> None:
    (base_s, base_tokens), (base2_s, base2_tokens) = first, second
    # The speed of light is the engine's best: the faster of the two runs (a run slowed by load elsewhere on the
    # machine, or by Ray's own start-up, would flatter the pipeline).
    base_rate = max(base_tokens / base_s, base2_tokens / base2_s)
    steady = summary["steady_output_tokens_per_s"]
    e2e = summary["output_tokens"] / pipe_s
    size = f"{params / 1e6:.1f}M parameters, " if params else ""
    print(f"\nengine {args.engine}; model: Qwen2.5-VL random weights, {args.layers} layers x {args.hidden} wide "
          f"({size}8 frames/clip at <=112x112, {args.max_new_tokens} new tokens max, greedy), batch "
          f"{args.batch_size}, {args.clips} clips, {args.num_gpus:g} GPU, {args.threads} torch threads; "
          f"{os.cpu_count()} cores\n")
    print("| measure | output tokens/s | ratio vs engine alone |")
    print("|---|---:|---:|")
    print(f"| engine alone: `generate` loop on pre-decoded batches in a Ray actor (the faster of a run before and "
          f"after the pipeline: {base_tokens / base_s:.1f} and {base2_tokens / base2_s:.1f}) | {base_rate:.1f} | "
          f"1.00 |")
    print(f"| pipeline steady state (after the first batch) | {steady:.1f} | **{steady / base_rate:.2f}** |")
    print(f"| pipeline end to end (Ray start, actor start, model load, decode, checks, write) | {e2e:.1f} | "
          f"{e2e / base_rate:.2f} |")
    print(f"\noutput tokens: engine alone {base_tokens} (and {base2_tokens}), pipeline {summary['output_tokens']}"
          f"{'' if base_tokens == summary['output_tokens'] else ' (MISMATCH: not the same work)'}; "
          f"pipeline startup (until the first batch) {summary['startup_s']:.1f} s; "
          f"status ok {summary['ok']}/{summary['captioned']}")
    if args.engine == "vllm":
        print(f"\ncompare with: vllm bench throughput --model {summary['model_folder']} --backend vllm "
              f"--dataset-name random --random-input-len {int(summary['prompt_tokens_mean'])} "
              f"--random-output-len {args.max_new_tokens} --num-prompts {args.clips}")


if __name__ == "__main__":
    main()
