"""The one owner of transformers and diffusers in the trainer: the frozen text encoder and the optional VAE.

Both load through ``from_pretrained`` from a model id or a local folder, so tests and users take the
same path (offline tests build tiny random-weight models with ``rushes.testing.tiny``). The frame
arithmetic of a causal video VAE lives here too (:func:`latent_frames`, :func:`pixel_frames`): data planning
and sampling both ask it.

Use::

    enc = TextEncoder("google/t5-v1_1-base", max_tokens=64)
    emb, mask = enc.encode(["a dog runs on a beach"])   # (N, Lt, D) float32, (N, Lt) bool
    vae = Vae("path/to/vae")                            # diffusers AutoencoderKL or a video VAE
    z = vae.encode(video)                               # (C, T, H, W) in [-1, 1] -> normalised latent
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

T5_TYPES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}
CLIP_TYPES = {"clip": "CLIPTextModel", "clip_text_model": "CLIPTextModel"}

# Caption token budget per text encoder family (a transformers ``model_type``), when --max-text-tokens is not
# given: what the models trained with that encoder use (Wan's UMT5: 512; T5: 300, as PixArt-Sigma and Open-Sora,
# ~250 words, which holds a dense caption of rushes caption's 256 new tokens; CLIP: its 77 positions). Add a
# family here; :func:`default_text_tokens` is the one reader.
DEFAULT_TEXT_TOKENS = {"umt5": 512, "t5": 300, "mt5": 300, "clip": 77, "clip_text_model": 77}
FALLBACK_TEXT_TOKENS = 300  # any other encoder (still capped by its position table, see text_token_budget)


def latent_frames(frames: int, temporal_factor: int = 1) -> int:
    """Latent frames a VAE compressing time by ``temporal_factor`` makes of ``frames`` pixel frames.

    1 means no compression in time (pixel space or an image VAE). A causal video VAE (Wan, CogVideoX, ...)
    keeps the first frame and compresses the rest: 1 + k * temporal_factor frames -> 1 + k latent frames.
    """
    if temporal_factor == 1:
        return frames
    return 1 + (frames - 1) // temporal_factor if frames >= 1 else 0


def pixel_frames(latent: int, temporal_factor: int = 1) -> int:
    """Pixel frames that make exactly ``latent`` latent frames: the inverse of :func:`latent_frames`."""
    return latent if temporal_factor == 1 else 1 + (latent - 1) * temporal_factor


class EncoderError(RuntimeError):
    """A text encoder or VAE could not be loaded; the message names the id and the fix."""


@dataclass(frozen=True)
class TensorDims:
    """The widths a model takes from its data: channels of the (latent) video, width of a caption embedding."""

    channels: int  # 3 in pixel space, the VAE's latent channels otherwise
    text_dim: int  # the text encoder's hidden size

    def __post_init__(self):
        if self.channels < 1 or self.text_dim < 1:
            raise ValueError(f"channels {self.channels} and text_dim {self.text_dim} must be >= 1; the encoder "
                             f"configs (or the encodings' key.json) they came from are broken: re-encode")


def encoder_dims(text_encoder: str, vae: str | None = None, vae_subfolder: str | None = None,
                 text_subfolder: str | None = None) -> TensorDims:
    """What the encoders will make, read from their configs alone (no weights loaded): so a run's config is
    complete before any encoder loads (``rushes train --dry-run`` prints it)."""
    channels = _latent_channels(_vae_config(vae, vae_subfolder)) if vae else 3
    return TensorDims(channels, text_width(_text_config(text_encoder, text_subfolder)))


DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_dtypes(name: str, device) -> tuple[torch.dtype, torch.dtype]:
    """(text encoder and transformer dtype, VAE dtype) of a ``--dtype`` name on ``device``: ``auto`` is bfloat16
    on a GPU with a float32 VAE (diffusers' advice for Wan's VAE), float32 on CPU; any other name is both."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not known; use one of {', '.join(DTYPES)}")
    if name == "auto":
        gpu = torch.device(device).type == "cuda"
        return (torch.bfloat16 if gpu else torch.float32), torch.float32
    return getattr(torch, name), getattr(torch, name)


def default_text_tokens(model_type: str) -> int:
    """The caption token budget of a text encoder family (``config.model_type``: ``t5``, ``umt5``, ``clip``, ...)
    when the run does not set ``max_text_tokens``."""
    return DEFAULT_TEXT_TOKENS.get(model_type, FALLBACK_TEXT_TOKENS)


def text_token_budget(text_encoder: str, requested: int | None = None, subfolder: str | None = None) -> int:
    """The caption tokens a run keeps with ``text_encoder``: ``requested``, else the family's default; never more
    than the encoder's position table (CLIP: 77). Reads the encoder's config only (no weights)."""
    return _budget(_text_config(text_encoder, subfolder), requested)


def _budget(config, requested: int | None) -> int:
    budget = requested or default_text_tokens(config.model_type)
    if config.model_type in CLIP_TYPES:  # CLIP's position table bounds the caption length
        text = getattr(config, "text_config", None) or config
        budget = min(budget, int(getattr(text, "max_position_embeddings", budget)))
    return int(budget)


def text_width(config) -> int:
    """Hidden size of a transformers text encoder config (T5's ``d_model``, CLIP's ``hidden_size``; a full CLIP
    config's text tower)."""
    config = getattr(config, "text_config", None) or config
    return int(getattr(config, "d_model", None) or config.hidden_size)


def _text_config(id_or_path: str, subfolder: str | None = None):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(id_or_path, subfolder=subfolder or "")
    except (OSError, ValueError) as exc:
        raise EncoderError(f"cannot load the config of text encoder {id_or_path!r} (subfolder {subfolder!r}): {exc}; "
                           f"pass a transformers id or a local folder of a T5/umT5 encoder or CLIP text model "
                           f"(--text-encoder, and --text-encoder-subfolder for a pipeline repo)") from exc


def load_tokenizer(id_or_path: str, subfolder: str | None = None):
    """The tokenizer of a text encoder: beside it, else (a pipeline repo) in the repo's ``tokenizer/``."""
    from transformers import AutoTokenizer

    tries = [subfolder or ""] + (["tokenizer"] if subfolder else [])
    errors = []
    for sub in tries:
        try:
            return AutoTokenizer.from_pretrained(id_or_path, subfolder=sub)
        except (OSError, ValueError, TypeError) as exc:
            errors.append(f"{sub or '.'}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    raise EncoderError(f"no tokenizer for text encoder {id_or_path!r} ({'; '.join(errors)}); a pipeline repo keeps "
                       f"it in tokenizer/, a text encoder folder beside its weights")


def _vae_config(id_or_path: str, subfolder: str | None) -> dict:
    from diffusers.configuration_utils import ConfigMixin

    class ModelConfigFile(ConfigMixin):
        # not diffusers.AutoModel.load_config: AutoModel.from_pretrained of a pipeline repo's subfolder leaves its
        # class attribute config_name at model_index.json (diffusers 0.42), and the next call reads that file
        config_name = "config.json"

    try:
        return dict(ModelConfigFile.load_config(id_or_path, subfolder=subfolder))
    except (OSError, ValueError, EnvironmentError) as exc:
        raise EncoderError(f"cannot load the config of VAE {id_or_path!r} (subfolder {subfolder!r}): {exc}; pass a "
                           f"diffusers id or local folder of an AutoencoderKL or video VAE (--vae)") from exc


def _latent_channels(config) -> int:
    """Latent channels of a diffusers VAE config (``latent_channels``; Wan's ``z_dim``)."""
    return int(config.get("latent_channels") or config.get("z_dim"))


class TextEncoder:
    """A frozen transformers text encoder (T5 encoder or CLIP text model) giving per-token embeddings."""

    def __init__(self, id_or_path: str, max_tokens: int | None = None, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, subfolder: str | None = None):
        import transformers

        self.id = id_or_path
        self.device = device
        config = _text_config(id_or_path, subfolder)
        self.max_tokens = _budget(config, max_tokens)  # None: the family's default (default_text_tokens)
        mtype = config.model_type
        cls_name = T5_TYPES.get(mtype) or CLIP_TYPES.get(mtype) or "AutoModel"
        self.tokenizer = load_tokenizer(id_or_path, subfolder)
        self.model = getattr(transformers, cls_name).from_pretrained(id_or_path, subfolder=subfolder or "",
                                                                     dtype=dtype).to(device).eval()
        self.model.requires_grad_(False)
        cfg = self.model.config
        self.hidden_size = text_width(cfg)
        self.is_clip = mtype in CLIP_TYPES

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens of each text before any cut (special tokens included): a count above ``max_tokens`` is a caption
        :meth:`encode` cuts."""
        return [len(ids) for ids in self.tokenizer(list(texts), truncation=False)["input_ids"]]

    @torch.no_grad()
    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (N, Lt, D) float32 on CPU and mask (N, Lt) bool of ``texts`` (truncated to max_tokens).

        A text that tokenises to nothing (the empty caption of caption dropout, with a tokenizer that adds no
        special token) gets one all-zero token, so every caption has at least one token to attend to.
        """
        batch = self.tokenizer(list(texts), padding="longest", truncation=True, max_length=self.max_tokens,
                               return_tensors="pt")
        mask = batch["attention_mask"].bool()  # (N, Lt)
        if mask.shape[1] == 0:  # every text is empty: the encoder cannot run on zero tokens
            emb = torch.zeros(len(texts), 1, self.hidden_size)
            mask = torch.zeros(len(texts), 1, dtype=torch.bool)
        else:
            ids = batch["input_ids"].to(self.device)
            emb = self.model(input_ids=ids, attention_mask=mask.to(self.device)).last_hidden_state.float().cpu()
        empty = ~mask.any(dim=1)  # (N,)
        emb[empty, 0] = 0.0
        mask[empty, 0] = True
        return emb, mask


def text_encoder_of(data_cfg, device: str = "cpu") -> TextEncoder:
    """The text encoder a DataConfig names (its subfolder, caption budget and ``dtype``), on ``device``."""
    dtype, _ = resolve_dtypes(data_cfg.dtype, device)
    return TextEncoder(data_cfg.text_encoder, data_cfg.max_text_tokens, device=device, dtype=dtype,
                       subfolder=data_cfg.text_encoder_subfolder)


def vae_of(data_cfg, device: str = "cpu") -> Vae | None:
    """The VAE a DataConfig names (None in pixel space), in its ``dtype`` on ``device``."""
    if not data_cfg.vae:
        return None
    _, dtype = resolve_dtypes(data_cfg.dtype, device)
    return Vae(data_cfg.vae, data_cfg.vae_subfolder, device=device, dtype=dtype)


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
        self.channels = _latent_channels(cfg)
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
