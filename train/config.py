"""Configuration of a training run: model, data and optimisation, plus named presets.

Use a preset and override what you need::

    from dataclasses import replace
    cfg = PRESETS["tiny"]()
    cfg = cfg.with_overrides(train={"steps": 50}, data={"fps": 4.0})

A run writes its resolved config to ``RUN_DIR/config.json`` (:meth:`RunConfig.to_dict`) and a resumed
run reads it back with :meth:`RunConfig.from_dict`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace


def _positive(name: str, value, hint: str) -> None:
    if value is None or value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}; {hint}")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the diffusion transformer (train/model.py)."""

    patch_size: tuple[int, int, int] = (1, 2, 2)  # (pt, ph, pw): frames, rows, columns per token
    hidden_size: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    # in_channels and text_dim are the data's: train/plan.py completes them before a run starts (from the
    # encodings' key.json or the encoders' configs), so config.json and --dry-run show the real widths
    in_channels: int = 3  # 3 in pixel space; a VAE's latent channels
    text_dim: int = 32  # hidden size of the text encoder
    rope_theta: float = 10000.0
    abs_pos_embed: bool = True  # add a fixed 3D sin-cos embedding of each token's position to RoPE
    checkpointing: bool = False  # activation checkpointing per block: less memory, ~30% more compute
    attention: str = "auto"  # block-diagonal kernel: auto, segments, varlen or dense (rushes.train.model.PackedAttention)

    def __post_init__(self):
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be three positive ints (pt, ph, pw), got {self.patch_size}")
        for name in ("hidden_size", "depth", "num_heads", "mlp_ratio", "in_channels", "text_dim", "rope_theta"):
            _positive(name, getattr(self, name), "pick a preset (tiny, small, base, large, xl) or a positive value")
        if self.attention not in ("auto", "segments", "varlen", "dense"):
            raise ValueError(f"attention must be auto, segments, varlen or dense, got {self.attention!r}; "
                             f"auto picks the fastest exact kernel for the device")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must divide by num_heads {self.num_heads}; "
                             f"change one of them")
        if (self.hidden_size // self.num_heads) % 8:
            raise ValueError(f"head size hidden_size/num_heads = {self.hidden_size // self.num_heads} must be a "
                             f"multiple of 8 (3D RoPE splits it over time, rows and columns)")

    @property
    def patch_dim(self) -> int:
        """Numbers in one flattened spacetime patch: channels * pt * ph * pw."""
        pt, ph, pw = self.patch_size
        return self.in_channels * pt * ph * pw


@dataclass(frozen=True)
class DataConfig:
    """How the captions manifest becomes packed training sequences (train/data.py)."""

    fps: float = 8.0  # frames are sampled at this rate from each clip
    max_frames: int = 8  # at most this many frames per clip (a longer clip is sampled from its start)
    clip_tokens: int = 256  # token budget of one clip: its size is the largest that fits, keeping aspect
    batch_tokens: int = 1024  # tokens per packed sequence (per device and step); clips are packed to fill it
    packs_per_step: int = 1  # packed sequences per step over all workers: global batch = this * batch_tokens
    stream_window: int = 256  # clips held (and shuffled, then packed) at a time when training from encodings
    pad_multiple: int = 64  # a pack is padded to a multiple of this (batch_tokens gives one static shape)
    max_side_px: int = 512  # never decode a side longer than this, whatever the token budget allows
    text_encoder: str = "google/t5-v1_1-base"  # transformers id or local path of a T5 encoder or CLIP text model
    max_text_tokens: int = 64  # captions are truncated to this many tokens
    vae: str | None = None  # diffusers id or local path of a VAE; None trains in pixel space
    vae_subfolder: str | None = None  # e.g. "vae" for a pipeline repo such as Wan-AI/Wan2.1-T2V-1.3B-Diffusers
    caption_dropout: float = 0.1  # fraction of clips trained with the empty caption (for guidance)
    val_clips: int = 1  # clips held out for the validation loss (none when the set has a single clip)
    captioner: str | None = None  # use captions of this captioner only (default: newest per clip)
    prompt_version: str | None = None  # use captions of this prompt version only
    limit: int | None = None  # use at most this many clips (quick trials)
    where: str | None = None  # SQL condition over the clips manifest selecting the clips (train/selection.py)

    def __post_init__(self):
        _positive("fps", self.fps, "use e.g. --fps 8")
        _positive("max_frames", self.max_frames, "use e.g. --max-frames 16")
        _positive("clip_tokens", self.clip_tokens, "use e.g. --clip-tokens 1024")
        _positive("max_side_px", self.max_side_px, "use e.g. 512")
        _positive("pad_multiple", self.pad_multiple, "use 64, or batch_tokens for one static shape")
        _positive("max_text_tokens", self.max_text_tokens, "use e.g. 64")
        _positive("packs_per_step", self.packs_per_step, "use 1, or the number of workers")
        _positive("stream_window", self.stream_window, "use e.g. 256 clips")
        if self.batch_tokens < self.clip_tokens:
            raise ValueError(f"batch_tokens {self.batch_tokens} < clip_tokens {self.clip_tokens}: a clip could not "
                             f"fit in a sequence; raise --batch-tokens or lower --clip-tokens")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}; 0.1 is usual")
        if self.val_clips < 0:
            raise ValueError(f"val_clips must be >= 0, got {self.val_clips}")
        if self.where is not None and not self.where.strip():
            raise ValueError("where is empty; give a SQL condition such as \"duration_s >= 3\", or leave it out")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {self.limit}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, objective and bookkeeping (train/loop.py, train/diffusion.py)."""

    steps: int = 1000
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    timestep_mean: float = 0.0  # logit-normal timestep: t = sigmoid(N(mean, std))
    timestep_std: float = 1.0
    shift_base_tokens: int = 256  # a clip of this many tokens gets shift 1; larger clips are noised more
    max_shift: float = 6.0
    log_every: int = 10
    val_every: int = 100
    checkpoint_every: int = 500
    val_timesteps: tuple[float, ...] = (0.25, 0.5, 0.75)
    sample_steps: int = 30  # Euler steps used by `rushes sample` unless given
    guidance: float = 4.0  # classifier-free guidance scale used by `rushes sample` unless given

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "val_timesteps", tuple(float(t) for t in self.val_timesteps))
        for name in ("steps", "lr", "log_every", "val_every", "checkpoint_every", "timestep_std",
                     "shift_base_tokens", "max_shift", "sample_steps"):
            _positive(name, getattr(self, name), "set a positive value")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("warmup_steps, grad_clip and weight_decay must be >= 0 (0 disables them)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}; 0.999 is usual")
        if not all(0.0 < t < 1.0 for t in self.val_timesteps):
            raise ValueError(f"val_timesteps must lie in (0, 1), got {self.val_timesteps}")


@dataclass(frozen=True)
class EncodeConfig:
    """Resources and batching of ``rushes encode`` (what the tensors are is the run's DataConfig)."""

    batch_size: int = 8  # clips per decode task and per encoder call
    concurrency: int = 1  # encoder actors, each loading the text encoder (and VAE) once
    num_gpus: float = 0.0  # GPUs per encoder actor (0 = CPU)
    actor_cpus: float = 1.0  # CPUs reserved per encoder actor
    decode_cpus: float = 1.0  # CPUs per decode task
    torch_threads: int | None = None  # intra-op threads per actor; None = torch/Ray default
    shard_rows: int = 256  # clips per shard file: fewer, larger files; a crash loses at most this many

    def __post_init__(self):
        if self.batch_size < 1 or self.concurrency < 1 or self.shard_rows < 1:
            raise ValueError(f"batch_size={self.batch_size}, concurrency={self.concurrency}, shard_rows="
                             f"{self.shard_rows}: each must be >= 1")
        if self.num_gpus < 0 or self.actor_cpus < 0 or self.decode_cpus <= 0:
            raise ValueError(f"num_gpus={self.num_gpus}, actor_cpus={self.actor_cpus}, decode_cpus="
                             f"{self.decode_cpus}: GPUs and actor CPUs must be >= 0 and decode CPUs > 0")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"torch_threads={self.torch_threads}: must be >= 1 or None")


@dataclass(frozen=True)
class RunConfig:
    """Everything that shapes a run; written to ``RUN_DIR/config.json``."""

    preset: str = "tiny"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def with_overrides(self, model: dict | None = None, data: dict | None = None,
                       train: dict | None = None) -> RunConfig:
        """A copy with some fields replaced; ``None`` values in the dicts are ignored."""
        def clean(d):
            return {k: v for k, v in (d or {}).items() if v is not None}
        return replace(self, model=replace(self.model, **clean(model)), data=replace(self.data, **clean(data)),
                       train=replace(self.train, **clean(train)))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        def build(kind, values):
            names = {f.name for f in fields(kind)}
            unknown = set(values) - names
            if unknown:
                raise ValueError(f"unknown {kind.__name__} field(s) {sorted(unknown)} in config; remove them")
            return kind(**values)
        return cls(preset=d.get("preset", "custom"), model=build(ModelConfig, d.get("model", {})),
                   data=build(DataConfig, d.get("data", {})), train=build(TrainConfig, d.get("train", {})))


def tiny() -> RunConfig:
    """CPU tests and smoke runs: a 2-block, 64-wide model on 8-frame clips of ~512 tokens (e.g. 40x24 px)."""
    return RunConfig("tiny", ModelConfig(patch_size=(1, 4, 4), hidden_size=64, depth=2, num_heads=4),
                     DataConfig(fps=8.0, max_frames=8, clip_tokens=512, batch_tokens=1024, max_side_px=128),
                     TrainConfig(steps=200, lr=2e-3, warmup_steps=10, ema_decay=0.99, log_every=10,
                                 val_every=50, checkpoint_every=100, shift_base_tokens=256))


def small() -> RunConfig:
    """A laptop or one small GPU: ~30M parameters, pixel or latent clips of ~1k tokens."""
    return RunConfig("small", ModelConfig(patch_size=(1, 2, 2), hidden_size=384, depth=12, num_heads=6),
                     DataConfig(fps=8.0, max_frames=16, clip_tokens=1024, batch_tokens=8192),
                     TrainConfig(steps=20000, lr=3e-4, warmup_steps=500))


def base() -> RunConfig:
    """DiT-B sized (~130M): one GPU, latent space with a video VAE recommended."""
    return RunConfig("base", ModelConfig(patch_size=(1, 2, 2), hidden_size=768, depth=12, num_heads=12),
                     DataConfig(fps=8.0, max_frames=33, clip_tokens=4096, batch_tokens=16384),
                     TrainConfig(steps=100000, lr=1e-4, warmup_steps=1000, checkpoint_every=2000, val_every=1000))


def large() -> RunConfig:
    """DiT-L sized (~460M): several GPUs, a video VAE and activation checkpointing."""
    return RunConfig("large", ModelConfig(patch_size=(1, 2, 2), hidden_size=1024, depth=24, num_heads=16,
                                          checkpointing=True),
                     DataConfig(fps=16.0, max_frames=49, clip_tokens=8192, batch_tokens=32768),
                     TrainConfig(steps=200000, lr=1e-4, warmup_steps=2000, checkpoint_every=2000, val_every=1000))


def xl() -> RunConfig:
    """DiT-XL sized (~680M): a GPU cluster, a video VAE and activation checkpointing."""
    return RunConfig("xl", ModelConfig(patch_size=(1, 2, 2), hidden_size=1152, depth=28, num_heads=16,
                                       checkpointing=True),
                     DataConfig(fps=16.0, max_frames=81, clip_tokens=16384, batch_tokens=65536),
                     TrainConfig(steps=400000, lr=1e-4, warmup_steps=2000, checkpoint_every=2000, val_every=1000))


PRESETS = {"tiny": tiny, "small": small, "base": base, "large": large, "xl": xl}


def preset(name: str) -> RunConfig:
    """The named preset, or a ValueError listing the names."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
