"""rushes filter: every failed rule named, too-short clips stay rejected, atomic idempotent rewrites."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from rushes import manifests
from rushes.curate.filter import PRESETS, FilterConfig, apply_filter, default, filter_run, resolve_config

PARAMS = json.dumps({"detector": "AdaptiveDetector", "min_clip_s": 2.0})

GOOD = dict(duration_s=5.0, width_px=640, height_px=360, aspect_ratio=640 / 360, motion_mean=0.05,
            motion_p90=0.1, frame_diff_mean=0.1, camera_motion="pan_left", sharpness=300.0, brightness_mean=0.4,
            contrast_std=0.2, black_frame_frac=0.0, flat_frame_frac=0.0, colourfulness=30.0, text_area_frac=0.0)


def clip(i: int, **changes) -> dict:
    row = {"clip_id": f"c{i:06d}", "video_id": "v1", "start_s": float(i), "end_s": float(i) + 5,
           "detector_params": PARAMS, "keep": True, "reject_reason": None, **GOOD}
    row.update(changes)
    return row


def table(rows: list[dict]) -> pa.Table:
    return manifests.conform(rows, "clips")


def decide(rows, cfg=None, preset="default"):
    out = apply_filter(table(rows), cfg or PRESETS[preset](), preset=preset)
    return out.column("keep").to_pylist(), out.column("reject_reason").to_pylist()


def test_good_clip_kept_and_every_failed_rule_named():
    keep, reasons = decide([
        clip(0),
        clip(1, motion_mean=0.0001, brightness_mean=0.01, black_frame_frac=1.0),
        clip(2, sharpness=1.0, text_area_frac=0.3, width_px=160, height_px=90, aspect_ratio=16 / 9),
    ])
    assert keep == [True, False, False]
    assert reasons[0] is None
    assert reasons[1].split(";")[:2] == ["motion<0.001", "dark"]
    assert set(reasons[2].split(";")) == {"small", "blurry", "text>0.015"}


@pytest.mark.parametrize("preset", ["default", "none"])
def test_a_span_that_is_not_a_time_is_rejected_in_every_preset(preset):
    nan, inf = float("nan"), float("inf")
    keep, reasons = decide([clip(0), clip(1, start_s=nan), clip(2, end_s=inf, duration_s=inf), clip(3, start_s=-2.0),
                            clip(4, end_s=3.0), clip(5, end_s=None)], preset=preset)
    assert keep == [True, False, False, False, False, False]
    assert all(r.split(";")[0] == "bad_span" for r in reasons[1:]), reasons


def test_too_short_uses_each_clips_min_clip_s_and_is_never_resurrected():
    short_params = json.dumps({"min_clip_s": 0.5})
    rows = [clip(0, duration_s=1.0, keep=False, reject_reason="too_short"),  # split said too short
            clip(1, duration_s=1.0, detector_params=short_params),  # its own run allowed 0.5 s clips
            clip(2, duration_s=1.0, detector_params=None, keep=False, reject_reason="too_short")]
    for preset in PRESETS:  # even "none" keeps the split's rule
        keep, reasons = decide(rows, preset=preset)
        assert keep[0] is False and reasons[0].startswith("too_short"), preset
        assert reasons[1] is None or "too_short" not in reasons[1], preset
        assert keep[2] is False and "too_short" in reasons[2], preset
    keep, reasons = decide(rows, cfg=resolve_config("none", {"min_duration_s": 0.0}))
    assert keep == [True, True, True], "an explicit min_duration_s decides alone"


def test_missing_scores_rejected_explicitly_or_not_judged():
    rows = [clip(0, motion_mean=None, camera_motion=None), clip(1, text_area_frac=None, sharpness=1.0)]
    keep, reasons = decide(rows)
    assert keep == [False, False]
    assert reasons[0] == "missing_scores"
    assert reasons[1] == "blurry;missing_scores"
    keep, reasons = decide(rows, cfg=resolve_config("default", {"reject_missing": False}))
    assert keep == [True, False] and reasons[1] == "blurry"
    assert apply_filter(manifests.schema_for("clips").empty_table(), default()).num_rows == 0


def test_foreign_reasons_survive_and_stale_filter_reasons_are_recomputed():
    rows = [clip(0, keep=False, reject_reason="encode_failed;motion<0.5"), clip(1, keep=False, reject_reason="dark")]
    keep, reasons = decide(rows)
    assert reasons == ["encode_failed", None] and keep == [False, True]


def test_presets_order_from_permissive_to_strict():
    rows = [clip(i, motion_mean=m, sharpness=s) for i, (m, s) in
            enumerate([(0.0001, 300.0), (0.0005, 300.0), (0.005, 300.0), (0.05, 20.0), (0.05, 300.0)])]
    kept = {p: sum(decide(rows, preset=p)[0]) for p in PRESETS}
    assert kept["none"] >= kept["permissive"] >= kept["default"] >= kept["strict"]
    assert kept["none"] == 5 and kept["strict"] == 1


def test_camera_rule_and_config_errors_name_the_fix():
    _, reasons = decide([clip(0, camera_motion="shaky"), clip(1)],
                           cfg=FilterConfig(reject_camera_motion="shaky,complex"))
    assert reasons == ["camera=shaky", None]
    with pytest.raises(ValueError, match="unknown label"):
        FilterConfig(reject_camera_motion=("wobbly",))
    with pytest.raises(ValueError, match="min_motion"):
        FilterConfig(min_motion=-1)
    with pytest.raises(ValueError, match="valid:"):
        resolve_config("default", {"min_motoin": 0.1})
    with pytest.raises(ValueError, match="choose one of"):
        resolve_config("loose")


def _write_run(tmp_path, n_parts=2, per_part=50):
    for p in range(n_parts):
        rows = [clip(p * per_part + i, motion_mean=0.0005 * (i % 10), black_frame_frac=float(i % 3 == 0))
                for i in range(per_part)]
        manifests.write_part(tmp_path, "clips", rows, part_name=f"part-{p}")
    return tmp_path


def test_filter_run_rewrites_atomically_records_thresholds_and_is_idempotent(tmp_path):
    out = _write_run(tmp_path)
    first = filter_run(out, preset="strict", overrides={"min_motion": 0.003})
    table1 = manifests.read(out, "clips")
    assert first["clips"] == 100 and first["kept"] + first["rejected"] == 100
    assert first["kept"] == sum(table1.column("keep").to_pylist())
    assert first["reasons"]["motion<0.003"] == sum("motion<0.003" in (r or "") for r in
                                                  table1.column("reject_reason").to_pylist())
    assert set(table1.column("filter_preset").to_pylist()) == {"strict"}
    assert json.loads(table1.column("filter_params")[0].as_py())["min_motion"] == 0.003
    record = json.loads((out / "filter.json").read_text())
    assert record["params"]["min_motion"] == 0.003 and record["reasons"] == first["reasons"]
    assert manifests.read_summary(out)["filter"]["kept"] == first["kept"]
    assert not [p for p in (out / "clips").iterdir() if p.name.startswith("_")], "no temporary files left"

    again = filter_run(out, preset="strict", overrides={"min_motion": 0.003})
    assert again["parts_rewritten"] == 0 and manifests.read(out, "clips").equals(table1)
    assert {k: v for k, v in again.items() if k != "filter_s"} == {**{k: v for k, v in first.items()
                                                                       if k != "filter_s"}, "parts_rewritten": 0}
    loose = filter_run(out, preset="none")
    assert loose["kept"] == 100 and loose["parts_rewritten"] == 2


def test_dry_run_writes_nothing_and_missing_manifest_says_what_to_run(tmp_path):
    out = _write_run(tmp_path, n_parts=1)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "clips").iterdir()}
    result = filter_run(out, preset="none", dry_run=True)
    assert result["kept"] == 50
    assert {p.name: p.stat().st_mtime_ns for p in (out / "clips").iterdir()} == before
    assert not (out / "filter.json").exists()
    with pytest.raises(manifests.ManifestError, match="rushes curate"):
        filter_run(tmp_path / "nothing")


def test_cli_prints_counts_per_reason_and_other_readers_open_the_result(tmp_path, capsys):
    from rushes.cli import main

    out = _write_run(tmp_path)
    assert main(["filter", str(out), "--preset", "default", "--min-motion", "0.002", "--max-text-area", "none"]) == 0
    printed = capsys.readouterr().out
    assert "kept" in printed and "motion<0.002" in printed and "dark" in printed
    assert json.loads((out / "filter.json").read_text())["params"]["max_text_area"] is None
    assert main(["filter", str(out), "--min-aspect", "3", "--max-aspect", "1"]) == 2
    assert "swap them" in capsys.readouterr().err

    import duckdb
    import polars as pl

    glob = str(out / "clips" / "*.parquet")
    kept = duckdb.sql(f"select count(*) from read_parquet('{glob}') where keep").fetchall()[0][0]
    assert kept == pl.read_parquet(glob).filter(pl.col("keep")).height


def test_run_whose_every_video_failed_filters_to_zero_not_an_error(tmp_path):
    manifests.write_part(tmp_path, "videos", [{"video_id": "v", "path": "/x.mp4", "status": "error",
                                               "error_stage": "input", "error_message": "/x.mp4 does not exist"}])
    result = filter_run(tmp_path)
    assert (result["clips"], result["kept"], result["rejected"]) == (0, 0, 0)
    assert manifests.read_summary(tmp_path)["filter"]["clips"] == 0
