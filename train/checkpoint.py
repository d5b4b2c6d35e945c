"""Checkpoints that resume exactly: weights, EMA, optimizer, step, data position and every RNG state.

Layout::

    RUN_DIR/checkpoints/step-0000100/model.safetensors    weights (float32; step zero-padded to 7 digits)
                                    ema.safetensors       EMA weights (what `rushes sample` uses)
                                    optimizer.pt          AdamW state (torch.save, loaded weights_only)
                                    state.json            step, data position, RNG states of python/numpy
                                    rng.safetensors       torch CPU (and CUDA) RNG states, the noise generator
    RUN_DIR/checkpoints/latest                            name of the newest complete checkpoint

A checkpoint is written to a temporary folder and renamed into place, and ``latest`` is rewritten
last, so a crash mid-save leaves the previous checkpoint usable. Tensors are whole whatever wrote them (one
process, DDP, or FSDP workers whose shards are gathered: train/parallel.py), so any of them resumes it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from rushes import storage
from rushes.train import parallel, rundir


@dataclass
class Resumed:
    """What :func:`load` restored besides the tensors it loaded in place."""

    step: int
    data_state: dict
    name: str = ""  # the checkpoint folder's name (step-0000100)


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / rundir.CHECKPOINTS


def latest(run_dir: str | os.PathLike, need: tuple[str, ...] = rundir.CHECKPOINT_FILES) -> Path | None:
    """The newest complete checkpoint folder of a local run (or working copy), or None for a run without one;
    a marker naming anything else raises :class:`rundir.CheckpointMarkerError`. ``need``: the files it must hold
    (sampling needs the weights only)."""
    name = rundir.latest_name(Path(run_dir), need)  # the marker's rule, for a folder as for a bucket
    return checkpoint_dir(run_dir) / name if name else None


def save(run_dir: str | os.PathLike, step: int, model: torch.nn.Module, ema: torch.nn.Module,
         optimizer: torch.optim.Optimizer, generator: torch.Generator, data_state: dict,
         keep: int = 2, write: bool = True) -> Path | None:
    """Write a checkpoint of ``step`` and point ``latest`` at it; keeps the newest ``keep`` checkpoints up to it.

    Weights and optimizer state are whole tensors whether the run is one process, DDP or FSDP. Under FSDP
    every worker calls this (gathering the shards is collective) and only the one with ``write`` writes.

    A later step's folder left by a run killed before it updated ``latest`` is not counted: it is never
    pointed at, and the resumed run overwrites it when it gets there.
    """
    names = saved_names(model)
    weights, ema_weights = (_only(parallel.full_model_state(m), names) for m in (model, ema))
    optim = parallel.full_optimizer_state(model, optimizer)
    if not write:
        return None
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:07d}"
    tmp = root / f"_tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(weights, str(tmp / "model.safetensors"))
    save_file(ema_weights, str(tmp / "ema.safetensors"))
    torch.save(optim, tmp / "optimizer.pt")
    rng = {"torch_cpu": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        rng["torch_cuda"] = torch.cuda.get_rng_state()
    save_file(rng, str(tmp / "rng.safetensors"))
    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {"step": step, "data": data_state,
             "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
             "python_rng": [py_state[0], list(py_state[1]), py_state[2]]}
    (tmp / "state.json").write_text(json.dumps(state))
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    marker_tmp = root / f"_{rundir.MARKER}.tmp"
    marker_tmp.write_text(name)
    os.replace(marker_tmp, root / rundir.MARKER)
    for old in sorted(p for p in root.glob("step-*") if p.is_dir() and p.name <= name)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load(path: str | os.PathLike, model: torch.nn.Module, ema: torch.nn.Module | None = None,
         optimizer: torch.optim.Optimizer | None = None, generator: torch.Generator | None = None) -> Resumed:
    """Load a checkpoint folder into the given objects (in place) and restore the global RNG states.

    Under FSDP (``train/parallel.py``) every worker calls this on its sharded model and optimizer and keeps its
    shards; the checkpoint may come from any number of workers, DDP or FSDP.
    """
    path = Path(path)
    keep = saved_names(model)
    parallel.load_model_state(model, _checked(path / "model.safetensors", keep), strict=keep is None)
    if ema is not None:
        parallel.load_model_state(ema, _checked(path / "ema.safetensors", keep), strict=keep is None)
    if optimizer is not None:
        state = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
        parallel.load_optimizer_state(model, optimizer, state)
    state = json.loads((path / "state.json").read_text())
    rng = load_file(str(path / "rng.safetensors"))
    if generator is not None:
        generator.set_state(rng["generator"])
    torch.set_rng_state(rng["torch_cpu"])
    if "torch_cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["torch_cuda"])
    n = state["numpy_rng"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    p = state["python_rng"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    return Resumed(int(state["step"]), state["data"], path.name)


def weights_name(use_ema: bool = True) -> str:
    """The file of a checkpoint folder holding the EMA (or the raw) weights."""
    return "ema.safetensors" if use_ema else "model.safetensors"


def load_weights(path: str | os.PathLike, model: torch.nn.Module, use_ema: bool = True) -> None:
    """Load only the (EMA) weights of a checkpoint folder into ``model``, for sampling."""
    keep = saved_names(model)
    model.load_state_dict(_checked(Path(path) / weights_name(use_ema), keep), strict=keep is None)


def saved_names(model: torch.nn.Module) -> set[str] | None:
    """The state-dict keys a checkpoint of ``model`` holds: None for all of them; a LoRA run's adapters (its
    trainable parameters) when part of the model is frozen: the base comes from ``--init`` again on resume."""
    names = [(n, p.requires_grad) for n, p in model.named_parameters()]
    return None if all(g for _, g in names) else {n for n, g in names if g}


def _only(state: dict[str, torch.Tensor], keep: set[str] | None) -> dict[str, torch.Tensor]:
    return state if keep is None else {k: v for k, v in state.items() if k in keep}


def _checked(path: Path, keep: set[str] | None) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; for a partial (LoRA) model exactly its trainable tensors, else a clear error
    (a checkpoint of a full fine-tune or of other adapters)."""
    state = load_file(str(path))
    if keep is not None and set(state) != keep:
        missing, extra = sorted(keep - set(state)), sorted(set(state) - keep)
        raise ValueError(f"{path} does not hold this run's LoRA adapters ({len(missing)} missing, e.g. "
                         f"{missing[:1]}; {len(extra)} unexpected, e.g. {extra[:1]}): it was written with other "
                         f"lora settings; resume with the run's own config.json")
    return state


class Checkpointer:
    """The checkpoints of one worker's run in its local folder ``run_dir`` (``where``: RUN as named, that folder
    or the bucket it is a working copy of, train/rundir.py), over the states it was given: the weights, their
    EMA, the optimizer and the noise generator. Every worker resumes; under FSDP every worker saves (gathering
    the shards is collective); only the one with ``write`` (worker 0) writes, and uploads each checkpoint to a
    bucket RUN in the background (:class:`rundir.Uploads`)."""

    def __init__(self, run_dir: Path, where, write: bool, model: torch.nn.Module, ema: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, generator: torch.Generator):
        self.run_dir, self.where, self.write = run_dir, where, write
        self.model, self.ema, self.optimizer, self.generator = model, ema, optimizer, generator
        self.uploads = rundir.Uploads(run_dir, where, active=write)

    def resume(self) -> Resumed | None:
        """Load the newest checkpoint into the states (and the global RNG states); what it restored besides
        them, or None for a new run."""
        ckpt = latest(self.run_dir)
        return None if ckpt is None else load(ckpt, self.model, self.ema, self.optimizer, self.generator)

    def location(self, name: str) -> str:
        """Checkpoint ``name`` as the user sees it: in RUN's folder or bucket."""
        return str(storage.join(self.where, rundir.CHECKPOINTS, name))

    def save(self, step: int, data_state: dict) -> None:
        """Checkpoint ``step`` with the data position after it; worker 0 starts uploading it to a bucket RUN
        (the previous upload's error, if any, is raised here)."""
        saved = save(self.run_dir, step, self.model, self.ema, self.optimizer, self.generator, data_state,
                     write=self.write)
        if self.write:
            self.uploads.push(saved.name)

    def close(self) -> None:
        """Wait for the last upload (a run's end); raises its error."""
        self.uploads.close()
