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

from rushes.settings import check, invalid, setting


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
    # Which network: "dit" (rushes' own, train/model.py) or "wan" (diffusers' WanTransformer3DModel, train/wan.py;
    # set with the fields below from the transformer config of --init)
    arch: str = "dit"
    init: str | None = setting(None, "start from the weights of a diffusers Wan 2.1/2.2 text-to-video model: a hub "
                               "id or folder of the pipeline (docs/train.md names them), or of its transformer alone; the model takes that architecture, and the text encoder and VAE "
                               "default to its text_encoder/ and vae/ subfolders", metavar="ID_OR_DIR",
                               shown="none, random weights", model=True)
    init_subfolder: str | None = None  # where the transformer is inside init ("transformer" in a pipeline repo)
    ffn_dim: int | None = None  # wan: the feed-forward width (dit: hidden_size * mlp_ratio)
    freq_dim: int = 256  # wan: width of the sinusoidal timestep embedding
    eps: float = 1e-6  # wan: epsilon of its layer and RMS norms
    cross_attn_norm: bool = True  # wan: a LayerNorm (with weights) before cross-attention
    text_pad_tokens: int = 512  # wan: captions are zero-padded to this many tokens, all attended (as Wan trained)
    lora_rank: int = setting(0, "train LoRA adapters of this rank (peft) instead of every weight: the base weights stay "
                             "frozen and checkpoints hold the adapters only", ge=0, le=4096, zero="full fine-tuning",
                             metavar="R")
    lora_alpha: float | None = setting(None, "LoRA scale numerator: adapters are scaled by alpha / rank", gt=0,
                                       le=1e6, shown="the rank (scale 1)")
    lora_targets: tuple[str, ...] = setting(("to_q", "to_k", "to_v", "to_out.0"), "comma-separated names (or name "
                                            "endings) of the linear layers that get adapters, e.g. "
                                            "to_q,to_k,to_v,to_out.0,ffn.net.0.proj,ffn.net.2 for a Wan model",
                                            metavar="NAMES")

    def __post_init__(self):
        check(self)  # every number finite
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be three positive ints (pt, ph, pw), got {self.patch_size}")
        for name in ("hidden_size", "depth", "num_heads", "mlp_ratio", "in_channels", "text_dim", "rope_theta"):
            _positive(name, getattr(self, name), "pick a preset (tiny, small, base, large, xl) or a positive value")
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if self.lora_rank and not self.lora_targets:
            raise ValueError("lora_targets is empty; name the linear layers that get adapters, e.g. to_q,to_k,to_v")
        if self.arch not in ("dit", "wan"):
            raise ValueError(f"arch must be dit or wan, got {self.arch!r}; wan is set by --init")
        if self.attention not in ("auto", "segments", "varlen", "dense"):
            raise ValueError(f"attention must be auto, segments, varlen or dense, got {self.attention!r}; "
                             f"auto picks the fastest exact kernel for the device")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must divide by num_heads {self.num_heads}; "
                             f"change one of them")
        if self.arch == "wan" and (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"head size hidden_size/num_heads = {self.hidden_size // self.num_heads} must be even")
        if self.arch == "dit" and (self.hidden_size // self.num_heads) % 8:
            raise ValueError(f"head size hidden_size/num_heads = {self.hidden_size // self.num_heads} must be a "
                             f"multiple of 8 (3D RoPE splits it over time, rows and columns)")

    @property
    def ffn_width(self) -> int:
        """Hidden width of each block's feed-forward network."""
        return self.ffn_dim or int(self.hidden_size * self.mlp_ratio)

    @property
    def patch_dim(self) -> int:
        """Numbers in one flattened spacetime patch: channels * pt * ph * pw."""
        pt, ph, pw = self.patch_size
        return self.in_channels * pt * ph * pw


COND_TASKS = ("t2v", "i2v", "extend", "firstlast")  # train/conditioning.py: what each task gives clean
DEFAULT_COND_MIX = "t2v=0.7,i2v=0.15,extend=0.1,firstlast=0.05"


def parse_cond_mix(text: str) -> dict[str, float]:
    """``"t2v=0.7,i2v=0.3"`` -> {task: weight} over :data:`COND_TASKS` (missing tasks weigh 0), weights normalised
    to sum 1; ValueError naming the fix for an unknown task, a bad or negative weight, or all weights 0."""
    mix = dict.fromkeys(COND_TASKS, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if name not in COND_TASKS or not sep:
            raise ValueError(f"{part!r} is not TASK=WEIGHT with TASK one of {', '.join(COND_TASKS)}")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"{part!r}: the weight {value.strip()!r} is not a number") from None
        if not weight >= 0 or weight == float("inf"):
            raise ValueError(f"{part!r}: weights are finite numbers >= 0")
        mix[name] = weight
    total = sum(mix.values())
    if not total > 0:
        raise ValueError(f"{text!r} gives no task a weight; e.g. {DEFAULT_COND_MIX}")
    return {k: v / total for k, v in mix.items()}


@dataclass(frozen=True)
class DataConfig:
    """How the captions manifest becomes packed training sequences (train/data.py)."""

    fps: float = setting(8.0, "frame rate clips are sampled at", gt=0, le=240, hint="8 is usual")
    max_frames: int = setting(8, "most frames per clip; a clip with more frames at --fps is sampled across its "
                              "whole span at a lower rate (its caption describes all of it)", ge=1, le=4096,
                              hint="e.g. 16")
    clip_tokens: int = setting(256, "token budget of a full-length clip; its frame size is the largest that fits, "
                               "keeping aspect", ge=1, le=2**24, hint="e.g. 1024")
    image_tokens: int | None = setting(None, "token budget of a still image, trained as a one-frame clip: its size is "
                                       "the largest that fits, keeping aspect", ge=1, le=2**24,
                                       shown="--clip-tokens", hint="e.g. 1024")
    image_ratio: float | None = setting(None, "image tokens per video token in an epoch: stills are drawn (cycling "
                                        "through all of them) until their tokens are this share of the clips' tokens, "
                                        "e.g. 0.25; none: every still once per epoch", ge=0, le=1000,
                                        shown="none, every still once per epoch", metavar="RATIO")
    batch_tokens: int = setting(1024, "tokens per packed sequence, per device and step; clips are packed to fill it",
                                ge=1, le=2**26)
    packs_per_step: int = setting(1, "packed sequences per step over all workers: the global batch is this times "
                                  "--batch-tokens, whatever the number of workers", ge=1, le=2**16,
                                  shown="the preset's 1, or --workers when given", hint="use 1, or the number of "
                                  "workers")
    stream_window: int = setting(256, "clips held (and shuffled, then packed) at a time when training from "
                                 "encodings", ge=1, cli=False)
    pad_multiple: int = setting(64, "a pack is padded to a multiple of this (batch_tokens gives one static shape)",
                                ge=1, cli=False)
    max_side_px: int = setting(512, "never decode a side longer than this, whatever the token budget allows", ge=1,
                               cli=False)
    text_encoder: str = setting("google/t5-v1_1-base", "transformers id or folder of a T5 encoder or CLIP text model, "
                                "e.g. openai/clip-vit-large-patch14; a hub id with a folder under $RUSHES_MODEL_DIR "
                                "loads from it", metavar="ID_OR_PATH", model=True)
    text_encoder_subfolder: str | None = setting(None, "subfolder of --text-encoder holding the text encoder, e.g. "
                                                 "text_encoder for a pipeline repo (its tokenizer is read from there, "
                                                 "else from the repo's tokenizer/)", metavar="NAME",
                                                 shown="none; text_encoder with --init")
    dtype: str = setting("auto", "dtype of the text encoder and VAE: auto is bfloat16 on a GPU (the VAE float32, as "
                         "diffusers advises for Wan's) and float32 on CPU", choices=("auto", "float32", "bfloat16",
                                                                                     "float16"))
    max_text_tokens: int | None = setting(None, "caption token budget: a longer caption is cut there, and every cut "
                                          "caption is counted (train log, summary.json, rushes inspect)", ge=1,
                                          le=8192, shown="per text encoder: 512 for UMT5 (Wan), 300 for T5, 77 "
                                          "for CLIP (rushes.train.encoders.default_text_tokens)",
                                          hint="e.g. 512")
    vae: str | None = setting(None, "diffusers id or folder of a VAE (AutoencoderKL, AutoencoderKLWan, ...) to train "
                              "in latent space (a hub id: from $RUSHES_MODEL_DIR when it holds it)", metavar="ID_OR_PATH",
                              shown="none, pixel space", model=True)
    vae_subfolder: str | None = setting(None, "subfolder of --vae holding the VAE, e.g. vae for a pipeline repo such "
                                        "as Wan-AI/Wan2.1-T2V-1.3B-Diffusers", metavar="NAME")
    caption_dropout: float = setting(0.1, "fraction of clips trained with the empty caption, for guidance", ge=0, lt=1,
                                     hint="0.1 is usual")
    cond_mix: str = setting(DEFAULT_COND_MIX, "tasks one model learns, as TASK=WEIGHT,...: t2v (text only), i2v (the "
                            "first frame given), extend (a prefix of frames given), firstlast (first and last frame "
                            "given); given frames are clean (t = 0) and out of the loss", metavar="MIX",
                            hint="e.g. t2v=1 for text-to-video only")
    val_clips: int = setting(1, "clips held out for the validation loss (none when the set has a single clip)", ge=0,
                             cli=False)
    captioner: str | None = setting(None, "use captions of this captioner only", shown="the newest per clip")
    prompt_version: str | None = setting(None, "use captions of this prompt version only", shown="any")
    caption_level: str = setting("clip", "which captions make examples: clip (each clip's caption over its whole "
                                 "span), window (the window captions of `rushes caption --window-s`, each over its "
                                 "window's frames; a clip without windows by its clip caption), or both",
                                 choices=("clip", "window", "both"))
    include_flagged_captions: bool = setting(False, "also train on captions a check flagged (caption_flags: "
                                             "truncated, repetition, refusal, language), which are skipped "
                                             "by default")
    limit: int | None = setting(None, "use at most this many clips, a quick trial", ge=1, shown="all")
    where: str | None = setting(None, "train only on clips whose clips-manifest row satisfies this DuckDB condition, "
                                "e.g. \"motion_mean > 0.01 AND duration_s >= 3\" (columns of the clips manifest, plus "
                                "caption); the selection is recorded in RUN_DIR/selection.json", metavar="SQL",
                                shown="every kept, captioned clip")

    def __post_init__(self):
        check(self)
        if self.batch_tokens < self.clip_tokens:
            raise invalid(self, "batch_tokens", f"({self.batch_tokens}) must be >= clip_tokens ({self.clip_tokens}): "
                          f"a clip could not fit in a sequence; raise batch_tokens or lower clip_tokens")
        if self.image_tokens is not None and self.batch_tokens < self.image_tokens:
            raise invalid(self, "batch_tokens", f"({self.batch_tokens}) must be >= image_tokens ({self.image_tokens}): "
                          f"a still could not fit in a sequence; raise batch_tokens or lower image_tokens")
        try:
            parse_cond_mix(self.cond_mix)
        except ValueError as exc:
            raise invalid(self, "cond_mix", str(exc)) from None
        if self.where is not None and not self.where.strip():
            raise invalid(self, "where", "is empty; give a SQL condition such as \"duration_s >= 3\", or leave it out")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, objective and bookkeeping (train/loop.py, train/diffusion.py)."""

    steps: int = setting(1000, "total optimisation steps", ge=1)
    lr: float = setting(1e-4, "peak AdamW learning rate", gt=0, le=1, hint="1e-4 is usual; above 1e-2 diverges")
    weight_decay: float = setting(0.0, "AdamW weight decay (0 disables it)", ge=0, cli=False)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = setting(100, "linear warm-up steps (0 disables it)", ge=0, cli=False)
    grad_clip: float = setting(1.0, "gradient norm clip (0 disables it)", ge=0, cli=False)
    ema_decay: float = setting(0.999, "EMA decay of the sampling weights", ge=0, lt=1, cli=False,
                               hint="0.999 is usual")
    seed: int = setting(0, "seed of the weights, data order, noise and caption dropout", ge=0, le=2**63 - 1)
    timestep_mean: float = 0.0  # logit-normal timestep: t = sigmoid(N(mean, std))
    timestep_std: float = setting(1.0, "std of the logit-normal timestep", gt=0, cli=False)
    shift_base_tokens: int = setting(256, "a clip of this many tokens gets shift 1; larger clips are noised more",
                                     ge=1, cli=False)
    max_shift: float = setting(6.0, "largest timestep shift", gt=0, cli=False)
    log_every: int = setting(10, "steps between log lines", ge=1)
    val_every: int = setting(100, "steps between validation losses on held-out clips", ge=1)
    checkpoint_every: int = setting(500, "steps between checkpoints; one is always written last", ge=1)
    val_timesteps: tuple[float, ...] = (0.25, 0.5, 0.75)
    sample_steps: int = setting(30, "Euler steps used by `rushes sample` unless given", ge=1, cli=False)
    guidance: float = setting(4.0, "classifier-free guidance scale used by `rushes sample` unless given", ge=0,
                              cli=False)

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        object.__setattr__(self, "val_timesteps", tuple(float(t) for t in self.val_timesteps))
        check(self)
        if not all(0.0 < t < 1.0 for t in self.val_timesteps):
            raise invalid(self, "val_timesteps", f"must lie in (0, 1), got {self.val_timesteps}")


@dataclass(frozen=True)
class EncodeConfig:
    """Resources and batching of ``rushes encode`` (what the tensors are is the run's DataConfig)."""

    batch_size: int = setting(8, "clips per decode task and encoder call", ge=1, le=65536)
    concurrency: int = setting(1, "encoder actors, each loading the encoders once", ge=1, le=4096)
    num_gpus: float = setting(0.0, "GPUs per encoder actor; 0 runs on CPU", ge=0, le=64)
    actor_cpus: float = setting(1.0, "CPUs reserved per encoder actor", ge=0, cli=False)
    decode_cpus: float = setting(1.0, "CPUs per decode task", gt=0, cli=False)
    torch_threads: int | None = setting(None, "intra-op threads per actor; None = torch/Ray default", ge=1, cli=False)
    shard_rows: int = setting(256, "clips per shard file: fewer, larger files; a crash loses at most this many", ge=1,
                              le=2**20)

    def __post_init__(self):
        check(self)


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
        data = {**SAVED_BEFORE["data"], **d.get("data", {})}  # what a run saved before a field existed trained with
        return cls(preset=d.get("preset", "custom"), model=build(ModelConfig, d.get("model", {})),
                   data=build(DataConfig, data), train=build(TrainConfig, d.get("train", {})))


# A saved config.json (RunConfig.from_dict) written before a field existed gets the value that run trained with,
# not today's default: a resumed or sampled older run does what it did (text-to-video only, no conditioning mix).
SAVED_BEFORE = {"data": {"cond_mix": "t2v=1"}}


def tiny() -> RunConfig:
    """CPU tests and smoke runs: a 2-block, 64-wide model on 8-frame clips of ~512 tokens (e.g. 40x24 px)."""
    return RunConfig("tiny", ModelConfig(patch_size=(1, 4, 4), hidden_size=64, depth=2, num_heads=4),
                     DataConfig(fps=8.0, max_frames=8, clip_tokens=512, batch_tokens=1024, max_side_px=128),
                     TrainConfig(steps=200, lr=2e-3, warmup_steps=10, ema_decay=0.99, log_every=10,
                                 val_every=50, checkpoint_every=100, shift_base_tokens=256))


def small() -> RunConfig:
    """A laptop or one small GPU (40.5M parameters): pixel or latent clips of ~1k tokens."""
    return RunConfig("small", ModelConfig(patch_size=(1, 2, 2), hidden_size=384, depth=12, num_heads=6),
                     DataConfig(fps=8.0, max_frames=16, clip_tokens=1024, batch_tokens=8192),
                     TrainConfig(steps=20000, lr=3e-4, warmup_steps=500))


def base() -> RunConfig:
    """DiT-B widths (160.3M parameters): one GPU, latent space with a video VAE recommended."""
    return RunConfig("base", ModelConfig(patch_size=(1, 2, 2), hidden_size=768, depth=12, num_heads=12),
                     DataConfig(fps=8.0, max_frames=33, clip_tokens=4096, batch_tokens=16384),
                     TrainConfig(steps=100000, lr=1e-4, warmup_steps=1000, checkpoint_every=2000, val_every=1000))


def large() -> RunConfig:
    """DiT-L widths (561.4M parameters): several GPUs, a video VAE and activation checkpointing."""
    return RunConfig("large", ModelConfig(patch_size=(1, 2, 2), hidden_size=1024, depth=24, num_heads=16,
                                          checkpointing=True),
                     DataConfig(fps=16.0, max_frames=49, clip_tokens=8192, batch_tokens=32768),
                     TrainConfig(steps=200000, lr=1e-4, warmup_steps=2000, checkpoint_every=2000, val_every=1000))


def xl() -> RunConfig:
    """DiT-XL widths (827.0M parameters): a GPU cluster, a video VAE and activation checkpointing."""
    return RunConfig("xl", ModelConfig(patch_size=(1, 2, 2), hidden_size=1152, depth=28, num_heads=16,
                                       checkpointing=True),
                     DataConfig(fps=16.0, max_frames=81, clip_tokens=16384, batch_tokens=65536),
                     TrainConfig(steps=400000, lr=1e-4, warmup_steps=2000, checkpoint_every=2000, val_every=1000))


PRESETS = {"tiny": tiny, "small": small, "base": base, "large": large, "xl": xl}
# The parameter counts the presets' docstrings and docs/train.md state are counted with these data widths
# (T5-base captions, a 16-channel video VAE latent); other widths move them by under 1% (tests/train/test_presets.py).
COUNTED_WIDTHS = {"text_dim": 768, "in_channels": 16}


def preset(name: str) -> RunConfig:
    """The named preset, or a ValueError listing the names."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
