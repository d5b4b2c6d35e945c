"""Still images (clips of kind 'image') are captioned as single images, beside video clips in one batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import spy
from PIL import Image

from rushes.caption.adapter import FRAMES_SCHEMA, CaptionActor, decode_batch
from rushes.caption.captioner import resolve_model
from rushes.caption.config import preset
from rushes.caption.frames import FrameSpec


def test_a_still_reaches_the_model_as_one_image_and_a_clip_as_a_video(tmp_path, grey_video, tiny_vlms):
    still = tmp_path / "grey50.png"
    Image.fromarray(np.full((64, 96, 3), 50, np.uint8)).save(still)
    tasks = pa.Table.from_pylist([
        {"clip_id": "still", "path": str(still), "offset_s": 0.0, "start_s": 0.0, "end_s": 0.0, "width_px": 96,
         "height_px": 64, "kind": "image"},
        {"clip_id": "clip", "path": str(grey_video), "offset_s": 0.0, "start_s": 0.0, "end_s": 2.0, "width_px": 96,
         "height_px": 64, "kind": "video"}])
    frames = decode_batch(tasks, FrameSpec(max_side=64), 4, None)
    assert frames.column("frames_shape").to_pylist() == [[1, 42, 64, 3], [4, 42, 64, 3]]
    assert frames.column("still").to_pylist() == [True, False]
    log = tmp_path / "spy.jsonl"
    cfg = preset("debug", model=str(tiny_vlms["qwen2_5_vl"]), retry_flagged=False)  # one call per clip
    actor = CaptionActor(cfg, resolve_model(cfg), "dense-v1", "cfg", {"rushes": "x"},
                         captioner_cls=spy.make_spy(log))
    rows = {r["clip_id"]: r for r in actor(frames.cast(FRAMES_SCHEMA)).to_pylist()}
    assert rows["still"]["status"] == "ok" and rows["still"]["caption"].startswith("[50]")
    assert (rows["still"]["frames_used"], rows["still"]["frame_times_s"]) == (1, [0.0])
    assert rows["clip"]["status"] == "ok" and rows["clip"]["frames_used"] == 4
    import json

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    (image_call,) = [c for c in calls if c["levels"] == [[50]]]
    assert "<|image_pad|>" in image_call["texts"][0] and "<|video_pad|>" not in image_call["texts"][0]
    assert "image_grid_thw" in image_call["tensor_shapes"]  # a single image, not a one-frame video
    (video_call,) = [c for c in calls if c["levels"] != [[50]]]
    assert "<|video_pad|>" in video_call["texts"][0]


def test_an_unreadable_still_is_its_row_with_the_reason(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    tasks = pa.Table.from_pylist([{"clip_id": "s", "path": str(bad), "offset_s": 0.0, "start_s": 0.0, "end_s": 0.0,
                                   "width_px": 96, "height_px": 64, "kind": "image"}])
    (row,) = decode_batch(tasks, FrameSpec(max_side=64), 4, None).to_pylist()
    assert row["error_message"].startswith("clip s: cannot decode frames from") and str(bad) in row["error_message"]
