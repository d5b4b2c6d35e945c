"""The one owner of vLLM (``--engine vllm``): its offline engine, ``LLM.generate`` with multi-modal inputs, run
inside the Ray actor pool exactly where the transformers engine runs, so the CPU decode tasks keep feeding it.

Each clip becomes one request: the prompt rendered by the model's own chat template (the same text the transformers
engine builds) and the clip's frames as one video (``(frames, metadata)`` with ``do_sample_frames=False``, so the
model sees our frames at their real timing) or, for families without a video processor, as N images. A batch is one
``LLM.generate`` call; vLLM schedules its requests with continuous batching and returns them in input order.

vLLM is not a dependency of rushes: it pins its own torch (rushes pins torch 2.14.1). Install it on a GPU machine
in its own environment (``pip install vllm`` then rushes without the ``caption`` extra's torch pin). Without it,
``rushes caption --engine vllm`` stops at once with exit 2 and says so.

Usage::

    cap = VllmCaptioner(cfg, resolved)              # loads the model into vLLM once per actor
    gens = cap.generate(clips, prompt.text, sampling)
"""

from __future__ import annotations

from collections.abc import Sequence

from rushes.caption.captioner import engine_version, load_processor, render_prompt, video_metadata
from rushes.caption.engine import EngineUnavailableError, Generation, Sampling, sampling_of
from rushes.caption.frames import ClipFrames

INSTALL_HINT = ("pip install vllm on a machine with a CUDA GPU, in its own environment (vllm pins its own torch; "
                "rushes pins torch 2.14.1), or use --engine openai against a `vllm serve` endpoint")


def import_vllm():
    """The ``vllm`` module, or :class:`EngineUnavailableError` naming the package and how to get it."""
    try:
        import vllm
    except ImportError as exc:
        raise EngineUnavailableError(f"--engine vllm needs the vllm package, which is not installed here ({exc}): "
                                     f"{INSTALL_HINT}") from None
    return vllm


class VllmCaptioner:
    """vLLM's offline engine behind the caption engine interface (see the module docstring)."""

    engine = "vllm"

    def __init__(self, cfg, resolved):
        vllm = import_vllm()
        self.cfg = cfg
        self.processor = load_processor(resolved, cfg)
        self.video_mode = getattr(self.processor, "video_processor", None) is not None
        self.engine_version = f"vllm {getattr(vllm, '__version__', None) or engine_version('vllm').split()[-1]}"
        self._sampling_params = vllm.SamplingParams
        limit = {"video": 1} if self.video_mode else {"image": cfg.num_frames}
        extra = {"max_model_len": cfg.vllm_max_model_len} if cfg.vllm_max_model_len else {}
        self.llm = vllm.LLM(model=resolved.load_name, revision=resolved.load_revision,
                            tokenizer_revision=resolved.load_revision, dtype=cfg.dtype,
                            trust_remote_code=cfg.trust_remote_code, seed=cfg.seed, limit_mm_per_prompt=limit,
                            gpu_memory_utilization=cfg.vllm_gpu_memory_utilization, **extra)

    def request(self, clip: ClipFrames, prompt_text: str) -> dict:
        """The vLLM prompt dict of one clip: chat-template text plus its frames."""
        prompt = render_prompt(self.processor, prompt_text, len(clip.times_s), self.video_mode)
        if self.video_mode:
            return {"prompt": prompt, "multi_modal_data": {"video": [(clip.rgb, video_metadata(clip))]},
                    "mm_processor_kwargs": {"do_sample_frames": False}}
        return {"prompt": prompt, "multi_modal_data": {"image": list(clip.rgb)}}

    def generate(self, clips: Sequence[ClipFrames], prompt_text: str,
                 sampling: Sampling | None = None) -> list[Generation]:
        """Caption ``clips`` in one ``LLM.generate`` call; results are in input order."""
        sampling = sampling or sampling_of(self.cfg)
        params = self._sampling_params(temperature=sampling.temperature, top_p=sampling.top_p,
                                       max_tokens=sampling.max_new_tokens, seed=sampling.seed)
        outputs = self.llm.generate([self.request(c, prompt_text) for c in clips], params, use_tqdm=False)
        if len(outputs) != len(clips):
            raise RuntimeError(f"vllm returned {len(outputs)} outputs for {len(clips)} requests")
        gens = []
        for out in outputs:
            best = out.outputs[0]
            gens.append(Generation(best.text, len(out.prompt_token_ids or ()), len(best.token_ids),
                                   best.finish_reason, self.engine_version))
        return gens
