"""Data parallelism of the trainer: DDP (the default) or FSDP2, and whole-model state either way.

Use::

    from rushes.train import parallel
    model = parallel.wrap(net, ema, device, world, "fsdp")   # before building the optimizer over net.parameters()
    with parallel.grad_sync(model, sync=last_pack):           # one gradient reduction per step
        loss.backward()
    full = parallel.full_model_state(net)                     # collective under FSDP: every rank calls it

``ddp`` keeps a whole copy of the weights, gradients and AdamW state on every worker and all-reduces the
gradients. ``fsdp`` (``torch.distributed.fsdp.fully_shard``, FSDP2) shards them over the workers, one unit per
transformer block plus the root (embeddings, final layer), and all-gathers a block's weights just before it
runs; the EMA copy is sharded the same way. Both average the gradients over the workers, so a step is the same
step whatever the choice. Checkpoints hold whole tensors either way (``train/checkpoint.py``): the FSDP shards
are gathered on save and split again on load, so a run moves between DDP and FSDP and between worker counts.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

PARALLEL = ("ddp", "fsdp")


class DeviceError(ValueError):
    """A torch device that does not parse, or that this machine does not have."""


def torch_device(device: str | torch.device | None) -> torch.device:
    """The torch device to run on: ``device`` (``cpu``, ``cuda``, ``cuda:1``, ...), or cuda when one is available
    and cpu otherwise for None/``auto``. Checked before any work: a device that does not parse or that this
    machine does not have raises :class:`DeviceError` saying what there is."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(f"device {str(device)!r} is not a torch device ({exc}); use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (dev.index is not None and dev.index >= count):
            have = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise DeviceError(f"device {str(device)!r}: this machine has {have}; use cpu"
                              f"{f' or cuda:0..cuda:{count - 1}' if count else ''}")
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise DeviceError(f"device {str(device)!r}: rushes runs on cpu or cuda (cuda:N)")
    return dev


def check_parallel(parallel: str) -> None:
    if parallel not in PARALLEL:
        raise ValueError(f"parallel {parallel!r}: use ddp (a whole model per worker, the default) or fsdp "
                         f"(weights, gradients and optimizer state sharded per block, for the large presets)")


def is_sharded(module: torch.nn.Module) -> bool:
    """Whether ``module`` was sharded by :func:`wrap` (FSDP2)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def wrap(net: torch.nn.Module, ema: torch.nn.Module, device: torch.device, world: int,
         parallel: str = "ddp") -> torch.nn.Module:
    """The module the loop calls: ``net`` itself (one worker, DDP), DDP over it, or ``net`` sharded in place.

    ``fsdp`` replaces the parameters of ``net`` and ``ema`` by sharded ones, so build the optimizer after this
    call; ``ddp`` wraps ``net`` (call it after loading a checkpoint: DDP broadcasts worker 0's weights).
    """
    check_parallel(parallel)
    if parallel == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # The model's output is a view (nn.Linear over (B, L, D)); the loss only reads it, never in place.
        warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
        for module in (net, ema):
            for block in module.blocks:  # one all-gather per block, freed after its forward (and backward)
                fully_shard(block)
            fully_shard(module)  # the root: embeddings, text projections, final layer
        return net
    if world == 1:
        return net
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    # broadcast_buffers=False: the only buffers are RoPE's constant frequencies, and a broadcast before every
    # forward would be one more point where each worker waits for the slowest.
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids, broadcast_buffers=False)


@contextlib.contextmanager
def grad_sync(model: torch.nn.Module, sync: bool):
    """Backward passes inside reduce gradients over the workers only when ``sync`` (the step's last pack)."""
    if sync or not isinstance(model, torch.nn.parallel.DistributedDataParallel) and not is_sharded(model):
        yield
        return
    if is_sharded(model):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
        return
    with model.no_sync():
        yield


def local(params) -> list[torch.Tensor]:
    """This worker's part of each parameter: the shard of an FSDP parameter, a plain parameter itself."""
    from torch.distributed.tensor import DTensor

    return [p.to_local() if isinstance(p, DTensor) else p for p in params]


def as_float(value: torch.Tensor) -> float:
    """A scalar that may be a DTensor (the gradient norm under FSDP) as a Python float."""
    from torch.distributed.tensor import DTensor

    return float(value.full_tensor() if isinstance(value, DTensor) else value)


def _options(**kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def full_model_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Whole CPU tensors of ``module``'s state. Under FSDP a collective (every rank calls it; rank 0 gets them)."""
    if not is_sharded(module):
        return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_options(cpu_offload=True))


def load_model_state(module: torch.nn.Module, state: dict[str, torch.Tensor], strict: bool = True) -> None:
    """Load whole tensors into ``module``; under FSDP each rank keeps its shard. ``strict=False``: ``state`` may
    hold part of the module (a LoRA checkpoint's adapters); the caller checks which part."""
    if not is_sharded(module):
        module.load_state_dict(state, strict=strict)
        return
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(module, state, options=_options(strict=strict))


def _trained(model: torch.nn.Module) -> list[str]:
    """Names of the parameters the optimizer steps, in its order (all of them, or a LoRA run's adapters)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state in ``optimizer.state_dict()`` form (parameters numbered in ``model.parameters()``
    order), with whole tensors. Under FSDP a collective; rank 0 gets the state."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    named = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
    if not named:
        return {}
    number = {name: i for i, name in enumerate(_trained(model))}
    return {"state": {number[name]: v for name, v in named["state"].items()},
            "param_groups": [{**g, "params": [number[name] for name in g["params"]]} for g in named["param_groups"]]}


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a state written by :func:`full_optimizer_state` (either form of run); under FSDP each rank keeps
    its shard of every moment."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    name = _trained(model)
    named = {"state": {name[i]: v for i, v in state["state"].items()},
             "param_groups": [{**g, "params": [name[i] for i in g["params"]]} for g in state["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, named, options=_options())
