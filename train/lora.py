"""LoRA adapters (peft) on the packed transformer: only the adapters train; the base weights stay frozen.

``ModelConfig.lora_rank`` > 0 turns a run into a LoRA run: :func:`add_adapters` injects peft ``LoraLayer``s into
the linear layers named by ``lora_targets`` (after the base weights were loaded: ``--init``) and freezes every
other weight. The optimizer, the EMA, DDP/FSDP gradient reduction and checkpoints then see the adapters only
(train/loop.py, train/checkpoint.py: a checkpoint holds the adapter tensors, ``blocks.0.attn1.to_q.lora_A.weight``
... with peft's adapter name kept), so a resumed run rebuilds the base from ``--init`` and loads the adapters.

A Wan model's modules carry diffusers' names, so :func:`diffusers_lora_state` is what diffusers'
``WanPipeline.load_lora_weights`` / ``WanTransformer3DModel.load_lora_adapter`` read, with
:func:`lora_metadata` (rank, alpha, targets) giving the same scale there.
"""

from __future__ import annotations

import torch
from torch import nn

ADAPTER = "default"  # peft's adapter name inside the model


class LoraError(ValueError):
    """LoRA settings that cannot apply to this model; the message names the setting and the fix."""


def add_adapters(model: nn.Module, cfg) -> nn.Module:
    """``model`` with LoRA adapters of ``cfg`` (a ModelConfig with ``lora_rank`` > 0) on the linear layers named
    by ``cfg.lora_targets``, every other weight frozen; ``model`` unchanged for a full fine-tune. The adapters'
    A matrices are drawn from torch's global RNG (seed it first), the B matrices are zero: the model starts equal
    to the base."""
    if not cfg.lora_rank:
        return model
    from peft import LoraConfig, inject_adapter_in_model

    targets = list(cfg.lora_targets)
    _check_targets(model, targets)
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha or cfg.lora_rank, target_modules=targets,
                        lora_dropout=0.0, bias="none")
    model = inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter(name))
    return model


def _check_targets(model: nn.Module, targets: list[str]) -> None:
    """Every target names (or ends) at least one linear layer and no other kind of layer."""
    names = dict(model.named_modules())
    for target in targets:
        hits = [n for n in names if n == target or n.endswith("." + target)]
        if not hits:
            raise LoraError(f"lora_targets {target!r} names no layer of this model; layers are named like "
                            f"{', '.join(sorted({n.rsplit('.', 1)[-1] for n, m in names.items() if isinstance(m, nn.Linear)}))}")
        bad = [n for n in hits if not isinstance(names[n], nn.Linear)]
        if bad:
            raise LoraError(f"lora_targets {target!r} names {bad[0]}, a {type(names[bad[0]]).__name__}: adapters go "
                            f"on linear layers only")


def is_adapter(name: str) -> bool:
    """Whether a parameter or state-dict key is a LoRA adapter's."""
    return ".lora_A." in name or ".lora_B." in name


def trainable_names(model: nn.Module) -> set[str]:
    """Names of the parameters that train (all of them in a full fine-tune, the adapters in a LoRA run)."""
    return {n for n, p in model.named_parameters() if p.requires_grad}


def diffusers_lora_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Adapter tensors of a model state dict (or checkpoint) in diffusers' naming: peft's adapter name dropped
    (``blocks.0.attn1.to_q.lora_A.weight``), ready for ``WanPipeline.save_lora_weights``."""
    return {k.replace(f".{ADAPTER}.", "."): v for k, v in state.items() if is_adapter(k)}


def lora_metadata(cfg) -> dict:
    """The LoraConfig fields diffusers stores beside an adapter file, so it scales the adapter as training did."""
    return {"r": cfg.lora_rank, "lora_alpha": cfg.lora_alpha or cfg.lora_rank, "target_modules": list(cfg.lora_targets)}


@torch.no_grad()
def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight and put the plain layers back: a model with the base's names and
    the fine-tuned weights (export, faster sampling)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge(safe_merge=True)
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, module.get_base_layer())
    return model
