"""What a training run will be, decided before it starts: its clips, where their tensors come from, and the
complete config that ``RUN_DIR/config.json`` records.

Nothing of a run's config is filled in once training runs: the widths the model takes from its data
(``in_channels``, ``text_dim``) are read up front, from the encodings' ``key.json`` when the run streams
``rushes encode`` output (train/shards.py), else from the encoders' configs without loading a weight
(train/encoders.py). So ``rushes train --dry-run`` prints :meth:`RunPlan.config_record`, and the trainer writes
that same record as config.json.

Use::

    plan = plan_run(["OUT"], preset("tiny"))
    plan.cfg.model.text_dim        # the text encoder's hidden size
    plan.encodings                 # the encodings folder streamed, or None: clips decoded on the fly
    plan.config_record()           # what RUN_DIR/config.json holds
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from rushes.train import shards
from rushes.train.config import RunConfig
from rushes.train.encoders import EncoderError, TensorDims, encoder_dims, text_token_budget
from rushes.train.parallel import check_parallel
from rushes.train.selection import Selection, select_clips
from rushes.versions import tool_versions

log = logging.getLogger(__name__)

TOOLS = ("torch", "transformers", "diffusers", "safetensors", "av")  # recorded in config.json


@dataclass(frozen=True)
class RunPlan:
    """A run as it will train: the complete config, the clips selected and the encodings streamed (None:
    decoded on the fly into ``RUN_DIR/cache``), for ``workers`` workers sharing the model by ``parallel``."""

    cfg: RunConfig  # complete: in_channels and text_dim are those of the data
    selection: Selection
    encodings: Path | str | None
    workers: int = 1
    parallel: str = "ddp"

    def __post_init__(self):
        check_parallel(self.parallel)
        if self.workers < 1:
            raise ValueError(f"workers {self.workers} must be >= 1 (--workers)")

    def config_record(self) -> dict:
        """``RUN_DIR/config.json``: the resolved config plus the workers, their parallelism (ddp or fsdp) and the
        versions of the tools of this call."""
        return {**self.cfg.to_dict(), "workers": self.workers, "parallel": self.parallel,
                "tool_versions": tool_versions(TOOLS)}

    def config_json(self) -> str:
        """:meth:`config_record` as ``RUN_DIR/config.json`` holds it (and ``rushes train --dry-run`` prints it)."""
        return json.dumps(self.config_record(), indent=2, sort_keys=True)


def out_dirs(out_dir) -> list:
    """One OUT or several, as a list."""
    return [out_dir] if isinstance(out_dir, (str, os.PathLike)) else list(out_dir)


def plan_run(out_dir, cfg: RunConfig, use_encodings: bool = True, workers: int = 1,
             parallel: str = "ddp") -> RunPlan:
    """The plan of training ``cfg`` on the clips of ``out_dir`` (one OUT or several, train/selection.py): the
    encodings of OUT made with this config when there are any and ``use_encodings`` (a mismatch raises, naming
    the setting; a single OUT only), and the config completed with the widths of those tensors."""
    outs = out_dirs(out_dir)
    selection = select_clips(outs, cfg.data)
    cfg = with_text_budget(cfg)  # after the selection: a run with nothing to train fails on that first
    if use_encodings and len(outs) > 1:
        log.info("training on %d runs: clips are decoded on the fly (encodings are per run)", len(outs))
    use = use_encodings and len(outs) == 1
    folder = shards.find_encodings(outs[0], shards.key_inputs(cfg.data, cfg.model.patch_size)) if use else None
    dims = shards.read_dims(folder) if folder is not None else data_dims(cfg)
    return RunPlan(complete(cfg, dims), selection, folder, workers, parallel)


def with_text_budget(cfg: RunConfig) -> RunConfig:
    """``cfg`` with its caption token budget (``data.max_text_tokens``) decided: the one given, else the text
    encoder family's default (:func:`rushes.train.encoders.default_text_tokens`), capped by the encoder's positions.
    The number is part of the encodings' key and of config.json, so a run records what it trained with."""
    d = cfg.data
    try:
        budget = text_token_budget(d.text_encoder, d.max_text_tokens, d.text_encoder_subfolder)
    except EncoderError as exc:
        if d.max_text_tokens is None:
            raise EncoderError(f"{exc} (its config gives the default caption budget; or pass --max-text-tokens)") \
                from exc
        budget = d.max_text_tokens  # the encoder is not readable here; the run fails where it needs it
    return replace(cfg, data=replace(d, max_text_tokens=budget))


def data_dims(cfg: RunConfig) -> TensorDims:
    """The widths of clips decoded and encoded on the fly with ``cfg.data``'s encoders (their configs only)."""
    d = cfg.data
    return encoder_dims(d.text_encoder, d.vae, d.vae_subfolder, d.text_encoder_subfolder)


def complete(cfg: RunConfig, dims: TensorDims) -> RunConfig:
    """``cfg`` with the model's input widths set to the data's; a pretrained model's (``--init``) widths are its
    own, and data of other widths are refused."""
    m = cfg.model
    if m.init and (dims.channels, dims.text_dim) != (m.in_channels, m.text_dim):
        raise ValueError(f"--init {m.init} takes {m.in_channels}-channel latents and {m.text_dim}-wide caption "
                         f"embeddings, but the encoders make {dims.channels} and {dims.text_dim} (--text-encoder "
                         f"{cfg.data.text_encoder}, --vae {cfg.data.vae}): use the model's own text encoder and VAE "
                         f"(the defaults of a pipeline repo)")
    return replace(cfg, model=replace(m, in_channels=dims.channels, text_dim=dims.text_dim))
