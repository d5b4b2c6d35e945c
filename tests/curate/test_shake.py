"""The camera label ``shaky`` has a score behind it (``camera_shake``) that ``rushes filter`` thresholds, the dry run
says it is one, and a curate rerun keeps (or says it replaces) the filter ``rushes filter`` applied last."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from rushes import manifests
from rushes.cli import main
from rushes.curate.config import debug, describe_changes
from rushes.curate.filter import FilterConfig, filter_run, format_counts, strict
from rushes.curate.motion import CameraThresholds, camera_label, camera_shake
from rushes.testing.synth import make_cut_video

from test_filter import clip, decide


def test_shaky_is_exactly_camera_shake_above_the_labels_line():
    th = CameraThresholds()
    rng = np.random.default_rng(0)
    labels = []
    for i in range(400):
        n = int(rng.integers(2, 20))
        drift = rng.normal(0, 0.05, 2) * (i % 4)  # from no net direction to a steady pan
        scale = 0.1 if i % 7 == 0 else 1.0  # some cameras barely move: static
        tx, ty = scale * rng.normal(drift[0], 0.03, n), scale * rng.normal(drift[1], 0.03, n)
        zoom = scale * rng.normal(0, 0.02 if i % 5 else 0.2, n)
        label, shake = camera_label(tx, ty, zoom, th), camera_shake(tx, ty, zoom, th)
        assert 0.0 <= shake <= 1.0
        assert (label == "shaky") == (shake > 1 - th.consistency), (label, shake)
        labels.append(label)
    assert {"shaky", "static"} <= set(labels) and len(set(labels)) >= 4
    nan = np.array([np.nan])
    assert camera_shake(nan, nan, nan, th) is None


def test_a_threshold_moves_the_shaky_line_and_old_rows_keep_their_label():
    rows = [clip(0, camera_motion="shaky", camera_shake=0.5), clip(1, camera_motion="shaky", camera_shake=0.8),
            clip(2, camera_motion="pan_left", camera_shake=0.1),
            clip(3, camera_motion="shaky"), clip(4, camera_motion="static")]  # curated before camera_shake existed
    keep, reasons = decide(rows, preset="strict")
    assert keep == [False, False, True, False, True]
    assert reasons[0] == reasons[3] == "shake>0.4"
    looser = FilterConfig(**{**json.loads(strict().to_json()), "max_camera_shake": 0.6})
    assert decide(rows, cfg=looser)[0] == [True, False, True, False, True]
    off = FilterConfig(**{**json.loads(strict().to_json()), "max_camera_shake": None})
    assert decide(rows, cfg=off)[0] == [True] * 5
    with pytest.raises(ValueError, match="max_camera_shake"):
        FilterConfig(max_camera_shake=1.5)


def test_the_dry_run_says_it_is_one(tmp_path, capsys):
    manifests.write_part(tmp_path, "clips", [clip(0), clip(1, camera_shake=0.9, camera_motion="shaky")])
    assert main(["filter", str(tmp_path), "--preset", "strict", "--dry-run"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("preset strict: 1 kept, 1 rejected of 2 clips (dry run, nothing written")
    assert not (tmp_path / "filter.json").exists()
    assert "nothing written" not in format_counts(filter_run(tmp_path, preset="strict"))
    assert main(["filter", str(tmp_path), "--max-camera-shake", "0.95", "--preset", "strict"]) == 0
    assert json.loads((tmp_path / "filter.json").read_text())["params"]["max_camera_shake"] == 0.95


def test_describe_changes_says_what_differs_and_what_a_resume_does():
    base = debug()
    assert describe_changes(base.to_dict(), base) is None
    assert describe_changes(json.loads(json.dumps(base.to_dict())), base) is None  # as read back from curate.json
    import dataclasses

    shaped = describe_changes(base.to_dict(), dataclasses.replace(base, min_clip_s=base.min_clip_s + 1))
    assert f"min_clip_s {base.min_clip_s!r} -> {base.min_clip_s + 1!r}" in shaped and "curated again" in shaped
    speed = describe_changes(base.to_dict(), dataclasses.replace(base, decode_threads=3))
    assert "decode_threads 1 -> 3" in speed and "no video is decoded again" in speed
    filt = describe_changes(base.to_dict(), dataclasses.replace(base, filter_preset="strict"))
    assert "filter_preset 'default' -> 'strict'" in filt
    assert "new filter is applied" in filt


def test_a_curate_rerun_keeps_the_filter_rushes_filter_applied_last(tmp_path, ray_local, caplog):
    v = make_cut_video(tmp_path / "a.mp4", [2.5, 2.5], fps=25, size=(160, 120))
    out = tmp_path / "run"
    argv = ["curate", v.path, "--out", str(out), "--preset", "debug"]
    assert main(argv) == 0
    assert main(["filter", str(out), "--preset", "none", "--min-duration-s", "0"]) == 0
    kept = manifests.read(out, "clips").column("keep").to_pylist()
    with caplog.at_level(logging.WARNING, logger="rushes"):
        assert main(argv) == 0  # a no-op resume
    clips = manifests.read(out, "clips")
    assert clips.column("keep").to_pylist() == kept and set(clips.column("filter_preset").to_pylist()) == {"none"}
    said = [r.getMessage() for r in caplog.records if "rushes filter` applied last" in r.getMessage()]
    assert len(said) == 1 and "keeping the filter" in said[0] and "--filter-preset" in said[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rushes"):
        assert main([*argv, "--filter-preset", "strict", "--decode-threads", "2"]) == 0
    assert set(manifests.read(out, "clips").column("filter_preset").to_pylist()) == {"strict"}
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "--filter-preset strict replaces the filter `rushes filter` applied last" in messages
    assert "settings differ from the last run" in messages and "decode_threads" in messages
    assert json.loads((out / "filter.json").read_text())["chosen_by"] == "rushes curate"


def test_a_clips_part_written_before_camera_shake_reads_with_null_there(tmp_path):
    import pyarrow.parquet as pq

    table = manifests.conform([clip(0, camera_motion="shaky")], "clips").drop_columns(["camera_shake"])
    meta = {**table.schema.metadata, b"rushes.schema_version": b"3"}
    (tmp_path / "clips").mkdir()
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "clips" / "part-old.parquet")
    read = manifests.read(tmp_path, "clips")
    assert read.column("camera_shake").to_pylist() == [None]
    assert filter_run(tmp_path, preset="strict", dry_run=True)["reasons"].get("shake>0.4") == 1
