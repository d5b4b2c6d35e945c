"""One time base across every stage: a source whose video does not start at timestamp 0 (an MPEG-TS whose clock
starts at 10 s, an MP4 whose edit list delays its video) gives caption frames, encoded frames and report
thumbnails from the span curate measured, with ``--no-encode`` (the clips are spans of the source).

Each source is a red shot then a blue shot, cut at 3 s: the second clip must be blue in every stage. With two
time bases (curate counting from the stream start, the other stages from absolute PTS) it comes out red.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from rushes.media.ffmpeg import run_ffmpeg, run_ffprobe_json

SHOT_S = 3.0
RED, BLUE = (220, 20, 20), (20, 20, 220)


def _two_shots(path, out_args: list[str]) -> str:
    shots = [f"color=c=0x{r:02x}{g:02x}{b:02x}:s=160x120:r=10:d={SHOT_S}" for r, g, b in (RED, BLUE)]
    args = [a for s in shots for a in ("-f", "lavfi", "-i", s)]
    run_ffmpeg([*args, "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0,format=yuv420p[v]", "-map", "[v]",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", *out_args, "-y", str(path)],
               timeout_s=120, whitelist=None)
    return str(path)


SOURCES = {
    "mpegts_starting_at_10s": (".ts", ["-output_ts_offset", "10", "-f", "mpegts"], 10.0),
    "mp4_with_an_edit_list_delaying_the_video": (".mp4", ["-output_ts_offset", "5"], 5.0),
}


def _start_time(path: str) -> float:
    info = run_ffprobe_json(path)
    return float(next(s for s in info["streams"] if s["codec_type"] == "video")["start_time"])


def _colour(rgb: np.ndarray) -> str:
    mean = rgb.reshape(-1, 3).mean(axis=0)
    return "red" if mean[0] > mean[2] + 60 else "blue" if mean[2] > mean[0] + 60 else f"neither {mean.round()}"


@pytest.fixture(scope="module", params=sorted(SOURCES))
def curated(request, tmp_path_factory, ray_local):
    from rushes.cli import main

    suffix, out_args, start = SOURCES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    (root / "in").mkdir()
    src = _two_shots(root / "in" / f"two_shots{suffix}", out_args)
    assert _start_time(src) >= start, "the source's video starts late, as the case needs"
    out = root / "out"
    assert main(["curate", str(root / "in"), "--out", str(out), "--no-encode", "--filter-preset", "none",
                 "--min-clip-s", "1"]) == 0
    return out


def _clips(out) -> list[dict]:
    from rushes.manifests import store

    rows = sorted(store.read(out, "clips").to_pylist(), key=lambda r: r["start_s"])
    assert len(rows) == 2 and all(r["clip_path"] is None for r in rows), "two spans, cut at the colour change"
    assert rows[0]["start_s"] < 0.5 and abs(rows[1]["start_s"] - SHOT_S) < 0.5, "curate counts from the stream start"
    return rows


def test_caption_frames_come_from_the_clip_span(curated):
    from rushes.caption.adapter import decode_batch, frames_from_row, plan_run
    from rushes.caption.frames import FrameSpec

    first, second = _clips(curated)
    plan = plan_run(curated, "tiny", "dense-v1")
    rows = {r["clip_id"]: r for r in decode_batch(plan.tasks, FrameSpec(), 4, None).to_pylist()}
    for clip, colour in ((first, "red"), (second, "blue")):
        frames = frames_from_row(rows[clip["clip_id"]])
        assert [_colour(f) for f in frames.rgb] == [colour] * 4
        assert all(clip["start_s"] <= t < clip["end_s"] for t in frames.times_s), "times recorded in source time"


def test_encoded_frames_come_from_the_clip_span(curated, tmp_path):
    import pyarrow as pa

    from rushes.manifests import store
    from rushes.train.config import DataConfig
    from rushes.train.encode import decode_batch, plan_encode

    first, second = _clips(curated)
    captions = [{"caption_id": c["clip_id"], "clip_id": c["clip_id"], "caption": "a plain colour", "status": "ok",
                 "captioner": "tiny", "prompt_version": "dense-v1"} for c in (first, second)]
    store.write_part(curated, "captions", pa.Table.from_pylist(captions), part_name="part-time-base")
    try:
        cfg = DataConfig(fps=2.0, max_frames=4, clip_tokens=64)
        plan = plan_encode(curated, cfg, tmp_path / "enc")
        rows = {r["clip_id"]: r for r in decode_batch(plan.tasks, cfg, (1, 2, 2)).to_pylist()}
    finally:
        store.delete_part(curated, "captions", "part-time-base")
    for clip, colour in ((first, "red"), (second, "blue")):
        row = rows[clip["clip_id"]]
        assert row["error_message"] is None, row["error_message"]
        rgb = np.frombuffer(row["frames"], np.uint8).reshape(row["frames_shape"])
        assert {_colour(f) for f in rgb} == {colour}


def test_report_thumbnails_come_from_the_clip_span(curated, tmp_path):
    import cv2

    from rushes.inspect.thumbs import ThumbConfig, extract_thumbnails, thumb_tasks
    from rushes.manifests import store

    clips = _clips(curated)
    videos = {v["video_id"]: v for v in store.read(curated, "videos").to_pylist()}
    tasks, missing = thumb_tasks(curated, clips, videos, ThumbConfig())
    assert not missing
    results = extract_thumbnails(tasks, tmp_path / "thumbs", ThumbConfig(workers=1))
    for clip, colour in zip(clips, ("red", "blue")):
        strip = cv2.imread(str(tmp_path / "thumbs" / results[clip["clip_id"]].file))[:, :, ::-1]  # BGR -> RGB
        assert _colour(strip) == colour, json.dumps({"clip": clip["clip_id"], "start_s": clip["start_s"]})
