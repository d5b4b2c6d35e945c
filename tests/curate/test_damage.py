"""Keep what decodes: a damaged region in the middle of a file is skipped, decoding resumes after it, the
videos row warns about it, and no clip spans it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rushes.curate.adapter import RunInfo, process_video
from rushes.curate.config import debug
from rushes.curate.decode import analyse_video
from rushes.manifests import read
from rushes.media.frames import FrameReader, iter_frames
from rushes.testing.synth import make_cut_video

FPS, SECONDS = 25, 8.0


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> tuple[Path, int]:
    """An 8 s video (index up front, a keyframe every 2 s) with 15% of its bytes overwritten in the middle."""
    d = tmp_path_factory.mktemp("damaged")
    v = make_cut_video(d / "whole.mp4", [SECONDS / 2, SECONDS / 2], fps=FPS, size=(160, 120),
                       extra_output_args=["-movflags", "+faststart"])
    data = bytearray(Path(v.path).read_bytes())
    a, b = int(len(data) * 0.40), int(len(data) * 0.55)
    data[a:b] = bytes((i * 7919) % 251 for i in range(b - a))  # deterministic garbage
    path = d / "damaged.mp4"
    path.write_bytes(bytes(data))
    return path, v.num_frames


def test_decoding_resumes_after_the_damaged_region_and_records_the_gap(damaged):
    path, total = damaged
    with FrameReader(str(path)) as reader:
        pts = [f.pts_s for f in reader]
        gaps = reader.gaps
    assert gaps and all(g.before_s - (g.after_s or 0) > 1.5 / FPS for g in gaps)
    assert pts[-1] > gaps[-1].before_s >= gaps[0].before_s and pts[-1] > 0.9 * SECONDS
    assert 0.5 * total < len(pts) < total  # frames before and after the damage, not the damaged ones
    assert [f.pts_s for f in iter_frames(str(path), size=(80, 60))] == pytest.approx(pts, abs=1e-6)


def test_the_videos_row_warns_and_no_clip_spans_the_damage(damaged, tmp_path):
    path, total = damaged
    gaps = analyse_video(str(path), []).gaps
    cfg = dataclasses.replace(debug(), scores_preset=None)
    outcome = process_video(str(path), tmp_path / "run", cfg, RunInfo("t", "{}"))
    row = read(tmp_path / "run", "videos").to_pylist()[0]
    assert outcome.status == "ok" and row["num_frames_decoded"] > 0.5 * total
    assert "damaged" in row["warning"] and f"{gaps[0].before_s:.3f} s" in row["warning"]
    clips = read(tmp_path / "run", "clips").to_pylist()
    assert any(c["start_s"] >= gaps[-1].before_s for c in clips)  # footage after the damage is kept
    for c in clips:
        for g in gaps:
            assert c["end_s"] <= g.after_s + 1.5 / FPS or c["start_s"] >= g.before_s, (c, g)
    kept = [c for c in clips if c["clip_path"]]
    assert kept and all((tmp_path / "run" / c["clip_path"]).stat().st_size > 0 for c in kept)
