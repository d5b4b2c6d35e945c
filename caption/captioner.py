"""The one owner of transformers: load a vision-language model and caption batches of decoded clips.

Any ``AutoModelForImageTextToText`` family works. Families with a video processor (Qwen2-VL,
Qwen2.5-VL, SmolVLM2, ...) get each clip as one video made of our own frames (``do_sample_frames=False``
plus ``video_metadata`` so the model sees the real timing); others get the frames as several images.
The model's own chat template renders the prompt. Generation is batched with left padding, greedy by
default, bf16 on GPU and fp32 on CPU.

Usage::

    resolved = resolve_model(cfg)                # hub id -> snapshot commit, local folder -> weights hash
    cap = Captioner(cfg, resolved)
    gens = cap.generate([clip_frames, ...], prompt.text)   # list[Generation], same order
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rushes.caption.config import DEFAULT_MODEL, CaptionConfig
from rushes.caption.engine import Generation, Sampling, sampling_of
from rushes.caption.frames import ClipFrames, FrameSpec

__all__ = ["Captioner", "Generation", "ModelNotFoundError", "ResolvedModel", "frame_spec", "load_processor",
           "resolve_model"]

_SAMPLE_BYTES = 1 << 20


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from and the ``captioner`` string recorded on its rows (``id@revision``)."""

    load_name: str  # local folder, or hub id
    load_revision: str | None  # exact commit for hub ids (every actor loads the same weights)
    captioner: str



def local_weights_hash(folder: str | os.PathLike) -> str:
    """Hash of a local model folder: config and processor files whole, weight files sampled.

    Weights are hashed by name, size and 1 MiB samples at the start, middle and end, so a 15 GB
    checkpoint hashes in milliseconds while a fine-tune (different values) still changes the hash.
    """
    folder = Path(folder)
    h = hashlib.blake2b(digest_size=8)
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        h.update(path.name.encode())
        size = path.stat().st_size
        h.update(str(size).encode())
        with open(path, "rb") as fh:
            if path.suffix in (".json", ".txt", ".jinja", ".model") or size <= 3 * _SAMPLE_BYTES:
                h.update(fh.read())
                continue
            for offset in (0, size // 2, size - _SAMPLE_BYTES):
                fh.seek(offset)
                h.update(fh.read(_SAMPLE_BYTES))
    return h.hexdigest()


class ModelNotFoundError(FileNotFoundError):
    """The model id or folder cannot be found or fetched."""


def resolve_model(cfg: CaptionConfig, allow_download: bool = True) -> ResolvedModel:
    """Pin the model: a local folder by its weights hash, a hub id by the snapshot commit in the cache.

    A hub model missing from the cache is downloaded here, once, by the driver (``allow_download``).
    Raises :class:`ModelNotFoundError` naming the model when neither works.
    """
    if cfg.engine == "openai":  # the server holds the weights: its model name, pinned only by --revision
        return ResolvedModel(cfg.model, cfg.revision, f"{cfg.model}@{cfg.revision or 'served'}")
    if os.path.isdir(cfg.model):
        folder = os.path.abspath(cfg.model)
        if not os.path.exists(os.path.join(folder, "config.json")):
            raise ModelNotFoundError(f"{folder} has no config.json: point --model at a folder written by "
                                     f"save_pretrained (model, processor and tokenizer files)")
        return ResolvedModel(folder, None, f"{folder}@{local_weights_hash(folder)}")
    if cfg.model.startswith(("/", "./", "../", "~")) or cfg.model.count("/") > 1:
        raise ModelNotFoundError(f"model folder {cfg.model} does not exist: check the path, or pass a hub id "
                                 f"such as {DEFAULT_MODEL}")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(cfg.model, revision=cfg.revision, local_files_only=True)
    except Exception:  # not cached (huggingface_hub raises several types): fetch or give up
        if not allow_download:
            return ResolvedModel(cfg.model, cfg.revision, f"{cfg.model}@{cfg.revision or 'unresolved'}")
        try:
            path = snapshot_download(cfg.model, revision=cfg.revision)
        except Exception as exc:  # noqa: BLE001 - network, auth, unknown repo: one message for the user
            raise ModelNotFoundError(f"cannot fetch model {cfg.model!r} (revision {cfg.revision or 'default'}) "
                                     f"from the Hugging Face hub: {exc}; check the id and the network, or pass "
                                     f"a local folder") from exc
    commit = Path(path).name
    return ResolvedModel(cfg.model, commit, f"{cfg.model}@{commit}")


def load_processor(resolved: ResolvedModel, cfg: CaptionConfig):
    """The model's ``AutoProcessor`` with left padding (batched generation of a decoder-only model)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(resolved.load_name, revision=resolved.load_revision,
                                              trust_remote_code=cfg.trust_remote_code)
    processor.tokenizer.padding_side = "left"
    return processor


def frame_spec(processor, cfg: CaptionConfig) -> FrameSpec:
    """Decode size for this model: its processor's input size, bounded by the config's caps.

    Qwen-style processors (``merge_size``) give a pixel budget in ``size['longest_edge']``; SmolVLM
    gives ``max_image_size``; others a side length in ``size``. Without a processor (``--engine openai``: the
    server's model) only the config's caps apply.
    """
    if cfg.frame_max_side or processor is None:  # openai: the server resizes; we cap what we send
        return FrameSpec(max_side=cfg.frame_max_side, max_pixels=cfg.frame_max_pixels)
    proc = getattr(processor, "video_processor", None) or processor.image_processor
    size = dict(getattr(proc, "size", None) or {})
    if hasattr(proc, "merge_size"):
        budget = getattr(proc, "max_pixels", None) or size.get("longest_edge") or cfg.frame_max_pixels
        return FrameSpec(max_pixels=min(int(budget), cfg.frame_max_pixels))
    side = (getattr(proc, "max_image_size", None) or {}).get("longest_edge") or size.get("longest_edge") \
        or max(size.get("height") or 0, size.get("width") or 0) or size.get("shortest_edge") or 512
    return FrameSpec(max_side=int(side), max_pixels=cfg.frame_max_pixels)


def pick_device_dtype(cfg: CaptionConfig):
    """(device, torch dtype): bf16 on CUDA, fp32 on CPU unless the config says otherwise."""
    import torch

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.dtype != "auto":
        return device, getattr(torch, cfg.dtype)
    return device, torch.bfloat16 if device == "cuda" else torch.float32


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/CPU out-of-memory errors (retry the batch smaller)."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def render_prompt(processor, prompt_text: str, num_frames: int, video_mode: bool, still: bool = False) -> str:
    """The chat-template text for one clip (visual placeholders not yet expanded): one video, or N images (a still:
    one image)."""
    visual = [{"type": "video"}] if video_mode and not still else [{"type": "image"}] * num_frames
    conversation = [{"role": "user", "content": [*visual, {"type": "text", "text": prompt_text}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)


def video_metadata(clip: ClipFrames) -> dict:
    """What video processors need to know of frames we sampled ourselves (their real timing)."""
    n = len(clip.times_s)
    return dict(total_num_frames=n, fps=clip.sampled_fps, width=clip.rgb.shape[2], height=clip.rgb.shape[1],
                duration=n / clip.sampled_fps, frames_indices=list(range(n)))


def engine_version(package: str) -> str:
    """``'<package> <version>'`` of an installed package."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return f"{package} unknown"


class Captioner:
    """A loaded model and processor; :meth:`generate` captions a batch of clips (the ``transformers`` engine)."""

    engine = "transformers"

    def __init__(self, cfg: CaptionConfig, resolved: ResolvedModel):
        import torch
        from transformers import AutoModelForImageTextToText

        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        self.cfg = cfg
        self.resolved = resolved
        self.device, self.dtype = pick_device_dtype(cfg)
        self.processor = load_processor(resolved, cfg)
        self.model = AutoModelForImageTextToText.from_pretrained(
            resolved.load_name, revision=resolved.load_revision, dtype=self.dtype,
            trust_remote_code=cfg.trust_remote_code).to(self.device).eval()
        self.video_mode = getattr(self.processor, "video_processor", None) is not None
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        pad = self.model.generation_config.pad_token_id
        self.pad_id = pad if pad is not None else self.processor.tokenizer.pad_token_id
        self.engine_version = engine_version("transformers")

    def render_prompt(self, prompt_text: str, num_frames: int, still: bool = False) -> str:
        """The chat-template text for one clip, or one still image (visual placeholders not yet expanded)."""
        return render_prompt(self.processor, prompt_text, num_frames, self.video_mode, still)

    def build_inputs(self, clips: Sequence[ClipFrames], prompt_text: str):
        """Processor outputs for a batch (left-padded tensors), ready for ``model.generate``."""
        texts = [self.render_prompt(prompt_text, len(c.times_s), c.still) for c in clips]
        if self.video_mode and not any(c.still for c in clips):  # a batch is all stills or all clips
            from transformers.video_utils import VideoMetadata

            metadata = [VideoMetadata(**video_metadata(c)) for c in clips]
            extra = {}
            if hasattr(self.processor.video_processor, "cap_pixels_per_frame"):
                extra["cap_pixels_per_frame"] = True  # Qwen: bound pixels per video like qwen-vl-utils does
            return self.processor(text=texts, videos=[c.rgb for c in clips], video_metadata=metadata,
                                  do_sample_frames=False, padding=True, return_tensors="pt", **extra)
        return self.processor(text=texts, images=[list(c.rgb) for c in clips], padding=True, return_tensors="pt")

    def generate(self, clips: Sequence[ClipFrames], prompt_text: str,
                 sampling: Sampling | None = None) -> list[Generation]:
        """Caption ``clips`` in one batched ``generate`` call; results are in input order."""
        import torch

        sampling = sampling or sampling_of(self.cfg)
        inputs = self.build_inputs(clips, prompt_text).to(self.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        if "pixel_values_videos" in inputs:
            inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.dtype)
        sample = {"do_sample": False} if sampling.greedy else dict(
            do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        with torch.inference_mode():
            if not sampling.greedy:
                torch.manual_seed(sampling.seed)
            out = self.model.generate(**inputs, max_new_tokens=sampling.max_new_tokens, pad_token_id=self.pad_id,
                                      **sample)
        prompt_len = inputs["input_ids"].shape[1]
        new = out[:, prompt_len:].cpu()
        texts = self.processor.batch_decode(new, skip_special_tokens=True)
        in_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        return [Generation(text, int(n_in), *self._count_output(row.tolist()), self.engine_version)
                for text, n_in, row in zip(texts, in_tokens, new)]

    def _count_output(self, ids: list[int]) -> tuple[int, str]:
        # Generated tokens up to and including the first end-of-sequence (the rest is padding), and why it stopped.
        for i, tok in enumerate(ids):
            if tok in self.eos_ids:
                return i + 1, "stop"
        return sum(1 for tok in ids if tok != self.pad_id), "length"

