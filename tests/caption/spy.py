"""A wrapper around the real Captioner that records what reaches the processor (for tests and bench).

It changes nothing the model sees: the real processor and the real ``generate`` run. Each caption text
is prefixed with ``[L1,L2,...]``, the mean grey level of every frame the processor received for that
clip, so a test can check that a row's caption came from its own clip's frames. Calls are appended as
JSON lines to ``log_path``. ``fail_level`` makes generate raise for a batch holding a clip of that
level; ``oom_above`` raises ``torch.OutOfMemoryError`` for batches larger than that; ``empty_level``
replaces the output of a clip of that level by an empty string.

Ray workers do not import ``tests/``: :func:`make_spy` builds a configured subclass, and tests register
this module with ``ray.cloudpickle.register_pickle_by_value`` so the class travels by value.
"""

from __future__ import annotations

import json

import numpy as np

from rushes.caption.captioner import Captioner, Generation


def levels(rgb: np.ndarray) -> list[int]:
    """Mean grey level (0..255) of each frame of a (T, H, W, 3) array, rounded to 10s."""
    return [int(round(float(f.mean()) / 10.0) * 10) for f in rgb]


class _ProcessorProxy:
    def __init__(self, processor, sink: list):
        self._processor = processor
        self._sink = sink

    def __getattr__(self, name):
        return getattr(self._processor, name)

    def __call__(self, *args, **kwargs):
        out = self._processor(*args, **kwargs)
        videos = kwargs.get("videos")
        images = kwargs.get("images")
        visual = videos if videos is not None else [np.stack(v) for v in images]
        self._sink.append({
            "texts": list(kwargs["text"]),
            "expanded": self._processor.tokenizer.batch_decode(out["input_ids"]),
            "levels": [levels(np.asarray(v)) for v in visual],
            "shapes": [list(np.asarray(v).shape) for v in visual],
            "metadata_fps": [m.fps for m in kwargs.get("video_metadata") or []],
            "tensor_shapes": {k: list(v.shape) for k, v in out.items() if hasattr(v, "shape")},
        })
        return out


class SpyCaptioner(Captioner):
    """The real Captioner with its processor wrapped to record inputs; see the module docstring."""

    log_path: str | None = None
    fail_level: int | None = None
    oom_above: int = 0
    empty_level: int | None = None

    def __init__(self, cfg, resolved):
        super().__init__(cfg, resolved)
        self.calls: list[dict] = []
        self.processor = _ProcessorProxy(self.processor, self.calls)

    def generate(self, clips, prompt_text, sampling=None):
        import torch

        if self.oom_above and len(clips) > self.oom_above:
            self._log({"oom": len(clips)})
            raise torch.OutOfMemoryError(f"fake OOM for a batch of {len(clips)}")
        if self.fail_level is not None and any(self.fail_level in levels(c.rgb) for c in clips):
            raise RuntimeError(f"fake generation failure on level {self.fail_level}")
        gens = super().generate(clips, prompt_text, sampling)
        call = self.calls[-1]
        self._log(call)
        empty = self.empty_level
        return [Generation("" if empty is not None and empty in lv else f"{lv} {g.text}", g.input_tokens,
                           g.output_tokens, g.finish_reason, g.engine_version) for lv, g in zip(call["levels"], gens)]

    def _log(self, record: dict) -> None:
        if self.log_path:
            with open(self.log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")


def make_spy(log_path=None, fail_level=None, oom_above=0, empty_level=None) -> type:
    """A SpyCaptioner subclass carrying its settings as class attributes (they travel to Ray actors)."""
    return type("ConfiguredSpy", (SpyCaptioner,), {"log_path": str(log_path) if log_path else None,
                                                    "fail_level": fail_level, "oom_above": oom_above,
                                                    "empty_level": empty_level})
