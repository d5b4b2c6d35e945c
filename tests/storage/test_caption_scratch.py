"""Caption's decode tasks read clips in a bucket from bounded scratch copies that are gone afterwards, also on failure."""

from __future__ import annotations

import pyarrow as pa

from rushes import storage
from rushes.settings import ScratchSettings
from rushes.caption.adapter import TASK_SCHEMA, decode_batch
from rushes.caption.frames import FrameSpec
from rushes.testing.grey_clips import make_grey_video


def _task(clip_id: str, path: str) -> dict:
    return {"clip_id": clip_id, "path": path, "offset_s": 0.0, "start_s": 1.0, "end_s": 3.0, "width_px": 96,
            "height_px": 64}


def test_bucket_clips_decode_from_scratch_copies_bounded_and_removed(bucket, tmp_path):
    video = make_grey_video(tmp_path / "grey.mp4")
    good, broken = f"{bucket}/run/media/clip one.mp4", f"{bucket}/run/media/broken clip.mp4"
    storage.copy_file(video, good)
    storage.write_bytes_atomic(broken, b"\x00\x00\x00\x18ftypmp42 not really a video" * 50)
    tasks = pa.Table.from_pylist([_task("good", good), _task("broken", broken), _task("gone", f"{bucket}/run/x.mp4")],
                                 schema=TASK_SCHEMA)
    scratch = storage.Scratch(tmp_path / "scratch", max_bytes=10 * 2**20)
    rows = {r["clip_id"]: r for r in decode_batch(tasks, FrameSpec(max_side=64), 4, None, scratch=scratch).to_pylist()}
    assert rows["good"]["error_message"] is None and rows["good"]["frames_shape"][0] == 4
    assert "cannot decode frames from s3://" in rows["broken"]["error_message"]
    assert "cannot decode frames from s3://" in rows["gone"]["error_message"]
    # A cap smaller than the clip: that clip's error row names the setting, nothing is copied.
    tiny = ScratchSettings(str(tmp_path / "scratch"), 1000 / 2**30).to_scratch()  # as the command line makes it
    capped = decode_batch(tasks.slice(0, 1), FrameSpec(max_side=64), 4, None, scratch=tiny).to_pylist()[0]
    assert "more than the scratch cap" in capped["error_message"] and "--scratch-max-gb" in capped["error_message"]
    assert not [p.name for p in (tmp_path / "scratch").iterdir() if p.name.startswith(("rushes-", ".rushes-"))]
