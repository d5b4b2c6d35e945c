"""rushes.manifests.clips, the one owner of "a kept clip and where its pixels are": rows read back are checked
before any stage opens a file or sizes a frame list from them. A bad row is refused with a reason naming the clip
and the field; caption and encode record it as that clip's error row, training skips it; nothing else is lost."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from rushes.manifests import clips, store
from rushes.testing.synth import make_cut_video
from rushes.testing.train_manifests import Clip, write_manifest

VIDEO = {"video_id": "v", "path": "/data/v.mp4", "duration_s": 10.0, "width_px": 64, "height_px": 48}


def _row(**over) -> dict:
    return {"clip_id": "c1", "video_id": "v", "clip_path": None, "start_s": 2.0, "end_s": 4.0, "width_px": 64,
            "height_px": 48, **over}


@pytest.mark.parametrize("over, field", [
    ({"end_s": 1e12}, "end_s"), ({"end_s": math.inf}, "end_s"), ({"start_s": math.nan}, "start_s"),
    ({"start_s": -1.0}, "start_s"), ({"end_s": 1.0}, "end_s"), ({"end_s": None}, "end_s"),
    ({"clip_path": "/etc/passwd"}, "clip_path"), ({"clip_path": "../elsewhere.mp4"}, "clip_path"),
])
def test_a_bad_row_is_refused_naming_the_clip_and_the_field(tmp_path, over, field):
    clip = clips.locate(tmp_path, _row(**over), VIDEO)
    assert clip.refused and clip.refused.startswith("clip c1: ") and field in clip.refused, clip.refused


def test_a_span_without_its_video_is_refused_and_a_good_row_says_where_its_pixels_are(tmp_path):
    assert "not in the videos manifest" in clips.locate(tmp_path, _row(), None).refused
    span = clips.locate(tmp_path, _row(), VIDEO)
    assert (span.refused, span.path, span.start_s, span.end_s, span.encoded) == (None, "/data/v.mp4", 2.0, 4.0, False)
    (tmp_path / "media").mkdir()
    encoded = clips.locate(tmp_path, _row(clip_path="media/c1.mp4"), VIDEO)
    assert encoded.path == str(tmp_path / "media" / "c1.mp4") and (encoded.start_s, encoded.end_s) == (0.0, 2.0)
    assert encoded.source_time(0.5) == 2.5, "times in the clip file map back to the source video's"


@pytest.fixture
def hostile_run(tmp_path):
    """Three clips of one real video: one honest, one whose end is 10^12 s, one pointing outside OUT."""
    video = make_cut_video(tmp_path / "v.mp4", [2.0, 2.0], fps=8, size=(64, 48))
    outside = tmp_path / "outside.mp4"
    shutil.copy(video.path, outside)
    out = write_manifest(tmp_path / "out", [
        Clip(video.path, 0.0, 2.0, 64, 48, "an honest clip", clip_id="honest"),
        Clip(video.path, 2.0, 1e12, 64, 48, "a clip that never ends", clip_id="endless"),
        Clip(video.path, 0.0, 2.0, 64, 48, "a clip outside", clip_id="outside", clip_path=str(outside))])
    rows = store.read(out, "videos").to_pylist()
    for r in rows:
        r["duration_s"] = 4.0
    store.write_part(out, "videos", rows, part_name="part-0")
    return out


def test_caption_records_refused_clips_as_errors_and_captions_the_rest(hostile_run):
    from rushes.caption.adapter import decode_batch, plan_run
    from rushes.caption.frames import FrameSpec

    rows = {r["clip_id"]: r for r in decode_batch(plan_run(hostile_run, "m@r", "dense-v1").tasks,
                                                  FrameSpec(max_side=64), 4, None).to_pylist()}
    assert rows["honest"]["error_message"] is None and rows["honest"]["frames"]
    assert "end_s 1000000000000.0 is past the end" in rows["endless"]["error_message"]
    assert "clip outside: clip_path" in rows["outside"]["error_message"] and rows["outside"]["frames"] is None


def test_encode_records_refused_clips_as_errors_and_encodes_the_rest(hostile_run, tmp_path):
    from rushes.train.config import DataConfig
    from rushes.train.encode import decode_batch, plan_encode

    cfg = DataConfig(fps=4.0, max_frames=4, clip_tokens=64)
    plan = plan_encode(hostile_run, cfg, tmp_path / "enc")
    rows = {r["clip_id"]: r for r in decode_batch(plan.tasks, cfg, (1, 2, 2)).to_pylist()}
    assert rows["honest"]["error_message"] is None and rows["honest"]["frames"]
    assert "past the end" in rows["endless"]["error_message"] and rows["endless"]["frames"] is None
    assert "clip_path" in rows["outside"]["error_message"] and rows["outside"]["frames"] is None


def test_training_skips_refused_clips_and_names_them(hostile_run, tmp_path):
    from rushes.testing.tiny import save_tiny_text_encoder
    from rushes.train.config import DataConfig
    from rushes.train.data import prepare
    from rushes.train.encoders import TextEncoder

    t5 = save_tiny_text_encoder(tmp_path / "t5")
    cfg = DataConfig(fps=4.0, max_frames=4, clip_tokens=64, text_encoder=t5)
    prep = prepare(clips.captioned_clips(hostile_run), cfg, (1, 2, 2), tmp_path / "cache", lambda: TextEncoder(t5),
                   lambda: None)
    assert [e.clip_id for e in prep.examples] == ["honest"]
    why = {s["clip_id"]: s["error"] for s in prep.skipped}
    assert set(why) == {"endless", "outside"} and "past the end" in why["endless"] and "clip_path" in why["outside"]


def test_curate_filter_and_inspect_never_open_a_clip_path_outside_out(tmp_path, ray_local, capsys):
    """The stages that do not decode clips never open what a row names either: a rerun of curate, rushes filter
    and the report's thumbnails, over clips rows edited to point at a sentinel outside OUT."""
    from rushes.cli import main
    from rushes.testing.sentinel import Sentinel

    (tmp_path / "in").mkdir()
    make_cut_video(tmp_path / "in" / "v.mp4", [2.0, 2.0], fps=10, size=(96, 64))
    out = tmp_path / "out"
    argv = ["curate", str(tmp_path / "in"), "--out", str(out), "--preset", "debug"]
    assert main(argv) == 0
    real = make_cut_video(tmp_path / "real.mp4", [1.0])  # what the sentinel serves to whoever opens it
    sentinel = Sentinel(tmp_path / "outside.mp4", Path(real.path).read_bytes())
    try:
        rows = store.read(out, "clips").to_pylist()
        for r in rows:
            r["clip_path"] = str(sentinel.path)
        for part in store.part_paths(out, "clips"):
            part.unlink()
        store.write_part(out, "clips", rows, part_name="part-edited")
        assert main(argv) == 0  # a rerun: the video is done, its rows are read, never followed
        assert main(["filter", str(out), "--preset", "strict"]) == 0
        assert main(["inspect", str(out), "--html", str(tmp_path / "r.html")]) == 0
        assert "clip_path" in (tmp_path / "r.html").read_text()  # the thumbnails name the refusal
    finally:
        sentinel.close()
    assert not sentinel.opened, "a clip_path outside OUT was opened"


def test_damaged_window_caption_rows_are_refused_not_trained_or_crashing(tmp_path):
    """Window captions read back from disk are checked: a null, NaN, reversed or outside-the-clip window becomes a
    refused example naming the clip and the window; the good window and the other clips are kept."""
    write_manifest(tmp_path, [Clip("/v.mp4", 0.0, 6.0, 64, 48, "whole"), Clip("/v.mp4", 6.0, 8.0, 64, 48, "other")])
    now = store.now_utc()
    bad = [(1.0, None), (math.nan, 2.0), (4.0, 3.0), (5.0, 9.0)]
    store.write_part(tmp_path, "captions", [
        {"caption_id": f"w{i}", "clip_id": "clip0000", "caption": f"window {i}", "status": "ok", "created_at": now,
         "window_start_s": a, "window_end_s": b} for i, (a, b) in enumerate([(0.0, 3.0), *bad])], part_name="part-1")
    got = clips.captioned_clips(tmp_path, level="window")
    assert [c.clip_id for c in got if not c.refused] == ["clip0000@0.000-3.000", "clip0001"]
    refused = [c for c in got if c.refused]
    assert len(refused) == len(bad) and all("clip0000" in c.refused for c in refused)
    assert all(c.parent == "clip0000" for c in refused)


def test_window_examples_one_captioning_one_order_and_a_fallback(tmp_path):
    """Windows of one clip come from one captioning (the newest); examples sort by clip then window start (10 s
    after 5 s); a clip whose windows are all damaged trains by its clip caption."""
    from datetime import timedelta

    from rushes.train.selection import select_clips
    from rushes.train.config import DataConfig

    write_manifest(tmp_path, [Clip("/v.mp4", 0.0, 20.0, 64, 48, "a dog"), Clip("/v.mp4", 20.0, 22.0, 64, 48, "x")])
    t0 = store.now_utc()
    rows = [{"caption_id": f"old{a}", "clip_id": "clip0000", "caption": "OLD", "status": "ok", "created_at": t0,
             "captioner": "a", "config_hash": "h1", "window_start_s": a, "window_end_s": a + 10.0} for a in (0.0, 10.0)]
    rows += [{"caption_id": f"new{a}", "clip_id": "clip0000", "caption": f"new {a:g}", "status": "ok",
              "created_at": t0 + timedelta(seconds=1), "captioner": "b", "config_hash": "h2", "window_start_s": a,
              "window_end_s": a + 5.0} for a in (0.0, 5.0, 10.0, 15.0)]
    rows += [{"caption_id": "bad", "clip_id": "clip0001", "caption": "bad", "status": "ok", "created_at": t0,
              "window_start_s": 30.0, "window_end_s": 31.0}]
    store.write_part(tmp_path, "captions", rows, part_name="part-1")
    got = clips.captioned_clips(tmp_path, level="window")
    assert [c.caption for c in got if c.parent == "clip0000"] == ["new 0", "new 5", "new 10", "new 15"]
    assert "clip0001" in [c.clip_id for c in got] and any(c.refused for c in got if c.parent == "clip0001")
    sel = select_clips([tmp_path], DataConfig(caption_level="window", limit=2))
    assert [c.clip_id for c in sel.clips] == ["clip0000@0.000-5.000", "clip0000@5.000-10.000"]
    assert [c.clip_id for c in clips.captioned_clips(tmp_path, level="window", limit=2)] == \
        [c.clip_id for c in sel.clips]  # encode plans the same examples
    dog = select_clips([tmp_path], DataConfig(caption_level="window", where="caption LIKE '%dog%'"))
    assert len(dog.clips) == 4 and all(c.parent == "clip0000" for c in dog.clips)
