"""The one owner of transformers and diffusers in the trainer: the frozen text encoder and the optional VAE.

Both load through ``from_pretrained`` from a model id or a local folder, so tests and users take the
same path. For offline tests and smoke runs :func:`save_tiny_text_encoder` and :func:`save_tiny_vae`
write tiny random-weight models of the real families to a folder.

Use::

    enc = TextEncoder("google/t5-v1_1-base", max_tokens=64)
    emb, mask = enc.encode(["a dog runs on a beach"])   # (N, Lt, D) float32, (N, Lt) bool
    vae = Vae("path/to/vae")                            # diffusers AutoencoderKL or a video VAE
    z = vae.encode(video)                               # (C, T, H, W) in [-1, 1] -> normalised latent
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

T5_TYPES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}
CLIP_TYPES = {"clip": "CLIPTextModel", "clip_text_model": "CLIPTextModel"}


class EncoderError(RuntimeError):
    """A text encoder or VAE could not be loaded; the message names the id and the fix."""


def _model_type(id_or_path: str) -> str:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(id_or_path).model_type
    except (OSError, ValueError) as exc:
        raise EncoderError(f"cannot load the config of text encoder {id_or_path!r}: {exc}; pass a transformers "
                           f"id or a local folder of a T5 encoder or CLIP text model (--text-encoder)") from exc


class TextEncoder:
    """A frozen transformers text encoder (T5 encoder or CLIP text model) giving per-token embeddings."""

    def __init__(self, id_or_path: str, max_tokens: int = 64, device: str = "cpu",
                 dtype: torch.dtype = torch.float32):
        import transformers
        from transformers import AutoTokenizer

        self.id = id_or_path
        self.max_tokens = max_tokens
        self.device = device
        mtype = _model_type(id_or_path)
        cls_name = T5_TYPES.get(mtype) or CLIP_TYPES.get(mtype) or "AutoModel"
        self.tokenizer = AutoTokenizer.from_pretrained(id_or_path)
        self.model = getattr(transformers, cls_name).from_pretrained(id_or_path, dtype=dtype).to(device).eval()
        self.model.requires_grad_(False)
        cfg = self.model.config
        self.hidden_size = int(getattr(cfg, "d_model", None) or getattr(cfg, "hidden_size", None)
                               or cfg.text_config.hidden_size)
        self.is_clip = mtype in CLIP_TYPES
        if self.is_clip:  # CLIP's position table bounds the caption length
            self.max_tokens = min(max_tokens, int(getattr(cfg, "max_position_embeddings", max_tokens)))

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (N, Lt, D) float32 on CPU and mask (N, Lt) bool of ``texts`` (truncated to max_tokens)."""
        batch = self.tokenizer(list(texts), padding="longest", truncation=True, max_length=self.max_tokens,
                               return_tensors="pt")
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        out = self.model(input_ids=ids, attention_mask=mask)
        return out.last_hidden_state.float().cpu(), mask.bool().cpu()


def save_tiny_text_encoder(path: str | os.PathLike, kind: str = "t5", hidden: int = 32, vocab_size: int = 400,
                           seed: int = 0) -> str:
    """Write a tiny random-weight T5 encoder (``kind="t5"``) or CLIP text model (``"clip"``) with a
    byte-level BPE tokenizer to ``path``; returns the path, loadable with :class:`TextEncoder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast, T5Config, T5EncoderModel

    path = Path(path)
    specials = ["<pad>", "</s>", "<unk>"] if kind == "t5" else ["<|endoftext|>", "<|startoftext|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    corpus = ["a dog runs on a beach at sunset while the camera pans", "a black and white film of a man walking",
              "an animated rabbit in a green forest, bright colours", "fire burning at night, fast motion",
              "close-up of a cockatoo bird, handheld camera", "the quick brown fox jumps over the lazy dog"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    if kind == "t5":  # T5 appends </s>; CLIP wraps in <|startoftext|> ... <|endoftext|>
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    elif kind == "clip":
        tok.post_processor = processors.TemplateProcessing(single="<|startoftext|> $A <|endoftext|>",
                                                           special_tokens=[("<|startoftext|>", 1),
                                                                           ("<|endoftext|>", 0)])
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>", eos_token="<|endoftext|>",
                                       bos_token="<|startoftext|>")
    else:
        raise ValueError(f"unknown tiny text encoder kind {kind!r}; use 't5' or 'clip'")
    torch.manual_seed(seed)
    if kind == "t5":
        cfg = T5Config(vocab_size=tok.get_vocab_size(), d_model=hidden, d_kv=8, d_ff=2 * hidden, num_layers=2,
                       num_heads=4, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        model = T5EncoderModel(cfg)
    else:
        cfg = CLIPTextConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=2 * hidden,
                             num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                             pad_token_id=0, bos_token_id=1, eos_token_id=0)
        model = CLIPTextModel(cfg)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return str(path)


class Vae:
    """A frozen diffusers VAE: an image ``AutoencoderKL`` (applied per frame) or a video VAE taking
    (B, C, T, H, W) such as ``AutoencoderKLWan`` or ``AutoencoderKLCogVideoX``.

    Latents are normalised with the VAE's ``latents_mean``/``latents_std`` when it has them, else with
    ``shift_factor``/``scaling_factor``. The compression factors are measured once by encoding a dummy clip.
    """

    def __init__(self, id_or_path: str, subfolder: str | None = None, device: str = "cpu",
                 dtype: torch.dtype = torch.float32):
        import diffusers

        self.id = id_or_path
        self.device = device
        try:
            self.model = diffusers.AutoModel.from_pretrained(id_or_path, subfolder=subfolder, torch_dtype=dtype)
        except (OSError, ValueError, EnvironmentError) as exc:
            raise EncoderError(f"cannot load VAE {id_or_path!r} (subfolder {subfolder!r}): {exc}; pass a diffusers "
                               f"id or local folder of an AutoencoderKL or video VAE (--vae)") from exc
        self.model = self.model.to(device).eval().requires_grad_(False)
        self.dtype = dtype
        self.video = type(self.model).__name__ != "AutoencoderKL"
        cfg = self.model.config
        self.channels = int(cfg.get("latent_channels") or cfg.get("z_dim"))
        mean, std = cfg.get("latents_mean"), cfg.get("latents_std")
        if mean is not None and std is not None:
            self.shift = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
            self.scale = 1.0 / torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)
        else:
            self.shift = torch.tensor(float(cfg.get("shift_factor") or 0.0))
            self.scale = torch.tensor(float(cfg.get("scaling_factor") or 1.0))
        self.temporal_factor, self.spatial_factor = self._measure_factors()

    def _measure_factors(self) -> tuple[int, int]:
        probe = torch.zeros(3, 9, 64, 64)
        z = self._encode_raw(probe)
        spatial = 64 // z.shape[-1]
        temporal = 1 if z.shape[1] == 9 else (9 - 1) // max(1, z.shape[1] - 1)
        return temporal, spatial

    def valid_frames(self, n: int) -> int:
        """Largest usable pixel frame count <= n: 1 + k * temporal_factor for causal video VAEs."""
        if self.temporal_factor == 1:
            return n
        return 1 + (n - 1) // self.temporal_factor * self.temporal_factor if n >= 1 else 0

    def latent_frames(self, n: int) -> int:
        return n if self.temporal_factor == 1 else 1 + (n - 1) // self.temporal_factor

    @torch.no_grad()
    def _encode_raw(self, video: torch.Tensor) -> torch.Tensor:
        x = video.to(self.device, self.dtype)
        if self.video:
            z = self.model.encode(x[None]).latent_dist.mode()[0]  # (C', T', H', W')
        else:
            z = self.model.encode(x.permute(1, 0, 2, 3)).latent_dist.mode().permute(1, 0, 2, 3)  # (C', T, H', W')
        return z.float().cpu()

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(3, T, H, W) in [-1, 1] -> normalised latent (C', T', H', W') float32 on CPU."""
        return (self._encode_raw(video) - self.shift) * self.scale

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latent (C', T', H', W') -> video (3, T, H, W) in about [-1, 1], float32 on CPU."""
        z = (latent.float() / self.scale + self.shift).to(self.device, self.dtype)
        if self.video:
            x = self.model.decode(z[None]).sample[0]
        else:
            x = self.model.decode(z.permute(1, 0, 2, 3)).sample.permute(1, 0, 2, 3)
        return x.float().cpu()


def save_tiny_vae(path: str | os.PathLike, kind: str = "image", seed: int = 0) -> str:
    """Write a tiny random-weight diffusers VAE to ``path``: ``"image"`` (AutoencoderKL, 4x spatial) or
    ``"wan"`` (AutoencoderKLWan, 4x temporal, 4x spatial). Returns the path, loadable with :class:`Vae`."""
    from diffusers import AutoencoderKL, AutoencoderKLWan

    torch.manual_seed(seed)
    if kind == "image":
        vae = AutoencoderKL(block_out_channels=(8, 8, 16), down_block_types=("DownEncoderBlock2D",) * 3,
                            up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=4,
                            layers_per_block=1, sample_size=32)
    elif kind == "wan":
        vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 2], num_res_blocks=1,
                               temperal_downsample=[True, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4,
                               scale_factor_temporal=4, scale_factor_spatial=4)
    else:
        raise ValueError(f"unknown tiny VAE kind {kind!r}; use 'image' or 'wan'")
    vae.save_pretrained(path)
    return str(path)

