"""A Wan training run written back as a diffusers pipeline folder that ``WanPipeline.from_pretrained`` loads and runs.

Use::

    from rushes.train.export import export_diffusers
    export_diffusers("runs/wan-lora", "exported/wan-lora")                        # EMA weights, LoRA merged
    export_diffusers("runs/wan-lora", "exported/base+lora", lora="separate")      # base transformer + adapter file

    pipe = WanPipeline.from_pretrained("exported/base+lora")
    pipe.load_lora_weights("exported/base+lora")                                  # the separate adapter

The folder holds ``model_index.json``, ``transformer/`` (the run's newest checkpoint: ``weights="ema"`` or
``"raw"``), the run's text encoder (``text_encoder/`` + ``tokenizer/``), ``vae/`` and ``scheduler/`` (the
``--init`` repo's when it is a pipeline, else a flow-matching Euler scheduler). A LoRA run exports its adapters
merged into the transformer (``lora="merge"``) or the base transformer plus ``pytorch_lora_weights.safetensors``
in diffusers' LoRA format (``lora="separate"``). The folder is written beside ``dest`` and renamed into place; an
existing ``dest`` is never overwritten. Weights are float32, as trained.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from rushes.train import lora as lora_mod
from rushes.train.config import RunConfig
from rushes.train.encoders import T5_TYPES, load_tokenizer
from rushes.train.wan import diffusers_config

WEIGHTS = ("ema", "raw")
LORA = ("merge", "separate")


class ExportError(ValueError):
    """A run that cannot be exported as asked; the message names the run and the fix."""


def export_diffusers(run_dir, dest: str | os.PathLike, *, weights: str = "ema", lora: str = "merge") -> Path:
    """Write the newest checkpoint of Wan run ``run_dir`` (a folder or bucket RUN) as a diffusers ``WanPipeline``
    folder at ``dest``; returns ``dest``. See the module docstring for ``weights`` and ``lora``."""
    from rushes.train.sample import load_run

    if weights not in WEIGHTS or lora not in LORA:
        raise ExportError(f"weights {weights!r} / lora {lora!r}: use weights ema or raw, lora merge or separate")
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest} exists and is not empty; export into a new folder")
    cfg, model = load_run(run_dir, torch.device("cpu"), use_ema=weights == "ema")
    if cfg.model.arch != "wan":
        raise ExportError(f"{run_dir} trains rushes' own DiT (arch {cfg.model.arch}), which diffusers has no pipeline "
                          f"for; export a run started with --init from a Wan model")
    separate = lora == "separate" and cfg.model.lora_rank > 0
    state = model.state_dict()
    adapters = lora_mod.diffusers_lora_state(state) if separate else None
    if separate:  # the base: the frozen layers under their own names
        state = {k.replace(".base_layer.", "."): v for k, v in state.items() if not lora_mod.is_adapter(k)}
    else:
        state = lora_mod.merge_adapters(model).state_dict()
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        pipe = _pipeline(cfg, _transformer(cfg, state))
        pipe.save_pretrained(tmp)
        if separate:
            type(pipe).save_lora_weights(tmp, transformer_lora_layers=adapters,
                                         transformer_lora_adapter_metadata=lora_mod.lora_metadata(cfg.model))
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _transformer(cfg: RunConfig, state: dict[str, torch.Tensor]):
    """diffusers' WanTransformer3DModel holding ``state`` (rushes' Wan state dict has its very names)."""
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights():  # parameters on meta (no random init), RoPE tables real
        model = WanTransformer3DModel(**diffusers_config(cfg.model))
    model.load_state_dict({k: v.float().contiguous() for k, v in state.items()}, strict=True, assign=True)
    return model.eval()


def _pipeline(cfg: RunConfig, transformer):
    """A WanPipeline of ``transformer`` with the run's text encoder, tokenizer and VAE, and the scheduler of the
    ``--init`` pipeline repo (else flow-matching Euler)."""
    import transformers
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline
    from transformers import AutoConfig

    d, m = cfg.data, cfg.model
    if not d.vae:
        raise ExportError("the run trained in pixel space (no --vae); a diffusers Wan pipeline needs its VAE")
    sub = d.text_encoder_subfolder or ""
    kind = AutoConfig.from_pretrained(d.text_encoder, subfolder=sub).model_type
    encoder = getattr(transformers, T5_TYPES.get(kind, "AutoModel")).from_pretrained(d.text_encoder, subfolder=sub)
    vae = AutoencoderKLWan.from_pretrained(d.vae, subfolder=d.vae_subfolder)
    scheduler = None
    if m.init and m.init_subfolder == "transformer":
        scheduler = _scheduler_of(m.init)
    return WanPipeline(tokenizer=load_tokenizer(d.text_encoder, d.text_encoder_subfolder), text_encoder=encoder,
                       vae=vae, scheduler=scheduler or FlowMatchEulerDiscreteScheduler(shift=3.0),
                       transformer=transformer)


def _scheduler_of(repo: str):
    """The scheduler a pipeline repo ships (Wan's: UniPC with its flow shift), or None."""
    import diffusers
    from diffusers.configuration_utils import ConfigMixin

    class SchedulerConfig(ConfigMixin):
        config_name = "scheduler_config.json"

    try:
        name = SchedulerConfig.load_config(repo, subfolder="scheduler").get("_class_name", "")
        return getattr(diffusers, name).from_pretrained(repo, subfolder="scheduler")
    except (OSError, ValueError, AttributeError, EnvironmentError):
        return None
