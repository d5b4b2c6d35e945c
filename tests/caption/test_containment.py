"""A clips manifest edited to point outside the run directory: the clip gets an error row naming it and the path,
and the outside file is never decoded (issue 12)."""

from __future__ import annotations

import os
import shutil

import pyarrow as pa
from rushes.testing.grey_clips import make_run

from rushes.caption.adapter import decode_batch, plan_run
from rushes.caption.frames import FrameSpec
from rushes.manifests import store


def test_clip_paths_outside_the_run_are_refused(tmp_path, grey_video):
    out = tmp_path / "run"
    ids = make_run(out, grey_video, [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)], encoded={0, 1, 2, 3, 4})
    outside = tmp_path / "outside.mp4"  # a real, decodable video nobody named
    shutil.copy(grey_video, outside)
    os.symlink(outside, out / "media" / "link.mp4")
    hostile = {ids[0]: str(outside), ids[1]: "../outside.mp4", ids[2]: "media/link.mp4",
               ids[3]: "../../../../etc/passwd"}
    clips = store.read(out, "clips").to_pylist()
    for row in clips:
        row["clip_path"] = hostile.get(row["clip_id"], row["clip_path"])
    for part in store.part_paths(out, "clips"):
        part.unlink()
    store.write_part(out, "clips", clips, part_name="part-0")

    plan = plan_run(out, "m@r", "dense-v1")
    frames = decode_batch(plan.tasks, FrameSpec(max_side=64), 4, None).to_pylist()
    by_id = {r["clip_id"]: r for r in frames}
    for clip_id, path in hostile.items():
        row = by_id[clip_id]
        assert row["frames"] is None, f"{path} was decoded"
        assert row["error_message"].startswith(f"clip {clip_id}: clip_path {path!r}"), row["error_message"]
    assert by_id[ids[4]]["error_message"] is None and by_id[ids[4]]["frames"]  # the honest clip decodes
    assert isinstance(plan.tasks, pa.Table) and plan.tasks.num_rows == 5
