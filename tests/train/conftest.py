"""Fixtures of the train tests: a tiny text encoder saved to disk, and manifests written by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from rushes.testing.train_manifests import Clip, write_manifest


@pytest.fixture(autouse=True)
def _train_tests_on_one_torch_thread(one_torch_thread):
    """Every train test runs torch on one thread (tests/conftest.py ``one_torch_thread``)."""
    yield


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> str:
    """A tiny random-weight T5 encoder folder, loaded through from_pretrained like a real id."""
    from rushes.testing.tiny import save_tiny_text_encoder

    return save_tiny_text_encoder(tmp_path_factory.mktemp("t5") / "tiny-t5", kind="t5")


@pytest.fixture(scope="session")
def synth_out(tmp_path_factory) -> Path:
    """OUT with three synthetic clips (two spans of one video, one encoded clip file), plus a rejected
    clip and a failed caption that training must ignore."""
    from rushes.testing.synth import make_cut_video

    root = tmp_path_factory.mktemp("synth_out")
    v = make_cut_video(root / "src.mp4", [1.0, 1.0], fps=16, size=(96, 64))
    (root / "out" / "media").mkdir(parents=True)
    enc = make_cut_video(root / "out" / "media" / "c.mp4", [1.0], fps=16, size=(64, 96),
                         sources=["smptebars=size={w}x{h}:rate={fps}"])
    clips = [Clip(v.path, 0.0, 1.0, 96, 64, "a colourful test pattern with moving shapes"),
             Clip(v.path, 1.0, 2.0, 96, 64, "a mandelbrot fractal zooming in"),
             Clip(enc.path, 0.0, 1.0, 64, 96, "vertical colour bars", clip_path="media/c.mp4"),
             Clip(v.path, 0.0, 2.0, 96, 64, "rejected clip", keep=False),
             Clip(v.path, 0.5, 1.5, 96, 64, "failed caption", caption_status="error")]
    return write_manifest(root / "out", clips)


@pytest.fixture
def one_rank_group(monkeypatch):
    """A gloo process group of one rank in this process, as Ray Train sets up for --workers 1."""
    import socket

    import torch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    yield
    torch.distributed.destroy_process_group()
