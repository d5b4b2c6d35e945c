"""--window-s: a long clip gets one caption per window (span recorded) beside its clip-level caption."""

from __future__ import annotations

import json

import pytest
import spy
from rushes.testing.grey_clips import level_at, make_run

from rushes.caption import cli
from rushes.caption.adapter import CaptionActor, caption_id, decode_batch, plan_run
from rushes.caption.captioner import resolve_model
from rushes.caption.config import preset
from rushes.caption.frames import FrameSpec, frame_times, window_spans
from rushes.manifests import store
from rushes.manifests.select import ok_captions


def test_window_spans_cover_the_clip_without_a_sliver():
    assert window_spans(0, 10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert window_spans(0, 9, 4) == [(0, 4), (4, 9)], "a last piece under half a window joins the one before"
    assert window_spans(2, 5, 4) == [] and window_spans(0, 4.5, 4) == [], "one window would be the clip itself"


def test_long_clips_get_window_captions_with_their_spans(tmp_path, grey_video, tiny_vlms):
    out = tmp_path / "run"
    ids = make_run(out, grey_video, [(0, 12), (2, 5)], encoded={0})
    cfg = preset("debug", model=str(tiny_vlms["qwen2_5_vl"]), window_s=4.0, batch_size=3, retry_flagged=False)
    resolved = resolve_model(cfg)
    plan = plan_run(out, resolved.captioner, "dense-v1", window_s=cfg.window_s)
    assert plan.tasks.num_rows == 5 and plan.windows == 3

    frames = decode_batch(plan.tasks, FrameSpec(max_side=64), cfg.num_frames, None)
    table = CaptionActor(cfg, resolved, "dense-v1", "cfg", {}, captioner_cls=spy.make_spy())(frames)
    store.write_part(out, "captions", table)

    rows = store.read(out, "captions").to_pylist()
    assert all(r["status"] == "ok" for r in rows)
    windows = sorted((r for r in rows if r["window_start_s"] is not None), key=lambda r: r["window_start_s"])
    assert [(r["window_start_s"], r["window_end_s"]) for r in windows] == [(0, 4), (4, 8), (8, 12)]
    for row in windows:
        assert row["clip_id"] == ids[0]
        a, b = row["window_start_s"], row["window_end_s"]
        assert row["frame_times_s"] == pytest.approx(frame_times(a, b, 4)), "frames from the window only"
        assert row["caption"].startswith(str([level_at(t) for t in row["frame_times_s"]]))
        assert row["caption_id"] == caption_id(ids[0], row["captioner"], "dense-v1", (a, b))
    clip_level = {r["clip_id"]: r for r in rows if r["window_start_s"] is None}
    assert set(clip_level) == set(ids) and clip_level[ids[0]]["window_end_s"] is None
    assert clip_level[ids[0]]["frame_times_s"] == pytest.approx(frame_times(0, 12, 4))
    assert len({r["caption_id"] for r in rows}) == 5
    # Training reads the clip-level captions; the windows are selected on their own.
    assert ok_captions(out).num_rows == 2 and ok_captions(out, windows=True).num_rows == 3
    again = plan_run(out, resolved.captioner, "dense-v1", window_s=cfg.window_s)
    assert again.tasks.num_rows == 0 and again.skipped_done == 2, "a rerun finds every window done"
    wider = plan_run(out, resolved.captioner, "dense-v1", window_s=5.0)
    assert wider.windows == 2 and wider.skipped_done == 1, "other windows are new captions; the clip-level stays"


def test_prompt_file_text_and_its_version_reach_the_plan(tmp_path, grey_video, tiny_vlms, capsys):
    import argparse

    out = tmp_path / "run"
    make_run(out, grey_video, [(0, 2)])
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Say what moves in this clip, and how.\n")
    parser = argparse.ArgumentParser(prog="rushes")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["caption", str(out), "--model", str(tiny_vlms["smolvlm"]), "--prompt-file",
                              str(prompt), "--dry-run", "--temperature", "0.5", "--top-p", "0.9"])
    cfg = cli.config_from_args(args)
    assert cfg.prompt_text == "Say what moves in this clip, and how." and (cfg.temperature, cfg.top_p) == (0.5, 0.9)
    assert args.func(args) == 0
    version = json.loads(capsys.readouterr().out)["prompt_version"]
    assert version.startswith("dense-v1+file-") and len(version) == len("dense-v1+file-") + 12
    prompt.write_text("")
    assert args.func(args) == 2 and "--prompt-file" in capsys.readouterr().err
