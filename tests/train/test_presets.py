"""The sizes the docs and the presets' docstrings state are the parameter counts of the models the presets build."""

from __future__ import annotations

import functools
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rushes.train.config import COUNTED_WIDTHS, PRESETS
from rushes.train.model import DiffusionTransformer, count_parameters

DOCS = Path(__file__).resolve().parents[2] / "docs" / "train.md"


@functools.cache
def _millions(name: str) -> float:
    cfg = replace(PRESETS[name]().model, **COUNTED_WIDTHS)
    with torch.device("meta"):  # shapes only: xl's 827M parameters cost no memory and no time
        return count_parameters(DiffusionTransformer(cfg)) / 1e6


def _table() -> dict[str, str]:
    rows = re.findall(r"^\| (\w+) \| \d+ x \d+ \| \d+ \| ([\d.]+)M \|$", DOCS.read_text(), flags=re.MULTILINE)
    return dict(rows)


def test_the_docs_state_each_presets_counted_size():
    table = _table()
    assert set(table) == set(PRESETS), "docs/train.md's preset size table must list every preset"
    for name, stated in table.items():
        assert stated == f"{_millions(name):.1f}", f"{name}: docs/train.md says {stated}M, the model has " \
                                                   f"{_millions(name):.1f}M"


@pytest.mark.parametrize("name", [n for n in PRESETS if n != "tiny"])
def test_each_presets_docstring_states_its_counted_size(name):
    stated = re.search(r"([\d.]+)M parameters", PRESETS[name].__doc__)
    assert stated, f"the docstring of preset {name} must state its size as 'N.NM parameters'"
    assert stated.group(1) == f"{_millions(name):.1f}"
