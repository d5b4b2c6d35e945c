"""What every caption engine takes and returns, and which engine a config picks.

An engine captions a batch of decoded clips with one prompt text and one :class:`Sampling`, and returns one
:class:`Generation` (or the exception of that clip's request) per clip, in input order. Three engines exist, each in
the one module that owns its outside tool: ``transformers`` (:mod:`rushes.caption.captioner`), ``vllm``
(:mod:`rushes.caption.vllm_engine`) and ``openai`` (:mod:`rushes.caption.chat`, any OpenAI-compatible
chat-completions server). The rows they lead to have one schema whichever ran; ``engine`` and ``engine_version``
say which.

Usage::

    check_engine(cfg)                       # driver: raises EngineUnavailableError (vllm missing, server down)
    engine = engine_class(cfg)(cfg, resolved)
    gens = engine.generate(clips, prompt.text, sampling_of(cfg))
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


class EngineUnavailableError(RuntimeError):
    """The engine cannot run here: its package is missing, or its server cannot be reached (exit 2)."""


@dataclass(frozen=True)
class Sampling:
    """How to sample one generation; ``temperature == 0`` is greedy decoding."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Generation:
    """One clip's model output, its token counts, and why it stopped (``stop``, ``length`` or unknown)."""

    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: str | None = None
    engine_version: str | None = None  # per response (openai: the server that answered)


def sampling_of(cfg) -> Sampling:
    """The first attempt's sampling from a :class:`~rushes.caption.config.CaptionConfig`."""
    return Sampling(cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.seed)


# A retry needs sampling on: greedy decoding with another seed gives the same text again.
RETRY_TEMPERATURE = 0.7


def retry_sampling(first: Sampling) -> Sampling:
    """The retry of a flagged caption: the next seed, and sampling at ``RETRY_TEMPERATURE`` when it was greedy."""
    return Sampling(first.temperature if not first.greedy else RETRY_TEMPERATURE, first.top_p,
                    first.max_new_tokens, first.seed + 1)


def engine_class(cfg) -> type:
    """The engine class of ``cfg.engine`` (imports only that engine's module)."""
    if cfg.engine == "openai":
        from rushes.caption.chat import ChatCaptioner

        return ChatCaptioner
    if cfg.engine == "vllm":
        from rushes.caption.vllm_engine import VllmCaptioner

        return VllmCaptioner
    from rushes.caption.captioner import Captioner

    return Captioner


def check_engine(cfg, api_key: str | None = None) -> None:
    """Fail early, on the driver, when the engine cannot run: vllm not installed, or the endpoint not answering."""
    if cfg.engine == "vllm":
        from rushes.caption.vllm_engine import import_vllm

        import_vllm()
    elif cfg.engine == "openai":
        from rushes.caption.chat import ping

        ping(cfg.endpoint, api_key, timeout_s=min(cfg.request_timeout_s, 30.0), env_name=cfg.api_key_env)
