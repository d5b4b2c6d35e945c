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

# A small real video-capable VLM that runs on a laptop CPU; users with a GPU should pass a larger one.
DEFAULT_MODEL = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"
RECOMMENDED_GPU_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class CaptionConfig:
    """Everything that shapes a caption run (the model, the frames it sees, batching and resources)."""

    model: str = DEFAULT_MODEL  # hub id or local folder with config.json, weights and processor files
    revision: str | None = None  # hub branch, tag or commit; None = the default branch
    prompt: str = "dense"  # prompt name ("dense", "structured") or a versioned name ("dense-v1")
    num_frames: int = 8  # frames per clip, spread uniformly; with ``fps`` the cap on frames per clip
    fps: float | None = None  # sample at this rate instead (capped to num_frames, at least one frame)
    frame_max_side: int | None = None  # decode size cap (long side, px); None = the model processor's size
    frame_max_pixels: int = 640 * 360  # decode size cap (width*height): bounds visual tokens of huge processors
    max_new_tokens: int = 256
    do_sample: bool = False  # greedy by default: the same clip gives the same caption
    dtype: str = "auto"  # auto = bfloat16 on CUDA, float32 on CPU
    device: str = "auto"  # auto = cuda when a GPU is visible to the actor, else cpu
    batch_size: int = 4  # clips per generate call (halved automatically on out-of-memory)
    concurrency: int = 1  # model actors (each loads the model once)
    num_gpus: float = 0.0  # GPUs per model actor (0 = CPU)
    actor_cpus: float = 1.0  # CPUs reserved per model actor
    torch_threads: int | None = None  # intra-op threads in each actor; None = torch/Ray default
    decode_cpus: float = 1.0  # CPUs per frame-decoding task
    trust_remote_code: bool = False  # never run a model repo's own Python unless the user asks

    def __post_init__(self):
        if not self.model:
            raise ValueError("model is empty: pass a hub id (e.g. HuggingFaceTB/SmolVLM2-256M-Video-Instruct) "
                             "or a local folder")
        from rushes.caption.prompts import get_prompt

        get_prompt(self.prompt)  # raises naming the known prompts
        if self.num_frames < 1:
            raise ValueError(f"num_frames={self.num_frames}: must be >= 1 (8 is a good start)")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps={self.fps}: must be > 0, or None for uniform sampling")
        if self.frame_max_side is not None and self.frame_max_side < 16:
            raise ValueError(f"frame_max_side={self.frame_max_side}: must be >= 16 px or None")
        if self.frame_max_pixels < 256:
            raise ValueError(f"frame_max_pixels={self.frame_max_pixels}: must be >= 256")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens}: must be >= 1 (dense captions need ~200)")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r}: use one of {', '.join(DTYPES)}")
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}: use one of {', '.join(DEVICES)}")
        if self.batch_size < 1 or self.concurrency < 1:
            raise ValueError(f"batch_size={self.batch_size}, concurrency={self.concurrency}: both must be >= 1")
        if self.num_gpus < 0 or self.actor_cpus < 0 or self.decode_cpus <= 0:
            raise ValueError(f"num_gpus={self.num_gpus}, actor_cpus={self.actor_cpus}, decode_cpus="
                             f"{self.decode_cpus}: GPUs and actor CPUs must be >= 0 and decode CPUs > 0")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads={self.torch_threads}: must be >= 1 or None")

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
