"""Where a model named by a hub id is loaded from: a local folder under ``$RUSHES_MODEL_DIR`` when it has one.

A setting declared with ``model=True`` (caption's ``--model``, train's and encode's ``--text-encoder`` and
``--vae``) that names a hub id ``org/name`` is replaced, when the command's config is built
(:meth:`rushes.settings.Values.build`), by ``$RUSHES_MODEL_DIR/org/name`` if that folder exists: the layout
``hf download org/name --local-dir $RUSHES_MODEL_DIR/org/name`` writes. So the commands the docs print run
unchanged on a cluster without internet, or with test models (docs/offline.md). A local path or an id with no
folder there is left as it is (the Hugging Face cache, or a download, then serves it; ``HF_HUB_OFFLINE=1``
forbids the download). The folder is what is recorded (captioner, encodings key, the run's config.json).

Usage::

    RUSHES_MODEL_DIR=/models rushes caption runs/r1     # loads /models/HuggingFaceTB/SmolVLM2-256M-Video-Instruct
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

ENV = "RUSHES_MODEL_DIR"
log = logging.getLogger(__name__)


def is_hub_id(name: str) -> bool:
    """``org/name`` (one slash, no path prefix): what the hub names a repository."""
    return name.count("/") == 1 and not name.startswith(("/", ".", "~")) and "://" not in name


def local_model(name: str | None) -> str | None:
    """``name``'s folder under ``$RUSHES_MODEL_DIR`` when it is a hub id with one there, else ``name`` unchanged."""
    root = os.environ.get(ENV, "").strip()
    if not name or not root or not is_hub_id(name) or os.path.isdir(name):
        return name
    folder = Path(root).expanduser() / name
    if not folder.is_dir():
        log.warning("model %s is not in %s=%s (no folder %s): loading it by its hub id (the Hugging Face cache, or "
                    "a download unless HF_HUB_OFFLINE=1)", name, ENV, root, folder)
        return name
    log.info("model %s: loading %s (%s)", name, folder, ENV)
    return str(folder.resolve())
