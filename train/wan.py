"""Wan 2.x in the packed trainer: diffusers' ``WanTransformer3DModel`` rebuilt over packed sequences.

:class:`WanTransformer` computes what diffusers' ``WanTransformer3DModel`` computes, clip by clip, but takes the
packed input of :class:`rushes.train.model.DiffusionTransformer` (several clips of different sizes in one
sequence, block-diagonal self-attention, a timestep and a caption per clip), so packing, the attention kernels,
FSDP2, exact resume and LoRA apply to it unchanged. Its modules carry diffusers' names (``blocks.0.attn1.to_q``,
``condition_embedder.time_proj``, ``patch_embedding``, ``scale_shift_table``...), so its state dict *is* the
diffusers state dict: loading ``--init`` and exporting back are a ``load_state_dict`` and a ``save_file``, and a
LoRA adapter trained here has the keys diffusers' ``load_lora_adapter`` reads.

What it reproduces (``transformer_wan.py`` of diffusers 0.42): a Conv3d patch embedding (applied to flat patches
as the linear map it is), sinusoidal timestep -> ``time_embedder`` -> ``time_proj`` (6 modulation vectors shared by
all blocks, plus a per-block ``scale_shift_table``), a gelu-tanh caption projection, RMS norm of q and k across
heads, Wan's 3D RoPE split (``h = w = 2 * (head_dim // 6)``, the rest for time), an optional LayerNorm before
cross-attention, a gelu-tanh FFN, and the final ``scale_shift_table`` modulation. Where diffusers rounds to float32
(its ``FP32LayerNorm``, the ``.float()`` of the residual stream and modulation, RoPE tables) this does too, so a
float64 run matches diffusers to ~1e-15 (tests/train/test_wan.py) and a bf16 run keeps Wan's fp32 islands.
Wan pads every caption with zeros to 512 tokens and attends to all of them; so does this
(``ModelConfig.text_pad_tokens``).

Use::

    cfg = init_run_config(preset("tiny"), "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")  # model + encoders from the repo
    model = build_transformer(cfg.model)          # WanTransformer with the repo's weights (or a DiT for arch "dit")
    v = model(x, t, text, text_mask, pos, seq)     # as DiffusionTransformer
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rushes.train.model import DiffusionTransformer, PackedAttention, apply_rope, token_slots

WAN_CLASS = "WanTransformer3DModel"
TEXT_TOKENS = 512  # Wan's caption budget: umT5 tokens per caption (the pipeline's max_sequence_length)
# The data settings --init fills in from a pipeline repo unless they are given.
INIT_DATA = ("text_encoder", "text_encoder_subfolder", "vae", "vae_subfolder", "max_text_tokens")


class InitError(ValueError):
    """``--init`` names nothing a Wan transformer loads from; the message names it and the fix."""


# ---------------------------------------------------------------- config


def transformer_config(init: str) -> tuple[dict, str | None]:
    """The diffusers config of the Wan transformer of ``init`` (a pipeline repo or folder: its ``transformer/``;
    else the transformer itself) and the subfolder it is in. Reads configs only."""
    from diffusers import WanTransformer3DModel

    errors = []
    local = Path(init)
    # a local folder: diffusers would read the root config when the subfolder has none, so look first
    tries = (("transformer",) if (local / "transformer" / "config.json").is_file() else (None,)) if local.is_dir() \
        else ("transformer", None)
    for subfolder in tries:
        try:
            config = dict(WanTransformer3DModel.load_config(init, subfolder=subfolder))
        except (OSError, ValueError, EnvironmentError) as exc:
            errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            continue
        return check_transformer_config(config, init), subfolder
    raise InitError(f"--init {init!r}: no diffusers Wan transformer config in it or in its transformer/ subfolder "
                    f"({'; '.join(errors)}); pass a Wan 2.x T2V diffusers repo id such as "
                    f"Wan-AI/Wan2.1-T2V-1.3B-Diffusers, or a folder saved with save_pretrained")


def check_transformer_config(config: dict, init: str) -> dict:
    """``config`` when it is a text-to-video ``WanTransformer3DModel`` this trainer reproduces, else InitError."""
    name = config.get("_class_name", WAN_CLASS)
    if name != WAN_CLASS:
        raise InitError(f"--init {init!r} holds a {name}, not a {WAN_CLASS}; pass a Wan 2.x diffusers repo")
    if config.get("image_dim") or config.get("added_kv_proj_dim") or config.get("pos_embed_seq_len"):
        raise InitError(f"--init {init!r} is an image-to-video Wan (image_dim/added_kv_proj_dim set); rushes trains "
                        f"the text-to-video models: pass a T2V repo")
    out = config.get("out_channels") or config.get("in_channels", 16)
    if out != config.get("in_channels", 16):
        raise InitError(f"--init {init!r} takes {config.get('in_channels')} input channels but predicts {out} (an "
                        f"image-conditioned variant); pass a text-to-video repo")
    qk = config.get("qk_norm", "rms_norm_across_heads")
    if qk != "rms_norm_across_heads":
        raise InitError(f"--init {init!r} has qk_norm {qk!r}; rushes reproduces rms_norm_across_heads (every Wan 2.x)")
    return config


def model_config(config: dict, base, init: str | None = None, subfolder: str | None = None):
    """``base`` (a ModelConfig: its training switches kept) with the architecture of a diffusers Wan config."""
    heads, head_dim = int(config.get("num_attention_heads", 40)), int(config.get("attention_head_dim", 128))
    return replace(base, arch="wan", init=init, init_subfolder=subfolder,
                   patch_size=tuple(config.get("patch_size", (1, 2, 2))), hidden_size=heads * head_dim,
                   depth=int(config.get("num_layers", 40)), num_heads=heads, in_channels=int(config.get("in_channels", 16)),
                   text_dim=int(config.get("text_dim", 4096)), ffn_dim=int(config.get("ffn_dim", 13824)),
                   freq_dim=int(config.get("freq_dim", 256)), eps=float(config.get("eps", 1e-6)),
                   cross_attn_norm=bool(config.get("cross_attn_norm", True)), rope_theta=10000.0,
                   abs_pos_embed=False, text_pad_tokens=TEXT_TOKENS)


def diffusers_config(cfg) -> dict:
    """The ``WanTransformer3DModel`` constructor arguments of a wan ModelConfig (export, tests)."""
    return {"patch_size": list(cfg.patch_size), "num_attention_heads": cfg.num_heads,
            "attention_head_dim": cfg.hidden_size // cfg.num_heads, "in_channels": cfg.in_channels,
            "out_channels": cfg.in_channels, "text_dim": cfg.text_dim, "freq_dim": cfg.freq_dim,
            "ffn_dim": cfg.ffn_width, "num_layers": cfg.depth, "cross_attn_norm": cfg.cross_attn_norm,
            "qk_norm": "rms_norm_across_heads", "eps": cfg.eps}


def is_pipeline(init: str, subfolder: str | None) -> bool:
    """Whether ``init`` is a pipeline repo (its transformer in ``transformer/``): its encoders are beside it."""
    return subfolder == "transformer"


def init_run_config(cfg, init: str | None = None, keep: tuple[str, ...] = ()):
    """``cfg`` (a RunConfig) shaped by ``init`` (default ``cfg.model.init``): the model takes the Wan transformer's
    architecture; the text encoder, VAE and caption budget become the pipeline repo's (``text_encoder/``,
    ``vae/``, 512 tokens) except the data fields named in ``keep`` (those the user gave). A config already
    shaped by the same ``init`` is returned as it is (a resumed run's)."""
    init = init or cfg.model.init
    if not init:
        return cfg
    config, subfolder = transformer_config(init)
    model = model_config(config, cfg.model, init, subfolder)
    data = {}
    if is_pipeline(init, subfolder):
        data = {"text_encoder": init, "text_encoder_subfolder": "text_encoder", "vae": init, "vae_subfolder": "vae"}
    data["max_text_tokens"] = TEXT_TOKENS  # Wan's umT5 context, whatever encoder the run named before
    data = {k: v for k, v in data.items() if k not in keep}
    return replace(cfg, model=model, data=replace(cfg.data, **data))


# ---------------------------------------------------------------- layers


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype, as diffusers' (Wan's norms are fp32 islands)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


def wan_rope_split(head_dim: int) -> tuple[int, int, int]:
    """Wan's split of a head over (t, h, w): rows and columns get ``2 * (head_dim // 6)`` each, time the rest."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def wan_rope(pos: torch.Tensor, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (B, 1, L, head_dim / 2) float32 of (t, h, w) positions (B, L, 3): computed in float64 and rounded to
    float32 as diffusers' ``WanRotaryPosEmbed`` tables are. No buffers: the model builds on the meta device."""
    angles = []
    for axis, d in enumerate(wan_rope_split(head_dim)):
        inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=pos.device) / d)  # (d/2,)
        angles.append(pos[..., axis:axis + 1].to(torch.float64) * inv)  # (B, L, d/2)
    a = torch.cat(angles, dim=-1)  # (B, L, head_dim / 2)
    return a.cos().float()[:, None], a.sin().float()[:, None]  # (B, 1, L, hd/2) x 2


def wan_timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """diffusers' ``Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)`` of ``1000 t`` (t in [0, 1],
    Wan's timestep is 1000 sigma), in float32 as there: (...,) -> (..., dim) [cos, sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)  # (half,)
    args = (t * 1000.0).float()[..., None] * freqs  # (..., half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (..., dim)


class _Linear2(nn.Module):
    """``linear_1 -> act -> linear_2`` with diffusers' attribute names (TimestepEmbedding, the text projection)."""

    def __init__(self, dim_in: int, dim: int, act: nn.Module):
        super().__init__()
        self.linear_1, self.act, self.linear_2 = nn.Linear(dim_in, dim), act, nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


class ConditionEmbedder(nn.Module):
    """Timestep per clip -> ``temb`` (the final layer's) and ``time_proj`` (6 modulation vectors for every block);
    caption tokens -> the cross-attention context. Names as diffusers' ``WanTimeTextImageEmbedding``."""

    def __init__(self, dim: int, freq_dim: int, text_dim: int):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_embedder = _Linear2(freq_dim, dim, nn.SiLU())
        self.act_fn = nn.SiLU()
        self.time_proj = nn.Linear(dim, 6 * dim)
        self.text_embedder = _Linear2(text_dim, dim, nn.GELU(approximate="tanh"))

    def forward(self, t: torch.Tensor, text: torch.Tensor):
        """t (B, S) in [0, 1], text (B, S*Lt, text_dim) -> temb (B, S, D), tproj (B, S, 6D), ctx (B, S*Lt, D)."""
        emb = wan_timestep_embedding(t, self.freq_dim).to(self.time_embedder.linear_1.weight.dtype)  # (B, S, F)
        temb = self.time_embedder(emb).type_as(text)  # (B, S, D)
        return temb, self.time_proj(self.act_fn(temb)), self.text_embedder(text)


class WanAttention(nn.Module):
    """Separate q, k, v projections with RMS norm of q and k across all heads, as diffusers' ``WanAttention``."""

    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)

    def _qkv(self, x, ctx):
        q, k, v = self.norm_q(self.to_q(x)), self.norm_k(self.to_k(ctx)), self.to_v(ctx)  # (B, L|M, D)
        return [a.unflatten(2, (self.heads, -1)).transpose(1, 2) for a in (q, k, v)]  # each (B, H, L|M, hd)

    def _out(self, out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.to_out[1](self.to_out[0](out.transpose(1, 2).flatten(2).type_as(like)))  # (B, L, D)

    def self_attention(self, x, cos, sin, attend: PackedAttention):
        q, k, v = self._qkv(x, x)  # (B, H, L, hd)
        q, k = apply_rope(q, cos, sin).type_as(q), apply_rope(k, cos, sin).type_as(k)
        return self._out(attend(q, k, v), q)  # each token attending within its own clip

    def cross_attention(self, x, ctx, attend: PackedAttention):
        q = self.norm_q(self.to_q(x)).unflatten(2, (self.heads, -1))  # (B, L, H, hd)
        k, v = self.norm_k(self.to_k(ctx)).unflatten(1, (self.heads, -1)), self.to_v(ctx).unflatten(1, (self.heads, -1))
        out = attend.cross(q, k, v)  # (B, L, H, hd): each clip's tokens to its own caption's tokens only
        return self.to_out[1](self.to_out[0](out.flatten(2).type_as(q)))  # (B, L, D)


class _GeluProj(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x):
        return F.gelu(self.proj(x), approximate="tanh")


class WanFeedForward(nn.Module):
    """diffusers' ``FeedForward(activation_fn="gelu-approximate")``: ``net.0.proj``, dropout, ``net.2``."""

    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.net = nn.ModuleList([_GeluProj(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim)])

    def forward(self, x):
        for layer in self.net:
            x = layer(x)
        return x


def per_token(values: torch.Tensor, seq_idx: torch.Tensor) -> torch.Tensor:
    """Per-clip rows (B, S, K) spread to the tokens of each clip: (B, L, K)."""
    return torch.gather(values, 1, seq_idx[..., None].expand(-1, -1, values.shape[-1]))


class WanBlock(nn.Module):
    """diffusers' ``WanTransformerBlock`` with the modulation gathered per token (a timestep per clip)."""

    def __init__(self, dim: int, ffn_dim: int, heads: int, cross_attn_norm: bool, eps: float):
        super().__init__()
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = WanAttention(dim, heads, eps)
        self.attn2 = WanAttention(dim, heads, eps)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.ffn = WanFeedForward(dim, ffn_dim)
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)

    def forward(self, x, tproj, seq_idx, cos, sin, attend, ctx):
        # x (B, L, D); tproj (B, S, 6D) per clip; seq_idx (B, L) slot per token (padding -> 0)
        table = self.scale_shift_table.flatten(1)  # (1, 6D)
        mod = per_token(table[:, None] + tproj.float(), seq_idx)  # (B, L, 6D), in float32 or wider as diffusers
        sh1, sc1, g1, sh2, sc2, g2 = mod.chunk(6, dim=-1)  # each (B, L, D)
        h = (self.norm1(x.float()) * (1 + sc1) + sh1).type_as(x)  # (B, L, D)
        x = (x.float() + self.attn1.self_attention(h, cos, sin, attend) * g1).type_as(x)  # (B, L, D)
        h = self.norm2(x.float()).type_as(x)
        x = x + self.attn2.cross_attention(h, ctx, attend)  # (B, L, D)
        h = (self.norm3(x.float()) * (1 + sc2) + sh2).type_as(x)
        return (x.float() + self.ffn(h).float() * g2).type_as(x)  # (B, L, D)


def pad_captions(text: torch.Tensor, text_mask: torch.Tensor, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions as Wan sees them: each used slot's caption zeroed past its tokens and padded with zeros to
    ``tokens`` (B, S, max(Lt, tokens), Dt), every one of those attended; empty slots stay masked."""
    text = text * text_mask[..., None].to(text.dtype)  # (B, S, Lt, Dt) zero past each caption
    lt = text.shape[2]
    if lt < tokens:
        text = F.pad(text, (0, 0, 0, tokens - lt))  # (B, S, tokens, Dt)
        text_mask = F.pad(text_mask, (0, tokens - lt))
    used = text_mask.any(dim=2, keepdim=True)  # (B, S, 1)
    first = torch.arange(text.shape[2], device=text.device) < tokens  # (Lt',)
    return text, text_mask | (used & first)


class WanTransformer(nn.Module):
    """diffusers' ``WanTransformer3DModel`` over packed clips; ``forward`` as :class:`DiffusionTransformer`'s."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_size
        self.patch_embedding = nn.Conv3d(cfg.in_channels, d, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.condition_embedder = ConditionEmbedder(d, cfg.freq_dim, cfg.text_dim)
        self.blocks = nn.ModuleList(WanBlock(d, cfg.ffn_width, cfg.num_heads, cfg.cross_attn_norm, cfg.eps)
                                    for _ in range(cfg.depth))
        self.norm_out = FP32LayerNorm(d, cfg.eps, elementwise_affine=False)
        self.proj_out = nn.Linear(d, cfg.patch_dim)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, d) / d ** 0.5)
        # proj_out writes a patch as (pt, ph, pw, C) (diffusers' unpatchify); rushes' tokens are (C, pt, ph, pw)
        self.register_buffer("out_order", _channels_first(cfg.in_channels, cfg.patch_size), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                pos: torch.Tensor, seq: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """As :meth:`DiffusionTransformer.forward`: x (B, L, patch_dim), t (B, S), text (B, S, Lt, text_dim),
        text_mask (B, S, Lt), pos (B, L, 3), seq (B, L), cond (B, L) bool or None (conditioning tokens at t = 0: the
        ``scale_shift_table`` modulation per token, :func:`rushes.train.model.token_slots`) -> (B, L, patch_dim)."""
        text, text_mask = pad_captions(text, text_mask, self.cfg.text_pad_tokens)  # (B, S, Lt', Dt)
        b, s, lt, _ = text.shape
        attend = PackedAttention(seq, self.cfg.attention, text_mask)  # the pack's index, once for all blocks
        t, seq_idx = token_slots(t, seq, cond)  # (B, S') timesteps, (B, L) each token's modulation row
        w = self.patch_embedding.weight
        h = F.linear(x.to(w.dtype), w.flatten(1), self.patch_embedding.bias)  # (B, L, D): the Conv3d on flat patches
        temb, tproj, ctx = self.condition_embedder(t, attend.caption_tokens(text).to(h.dtype))  # ctx (M, D)
        cos, sin = wan_rope(pos, self.cfg.hidden_size // self.cfg.num_heads, self.cfg.rope_theta)  # (B,1,L,hd/2)
        for block in self.blocks:
            if self.cfg.checkpointing and self.training and torch.is_grad_enabled():
                h = checkpoint(block, h, tproj, seq_idx, cos, sin, attend, ctx, use_reentrant=False)
            else:
                h = block(h, tproj, seq_idx, cos, sin, attend, ctx)  # (B, L, D)
        mod = per_token((self.scale_shift_table[None] + temb[:, :, None]).flatten(2), seq_idx)  # (B, L, 2D)
        shift, scale = mod.chunk(2, dim=-1)  # each (B, L, D)
        h = (self.norm_out(h.float()) * (1 + scale) + shift).type_as(h)
        return self.proj_out(h)[..., self.out_order]  # (B, L, patch_dim) in rushes' (C, pt, ph, pw) order


def _channels_first(channels: int, patch: tuple[int, int, int]) -> torch.Tensor:
    """Index that reorders a (pt, ph, pw, C) patch vector as (C, pt, ph, pw)."""
    pt, ph, pw = patch
    return torch.arange(pt * ph * pw * channels).reshape(pt, ph, pw, channels).permute(3, 0, 1, 2).flatten()


# ---------------------------------------------------------------- weights


def build_transformer(cfg, device=None) -> nn.Module:
    """The packed transformer of a ModelConfig: rushes' DiT (random, seeded by the caller), or a
    :class:`WanTransformer` holding the weights of ``cfg.init`` (random when it has none); with LoRA adapters
    (train/lora.py) when ``cfg.lora_rank`` is set."""
    from rushes.train.lora import add_adapters

    if cfg.arch != "wan":
        model = DiffusionTransformer(cfg)
    elif not cfg.init:
        model = WanTransformer(cfg)
    else:
        with torch.device("meta"):  # no random init of billions of weights about to be replaced
            model = WanTransformer(cfg)
        model.load_state_dict(pretrained_state(cfg), assign=True)
        model.out_order = _channels_first(cfg.in_channels, cfg.patch_size)  # the buffer made on meta
    return add_adapters(model, cfg).to(device)


def pretrained_state(cfg) -> dict[str, torch.Tensor]:
    """The float32 state dict of the Wan transformer of ``cfg.init``, loaded by diffusers (a hub id, a folder;
    sharded or not) and checked against the config the run recorded."""
    from diffusers import WanTransformer3DModel

    try:
        wan = WanTransformer3DModel.from_pretrained(cfg.init, subfolder=cfg.init_subfolder, torch_dtype=torch.float32)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise InitError(f"cannot load the Wan transformer of --init {cfg.init!r}: {exc}") from exc
    expected = replace(cfg, **{k: v for k, v in _shape(model_config(dict(wan.config), cfg)).items()})
    if _shape(expected) != _shape(cfg):
        raise InitError(f"--init {cfg.init!r} changed since the run started: its transformer is now "
                        f"{_shape(expected)}, the run's config says {_shape(cfg)}; use a new --run")
    return {k: v.float() for k, v in wan.state_dict().items()}


FP32_MODULES = ("time_embedder", "scale_shift_table", "norm1", "norm2", "norm3")  # diffusers' _keep_in_fp32_modules


def cast_for_inference(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``model`` in ``dtype`` for sampling; a Wan model keeps diffusers' fp32 modules (timestep MLP, modulation
    tables, block norms) in float32 as diffusers' half-precision loads do."""
    model = model.to(dtype)
    if dtype != torch.float32 and isinstance(model, WanTransformer):
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] in FP32_MODULES:
                module.float()
        for name, p in model.named_parameters():
            if name.endswith("scale_shift_table"):
                p.data = p.data.float()
    return model


def _shape(cfg) -> dict:
    keys = ("patch_size", "hidden_size", "depth", "num_heads", "in_channels", "text_dim", "ffn_dim", "freq_dim",
            "cross_attn_norm")
    return {k: getattr(cfg, k) for k in keys}
