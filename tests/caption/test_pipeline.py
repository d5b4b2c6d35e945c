"""The whole caption path: clips manifest in, Ray Data, tiny real VLMs via from_pretrained, captions out."""

from __future__ import annotations

import dataclasses
import json
import random

import pyarrow.compute as pc
import pytest
import spy
from rushes.testing.grey_clips import cut_clip_file, level_at, make_run

from rushes.caption.adapter import caption_id
from rushes.caption.config import preset
from rushes.caption.frames import frame_times
from rushes.caption.pipeline import run
from rushes.manifests import select, store

QWEN_MARKERS = ("<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>", "<|im_start|>assistant\n")
SMOL_MARKERS = ("<|im_start|>User: <video>", "<end_of_utterance>\nAssistant:")


@pytest.fixture(scope="module")
def ray_spy(ray_local):
    # Ray workers cannot import tests/: ship the spy module by value.
    ray_local.cloudpickle.register_pickle_by_value(spy)
    return ray_local


def _calls(log_path) -> list[dict]:
    return [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []


def _rows(out, **where) -> dict[str, dict]:
    rows = store.read(out, "captions").to_pylist()
    return {r["clip_id"]: r for r in rows if all(r[k] == v for k, v in where.items())}


def _assert_own_frames(ok_rows: dict, span_of: dict, model: str) -> None:
    """Each OK row's frames are its own clip's, at the right times, in order."""
    for clip_id, row in ok_rows.items():
        start, end = span_of[clip_id]
        assert row["frame_times_s"] == pytest.approx(frame_times(start, end, 4))
        expected = [level_at(t) for t in row["frame_times_s"]]
        # The spy prefixes each caption with the grey levels the processor received for that clip.
        assert row["caption"].startswith(str(expected)), f"{clip_id} got another clip's frames"
        assert row["frames_used"] == 4 and row["input_tokens"] > 0 and 0 < row["output_tokens"] <= 16
        assert row["captioner"].startswith(model + "@")
        assert row["caption_id"] == caption_id(clip_id, row["captioner"], "dense-v1")


def _assert_qwen_inputs(calls: list[dict]) -> None:
    """4 frames per clip at the decode size, rendered with Qwen's chat template and the versioned prompt."""
    calls = [c for c in calls if "texts" in c]
    assert calls, "the processor was never called"
    for call in calls:
        assert all(shape == [4, 42, 64, 3] for shape in call["shapes"]), "4 frames at the decode size"
        for text in call["texts"]:
            assert all(m in text for m in QWEN_MARKERS) and "Describe this video clip in detail" in text
        assert call["tensor_shapes"]["video_grid_thw"] == [len(call["texts"]), 3]


def test_qwen_pipeline_aligns_rows_records_failures_and_resumes(tmp_path, grey_video, tiny_vlms, ray_spy):
    out = tmp_path / "run"
    spans = [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12), (1, 3)]
    random.Random(7).shuffle(spans)  # manifest order unrelated to time order
    pos = {span: i for i, span in enumerate(spans)}
    encoded = {pos[s] for s in [(0, 2), (6, 8), (8, 10)]}  # the others are read from the source span
    ids = make_run(out, grey_video, spans, encoded=encoded, rejected={pos[(1, 3)]})
    span_of = dict(zip(ids, spans))
    rejected_id, broken_id, failing_id = ids[pos[(1, 3)]], ids[pos[(6, 8)]], ids[pos[(4, 6)]]
    (out / f"media/{broken_id}.mp4").write_bytes(b"not a video")  # a broken clip file
    cfg = preset("debug", model=str(tiny_vlms["qwen2_5_vl"]), batch_size=3)
    log = tmp_path / "spy.jsonl"

    summary = run(out, cfg, captioner_cls=spy.make_spy(log, fail_level=90))  # level 90 = span (4, 6)

    rows = _rows(out)
    assert set(rows) == set(ids) - {rejected_id}, "one row per kept clip, none for the rejected one"
    assert rows[broken_id]["status"] == "error" and rows[broken_id]["error_stage"] == "frames"
    assert broken_id in rows[broken_id]["error_message"]
    assert rows[failing_id]["error_stage"] == "generate" and failing_id in rows[failing_id]["error_message"]
    ok = {c: r for c, r in rows.items() if r["status"] == "ok"}
    assert len(ok) == 4
    _assert_own_frames(ok, span_of, str(tiny_vlms["qwen2_5_vl"]))
    _assert_qwen_inputs(_calls(log))
    assert summary["ok"] == 4 and summary["error_by_stage"] == {"frames": 1, "generate": 1}
    assert store.read_summary(out)["caption"]["ok"] == 4
    assert json.loads((out / "config/caption.json").read_text())["prompt_version"] == "dense-v1"

    # Rerun after fixing the clip file and the model: only the two failed clips run, their error rows replaced.

    cut_clip_file(grey_video, out / f"media/{broken_id}.mp4", *span_of[broken_id])
    again = run(out, cfg, captioner_cls=spy.make_spy(log))
    assert again["skipped_done"] == 4 and again["captioned"] == 2 and again["retrying_errors"] == 2
    rows2 = _rows(out)
    assert len(store.read(out, "captions")) == 6 and all(r["status"] == "ok" for r in rows2.values())
    assert all(rows2[c]["created_at"] == r["created_at"] for c, r in ok.items()), "done rows untouched"
    start, end = span_of[broken_id]
    assert rows2[broken_id]["caption"].startswith(str([level_at(t) for t in frame_times(start, end, 4)]))

    # Nothing left: no new parts.
    parts = store.part_paths(out, "captions")
    assert run(out, cfg)["to_caption"] == 0 and store.part_paths(out, "captions") == parts

    # A new prompt version captions again as new rows; the dense rows stay.
    structured = run(out, dataclasses.replace(cfg, prompt="structured", retry_flagged=False))
    assert structured["captioned"] == 6
    table = store.read(out, "captions")
    assert table.num_rows == 12
    new = _rows(out, prompt_version="structured-v2")
    # A random-weight model does not write JSON: recorded as parse errors with the raw text kept.
    assert all(r["error_stage"] == "parse" and r["caption_json"] for r in new.values() if r["status"] == "error")
    assert select.ok_captions(out, prompt_version="dense-v1").num_rows == 6
    assert pc.count_distinct(table.column("caption_id")).as_py() == 12
    # The manifest opens as it is in the tools users look with.
    import duckdb
    import polars as pl

    glob = f"{out}/captions/*.parquet"
    assert duckdb.sql(f"select count(*) from '{glob}' where status = 'ok'").fetchall()[0][0] == 6 + structured["ok"]
    assert pl.read_parquet(glob).height == 12


def test_smolvlm_pipeline_fps_sampling_mixed_frame_counts(tmp_path, grey_video, tiny_vlms, ray_spy):
    out = tmp_path / "run"
    spans = [(0, 3), (3, 5), (5, 8), (8, 10), (10, 12)]
    ids = make_run(out, grey_video, spans, encoded={1, 2})
    cfg = preset("debug", model=str(tiny_vlms["smolvlm"]), fps=1.0, batch_size=4, frame_max_side=None,
                 retry_flagged=False)
    log = tmp_path / "spy.jsonl"

    summary = run(out, cfg, captioner_cls=spy.make_spy(log, empty_level=210))

    rows = _rows(out)
    assert summary["captioned"] == 5
    for clip_id, (start, end) in zip(ids, spans):
        row = rows[clip_id]
        assert row["frame_times_s"] == pytest.approx(frame_times(start, end, 4, fps=1.0))
        assert row["frames_used"] == int(end - start)
        if start == 10:  # the spy emptied the output of the clip showing level 210
            assert row["status"] == "error" and row["error_stage"] == "generate"
            assert "empty caption" in row["error_message"] and clip_id in row["error_message"]
            continue
        assert row["status"] == "ok"
        assert row["caption"].startswith(str([level_at(t) for t in row["frame_times_s"]]))
    for call in [c for c in _calls(log) if "texts" in c]:
        counts = {shape[0] for shape in call["shapes"]}
        assert len(counts) == 1, "SmolVLM batches hold clips of one frame count"
        n = counts.pop()
        # The processor's own size: frames decoded at the model's 32 px and squared by its video processor.
        assert call["tensor_shapes"]["pixel_values"][1:] == [n, 3, 32, 32]
        for text, expanded in zip(call["texts"], call["expanded"]):
            assert all(m in text for m in SMOL_MARKERS) and "Describe this video clip in detail" in text
            # The processor expanded <video> into n timestamped frames (not a padded count).
            assert expanded.count("Frame from") == n and expanded.count("<global-img>") == n
    assert all(fps == 1.0 for c in _calls(log) for fps in c.get("metadata_fps", []))
