"""Fixtures of the caption tests: tiny VLMs and the grey-level source video (built once per session)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rushes.testing.grey_clips import make_grey_video  # noqa: E402
from rushes.testing.tiny import build_tiny_qwen25_vl, build_tiny_smolvlm  # noqa: E402


@pytest.fixture(scope="session")
def tiny_vlms(tmp_path_factory) -> dict[str, Path]:
    """Random-weight Qwen2.5-VL and SmolVLM folders, loadable with from_pretrained."""
    root = tmp_path_factory.mktemp("tiny_vlms")
    return {"qwen2_5_vl": build_tiny_qwen25_vl(root / "qwen2_5_vl"), "smolvlm": build_tiny_smolvlm(root / "smolvlm")}


@pytest.fixture(scope="session")
def grey_video(tmp_path_factory) -> Path:
    """See grey_clips.py: one solid grey level per second, 12 s."""
    return make_grey_video(tmp_path_factory.mktemp("grey") / "grey.mp4")
