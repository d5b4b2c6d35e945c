"""Caption stage configuration: one frozen dataclass and named presets.

Usage::

    from rushes.caption.config import CaptionConfig, preset
    cfg = preset("default", model="Qwen/Qwen2.5-VL-7B-Instruct", num_gpus=1, batch_size=8)

Paths (the run directory) and ``--limit`` are run arguments, not config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from rushes.settings import check, invalid, setting

# A small real video-capable VLM that runs on a laptop CPU; users with a GPU should pass a larger one.
DEFAULT_MODEL = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"
RECOMMENDED_GPU_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
ENGINES = ("transformers", "vllm", "openai")


@dataclass(frozen=True)
class CaptionConfig:
    """Everything that shapes a caption run (the model, the frames it sees, batching and resources)."""

    model: str = setting(DEFAULT_MODEL, "hub model id or local folder (save_pretrained output) with config.json, "
                         "weights and processor files; a hub id with a folder under $RUSHES_MODEL_DIR loads from it",
                         model=True)
    revision: str | None = setting(None, "hub branch, tag or commit", shown="the default branch")
    prompt: str = setting("dense", "prompt name or version: dense (one paragraph) or structured (JSON: short and "
                          "dense caption, camera motion, shot type)")
    num_frames: int = setting(8, "frames per clip, spread uniformly over the clip; with --fps the cap on frames per "
                              "clip", flag="--frames", ge=1, le=256, hint="8 is a good start")
    fps: float | None = setting(None, "sample frames at this rate instead, capped to --frames (at least one frame)",
                                gt=0, le=240, shown="none, uniform over the clip")
    frame_max_side: int | None = setting(None, "decode size cap (long side, px); None = the model processor's size",
                                         ge=16, le=8192, cli=False)
    frame_max_pixels: int = setting(640 * 360, "decode size cap (width*height): bounds visual tokens of huge "
                                    "processors", ge=256, cli=False)
    max_new_tokens: int = setting(256, "longest caption in tokens", ge=1, le=32768,
                                  hint="dense captions need ~200")
    temperature: float = setting(0.0, "sampling temperature; 0 = greedy (the same clip gives the same caption)",
                                 ge=0, le=5)
    top_p: float = setting(1.0, "nucleus sampling: keep the smallest token set with this probability mass", gt=0,
                           le=1)
    seed: int = setting(0, "sampling seed (a flagged caption's retry uses seed + 1)", ge=0, le=2**31 - 1)
    prompt_text: str | None = setting(None, "your own prompt text (rushes caption --prompt-file FILE); its sha256 "
                                      "goes into the prompt version", cli=False)
    engine: str = setting("transformers", "what runs the model: transformers (in the Ray actors), vllm (vLLM's "
                          "offline engine in the Ray actors; pip install vllm) or openai (an OpenAI-compatible "
                          "chat-completions server: --endpoint)", choices=ENGINES)
    endpoint: str | None = setting(None, "base URL of an OpenAI-compatible server for --engine openai, e.g. "
                                   "http://localhost:8000/v1 (vllm serve, SGLang, a hosted API)", shown="none")
    api_key_env: str = setting("OPENAI_API_KEY", "environment variable holding the --endpoint's API key (the key "
                               "is never logged or written)")
    request_concurrency: int = setting(8, "requests in flight per actor (--engine openai)", ge=1, le=1024)
    request_timeout_s: float = setting(120.0, "seconds a request may wait for the server's next byte before it is "
                                       "retried (--engine openai)", gt=0, le=3600)
    request_retries: int = setting(3, "retries of a request that timed out, was refused or got 429/5xx, with "
                                   "exponential backoff (--engine openai)", ge=0, le=20)
    vllm_gpu_memory_utilization: float = setting(0.9, "share of each GPU's memory vLLM may take (--engine vllm); "
                                                 "lower it when several actors share a GPU", gt=0, le=1)
    vllm_max_model_len: int | None = setting(None, "context length vLLM reserves per sequence (--engine vllm)",
                                             ge=256, le=1 << 20, shown="the model's")
    window_s: float | None = setting(None, "also caption each window of this many seconds of a longer clip (its "
                                     "span in window_start_s/window_end_s), beside the clip-level caption", gt=0,
                                     le=3600, shown="off, one caption per clip")
    language: str | None = setting(None, "expected caption language (ISO 639-1, e.g. en); a caption in another "
                                   "language is flagged", choices=lambda: __import__(
                                       "rushes.caption.checks", fromlist=["LANGUAGES"]).LANGUAGES,
                                   shown="not checked")
    retry_flagged: bool = setting(True, "keep a flagged caption (empty, truncated, repetition, refusal, language, "
                                  "malformed JSON) as first generated; by default it is generated once more with "
                                  "seed + 1 and sampling on, and the better one is kept with its flags",
                                  flag="--no-retry-flagged")
    dtype: str = setting("auto", "model dtype; auto = bfloat16 on GPU, float32 on CPU", choices=DTYPES)
    device: str = setting("auto", "auto = cuda when a GPU is visible to the actor, else cpu", choices=DEVICES,
                          cli=False)
    batch_size: int = setting(4, "clips per generate call, halved on out-of-memory", ge=1, le=4096)
    concurrency: int = setting(1, "model actors, each loading the model once", ge=1, le=4096)
    num_gpus: float = setting(0.0, "GPUs per model actor; 0 runs on CPU", ge=0, le=64)
    actor_cpus: float = setting(1.0, "CPUs reserved per model actor", ge=0, cli=False)
    torch_threads: int | None = setting(None, "intra-op threads in each actor; None = torch/Ray default", ge=1,
                                        cli=False)
    decode_cpus: float = setting(1.0, "CPUs per frame-decoding task", gt=0, cli=False)
    trust_remote_code: bool = setting(False, "allow the model repository's own Python code to run, only for repos "
                                      "you trust")

    def __post_init__(self):
        check(self)
        if not self.model:
            raise invalid(self, "model", "is empty: pass a hub id (e.g. HuggingFaceTB/SmolVLM2-256M-Video-Instruct) "
                          "or a local folder")
        from rushes.caption.prompts import LATEST, PROMPTS

        if self.prompt not in LATEST and self.prompt not in PROMPTS:
            raise invalid(self, "prompt", f"{self.prompt!r} is not known; use one of {', '.join([*LATEST, *PROMPTS])}")
        if self.prompt_text is not None and not self.prompt_text.strip():
            raise invalid(self, "prompt_text", "is empty: the --prompt-file holds no text")
        if self.engine == "openai" and not self.endpoint:
            raise invalid(self, "endpoint", "is needed by --engine openai: pass the server's base URL, e.g. "
                          "--endpoint http://localhost:8000/v1")
        if self.endpoint and not self.endpoint.startswith(("http://", "https://")):
            raise invalid(self, "endpoint", f"{self.endpoint!r} is not an http(s) URL; e.g. http://localhost:8000/v1")

    @property
    def do_sample(self) -> bool:
        """Sampling instead of greedy decoding (a temperature above 0)."""
        return self.temperature > 0

    def to_dict(self) -> dict:
        """Plain dict (for ``OUT/config/caption.json`` and the config hash)."""
        return dataclasses.asdict(self)


def default(**overrides) -> CaptionConfig:
    """Laptop defaults: the SmolVLM2 256M video model on CPU, 8 frames, dense prompt."""
    return CaptionConfig(**overrides)


def debug(**overrides) -> CaptionConfig:
    """Small and fast: 4 frames, short outputs, tiny batches (tests and quick trials)."""
    base = dict(num_frames=4, max_new_tokens=16, batch_size=2, frame_max_side=64)
    return CaptionConfig(**{**base, **overrides})


PRESETS: dict[str, Callable[..., CaptionConfig]] = {"default": default, "debug": debug}


def preset(name: str, **overrides) -> CaptionConfig:
    """The named preset with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown caption preset {name!r}; use one of {', '.join(PRESETS)}")
    return PRESETS[name](**overrides)
