"""The terminal summary's numbers equal those worked out by hand from report_fixture.py."""

from __future__ import annotations

import pytest

from rushes.manifests import store
from rushes.manifests.schema import schema_for
from rushes.inspect.summary import message_class, split_reasons, summarize

MOTION_UNIT = schema_for("clips").field("motion_mean").metadata[b"unit"].decode()


def test_video_counts_footage_and_failures(run_dir):
    s = summarize(run_dir)
    assert (s.videos_total, s.videos_ok, s.videos_error) == (5, 2, 3)
    # 6 s + 4 s ok videos, plus the 8 s a failed video reported; the other failures have no duration.
    assert s.footage_s == pytest.approx(18.0)
    assert s.footage_ok_s == pytest.approx(10.0)
    # The two decode failures differ only in path and offset: they are one class.
    got = [(e.stage, e.message_class, e.count) for e in s.video_errors]
    assert got == [("decode", "decoding <path> failed: Invalid data found at N", 2),
                   ("probe", "cannot open <path>: Invalid data found when processing input", 1)]


def test_clip_counts_reasons_and_combinations(run_dir):
    s = summarize(run_dir)
    assert (s.clips_total, s.clips_kept, s.clips_rejected) == (6, 2, 4)
    assert s.clips_s == pytest.approx(10.0)  # 2+2+2 + 2+1+1
    assert s.kept_s == pytest.approx(4.0)  # c1 and c4
    assert s.reasons == [("dark", 3), ("motion<0.02", 1), ("text", 1), ("too_short", 1)]
    assert sorted(s.reason_combos) == [("dark", 1), ("dark;text", 1), ("motion<0.02;dark", 1), ("too_short", 1)]


def test_score_percentiles(run_dir):
    s = summarize(run_dir)
    motion = next(d for d in s.scores if d.name == "motion_mean")
    # values 0.01 0.05 0.10 0.20 0.30 (c6 has none); linear interpolation at (n-1)*p/100.
    assert motion.count == 5
    assert motion.unit == MOTION_UNIT and MOTION_UNIT  # read from the schema's field metadata
    expected = {5: 0.018, 25: 0.05, 50: 0.10, 75: 0.20, 95: 0.28}
    for p, v in expected.items():
        assert motion.percentiles[p] == pytest.approx(v, abs=1e-6)
    assert motion.mean == pytest.approx(0.132, abs=1e-6)
    sharp = next(d for d in s.scores if d.name == "sharpness")
    assert sharp.percentiles[50] == pytest.approx(40.0)  # 10 20 30 50 100 400 -> (30+50)/2
    assert not next(d for d in s.scores if d.name == "colourfulness").count  # never computed: absent, not zero
    assert s.labels["camera_motion"] == [("static", 3), ("pan_left", 1)]


def test_caption_lengths_per_captioner_and_prompt(run_dir):
    s = summarize(run_dir)
    dense, short = s.captions
    assert (dense.prompt_version, dense.ok, dense.error) == ("dense-v1", 2, 0)
    assert (dense.words.min, dense.words.percentiles[50], dense.words.max) == (3, 5.5, 8)  # 8 and 3 words
    assert dense.output_tokens_mean == pytest.approx(7.0)
    assert (short.prompt_version, short.ok, short.error) == ("short-v1", 1, 1)
    assert [(e.stage, e.count) for e in short.errors] == [("generate", 1)]
    assert s.captioned_clips == 2


def test_throughput_from_summary_json(run_dir):
    s = summarize(run_dir)
    assert [t.stage for t in s.throughput] == ["curate", "caption"]  # pipeline order
    curate, caption = s.throughput
    assert curate.wall_s == 20.0
    assert curate.rates == {"videos_per_s": 0.25, "footage_s_per_s": 0.9}
    assert curate.step_s == {"probe": 1.5, "decode": 12.0, "encode": 4.0}
    assert caption.rates == {"clips_per_s": 0.25, "tokens_per_s": 2.1}


def test_inspect_prints_the_summary(run_dir, capsys, inspect):
    assert inspect(["inspect", str(run_dir)]) == 0
    out = capsys.readouterr().out
    lines = {" ".join(line.split()) for line in out.splitlines()}
    assert "failed 3 60.0%" in lines
    assert "dark 3 50.0%" in lines
    assert "motion<0.02;dark 1" in lines
    assert "footage in 0.01 h (18.0 s)" in lines
    assert f"motion_mean {MOTION_UNIT} 5 0.018 0.05 0.1 0.2 0.28 0.132" in lines
    assert "curate 20 footage_s_per_s 0.9 videos_per_s 0.25 decode 12s encode 4s probe 1.5s" in lines


def test_summary_as_json_for_scripts(run_dir, capsys, inspect):
    import json

    assert inspect(["inspect", str(run_dir), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["videos_error"], data["clips_kept"]) == (3, 2)
    assert data["reasons"][0] == ["dark", 3]


def test_a_run_with_only_some_manifests_summarises_without_error(tmp_path, capsys, inspect):
    assert inspect(["inspect", str(tmp_path)]) == 2  # an empty folder is not a run
    assert "is not a rushes run" in capsys.readouterr().err
    store.write_part(tmp_path, "videos", [{"video_id": "v", "path": "/in/x.mp4", "status": "ok"}])
    assert inspect(["inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no captions manifest yet" in out and "no summary.json" in out
    assert inspect(["inspect", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_helpers_split_reasons_and_mask_messages():
    assert split_reasons("motion<0.02; dark;") == ["motion<0.02", "dark"]
    assert split_reasons(None) == []
    assert message_class("cannot open '/a b/c.mp4': bad header at 12; fix it") == "cannot open <...>: bad header at N"
    ffprobe = ("ffprobe cannot read /in/x.mp4: ffprobe exited 1: [mov,mp4,m4a,3gp,3g2,mj2 @ 0x558b45be21c0] moov "
               "atom not found\n/in/x.mp4: Invalid data found when processing input. Re-copy it")
    assert message_class(ffprobe) == "ffprobe cannot read <path>: ffprobe exited N: moov atom not found"
