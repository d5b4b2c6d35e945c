"""`rushes encode`'s decode tasks read clips in a bucket from bounded copies in --scratch, gone afterwards."""

from __future__ import annotations

import pyarrow as pa
import pytest

from rushes import storage
from rushes.settings import ScratchSettings
from rushes.testing.grey_clips import make_grey_video


def _task(clip_id: str, path: str) -> dict:
    return {"clip_id": clip_id, "caption": "a grey clip", "caption_hash": "h", "path": path, "start_s": 1.0,
            "end_s": 3.0, "width_px": 96, "height_px": 64}


def test_encode_decodes_bucket_clips_from_bounded_scratch_copies(bucket, tmp_path):
    pytest.importorskip("torch")
    from rushes.train.config import preset
    from rushes.train.encode import TASK_SCHEMA, decode_batch

    data = preset("tiny").with_overrides(data={"max_frames": 4, "clip_tokens": 192}).data
    clip = f"{bucket}/run/media/clip one.mp4"
    storage.copy_file(make_grey_video(tmp_path / "grey.mp4"), clip)
    tasks = pa.Table.from_pylist([_task("good", clip), _task("gone", f"{bucket}/run/media/x.mp4")],
                                 schema=TASK_SCHEMA)
    scratch = storage.Scratch(tmp_path / "scratch", max_bytes=10 * 2**20)
    rows = {r["clip_id"]: r for r in decode_batch(tasks, data, (1, 4, 4), scratch=scratch).to_pylist()}
    assert rows["good"]["error_message"] is None and rows["good"]["frames_shape"][0] == 4
    assert rows["gone"]["error_stage"] == "decode" and "x.mp4" in rows["gone"]["error_message"]
    # A cap smaller than the clip: an error row naming the setting to raise; the rest of the batch goes on.
    tiny = ScratchSettings(str(tmp_path / "scratch"), 1000 / 2**30).to_scratch()  # as the command line makes it
    capped = decode_batch(tasks.slice(0, 1), data, (1, 4, 4), scratch=tiny).to_pylist()[0]
    assert capped["error_stage"] == "decode" and "--scratch-max-gb" in capped["error_message"]
    assert not [p.name for p in (tmp_path / "scratch").iterdir() if p.name.startswith(("rushes-", ".rushes-"))]
