"""Contact-sheet thumbnails: batching per source, reuse, and failures recorded instead of raised."""

from __future__ import annotations

import cv2

from rushes.inspect.thumbs import ThumbConfig, extract_thumbnails, plan_batches, thumb_tasks


def _rows(video_id="v1", spans=((0.0, 2.0), (2.0, 4.0), (4.0, 6.0))):
    return [{"clip_id": f"s{i}", "video_id": video_id, "start_s": a, "end_s": b, "duration_s": b - a,
             "width_px": 160, "height_px": 120} for i, (a, b) in enumerate(spans)]


def test_adjacent_spans_share_one_decode_pass_and_far_ones_do_not(tmp_path):
    src = tmp_path / "v.mp4"
    src.write_bytes(b"x")
    cfg = ThumbConfig(max_gap_s=5.0)
    tasks, missing = thumb_tasks(tmp_path, _rows(spans=((0, 2), (2, 4), (100, 102))), {"v1": {"path": str(src)}}, cfg)
    assert not missing
    batches = plan_batches(tasks, cfg)
    assert sorted([t.clip_id for t in b] for b in batches) == [["s0", "s1"], ["s2"]]
    assert tasks[0].times_s == (0.25, 0.75, 1.25, 1.75) and tasks[0].size == (96, 72)
    small = plan_batches(tasks, ThumbConfig(max_gap_s=5.0, max_batch_clips=1))
    assert len(small) == 3


def _videos(run_dir):
    from rushes.manifests import store

    return {v["video_id"]: v for v in store.read(run_dir, "videos").to_pylist()}


def test_one_pass_gives_the_same_strips_as_one_decode_per_clip(run_dir, tmp_path):
    rows = _rows()  # the three 2 s shots of the fixture's a.mp4: testsrc2, mandelbrot, smptebars
    tasks, _ = thumb_tasks(run_dir, rows, _videos(run_dir), ThumbConfig())
    together = extract_thumbnails(tasks, tmp_path / "one", ThumbConfig(workers=1))
    # One decode per clip, spread over two worker processes.
    alone = extract_thumbnails(tasks, tmp_path / "each", ThumbConfig(workers=2, max_batch_clips=1,
                                                                           min_clips_for_pool=0))
    strips = {}
    for clip in ("s0", "s1", "s2"):
        a = cv2.imread(str(tmp_path / "one" / together[clip].file))
        b = cv2.imread(str(tmp_path / "each" / alone[clip].file))
        assert a.shape == (72, 4 * 96 + 6, 3)
        assert abs(a.astype(int) - b).max() <= 2  # same frames (JPEG is deterministic)
        assert together[clip].times_s[0] <= tasks[int(clip[1])].times_s[0]  # frame shown at or before the time
        strips[clip] = a.astype(int)
    # Each strip comes from its own shot: different shots differ a lot, the static bars do not move.
    assert abs(strips["s0"] - strips["s2"]).mean() > 20
    bars = strips["s2"]
    assert abs(bars[:, :96] - bars[:, -96:]).mean() < 3


def test_existing_strips_are_reused(run_dir, tmp_path):
    tasks, _ = thumb_tasks(run_dir, _rows()[:1], _videos(run_dir), ThumbConfig())
    first = extract_thumbnails(tasks, tmp_path, ThumbConfig(workers=1))
    path = tmp_path / first["s0"].file
    stamp = path.stat().st_mtime_ns
    again = extract_thumbnails(tasks, tmp_path, ThumbConfig(workers=1))
    assert again["s0"].file == first["s0"].file and path.stat().st_mtime_ns == stamp


def test_unreadable_sources_become_errors_not_exceptions(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    rows = _rows("bad", spans=((0, 2), (2, 4))) + _rows("gone", spans=((0, 2),))
    rows[-1]["clip_id"] = "g0"
    tasks, missing = thumb_tasks(tmp_path, rows, {"bad": {"path": str(garbage)}, "gone": {"path": str(tmp_path / "gone.mp4")}},
                                 ThumbConfig())
    assert "is missing" in missing["g0"].error
    results = extract_thumbnails(tasks, tmp_path / "t", ThumbConfig(workers=2))
    assert set(results) == {"s0", "s1"}
    assert all(r.file is None and "garbage.mp4" in r.error for r in results.values())


def test_clip_paths_outside_the_run_are_refused_and_ids_cannot_name_files_outside(run_dir, tmp_path):
    import os
    import shutil

    run = tmp_path / "run"
    (run / "media").mkdir(parents=True)
    outside = tmp_path / "outside.mp4"  # a real video nobody named
    shutil.copy(run_dir / "media" / "c4.mp4", outside)
    os.symlink(outside, run / "media" / "link.mp4")
    shutil.copy(run_dir / "media" / "c4.mp4", run / "media" / "ok.mp4")
    hostile = {"abs": str(outside), "up": "../outside.mp4", "link": "media/link.mp4", "etc": "../../../../etc/passwd"}
    rows = [{"clip_id": k, "video_id": "v", "clip_path": p, "start_s": 0.0, "end_s": 2.0, "duration_s": 2.0,
             "width_px": 160, "height_px": 120} for k, p in hostile.items()]
    rows.append({"clip_id": "../../escape", "video_id": "v", "clip_path": "media/ok.mp4", "start_s": 0.0,
                 "end_s": 2.0, "duration_s": 2.0, "width_px": 160, "height_px": 120})
    tasks, missing = thumb_tasks(run, rows, {"v": {"path": str(outside)}}, ThumbConfig())
    assert set(missing) == set(hostile) and [t.clip_id for t in tasks] == ["../../escape"]
    for clip_id, path in hostile.items():
        assert missing[clip_id].error.startswith(f"clip {clip_id}: clip_path {path!r}"), missing[clip_id].error
    results = extract_thumbnails(tasks, tmp_path / "report_files" / "thumbs", ThumbConfig(workers=1))
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg"))
    assert written == [f"report_files/thumbs/{results['../../escape'].file}"], "strips stay in the thumbnail folder"
