"""A file name of any bytes a Linux file system allows (not valid UTF-8) is curated like any other: stored
losslessly (path_bytes) with an escaped display form (path), decoded again by the later stages from its exact
bytes, and a rerun resumes instead of crashing."""

from __future__ import annotations

import os

from rushes.manifests import clips, store
from rushes.media.frames import sample_frames
from rushes.testing.synth import make_cut_video

NAME = b"caf\xe9 \xff take.mp4"  # Latin-1 bytes: not UTF-8


def test_a_name_that_is_not_utf8_is_curated_stored_exactly_and_resumed(tmp_path, ray_local, capsys):
    from rushes.cli import main

    (tmp_path / "in").mkdir()
    made = make_cut_video(tmp_path / "in" / "tmp.mp4", [2.0, 2.0], fps=10, size=(160, 120))
    raw = os.fsencode(tmp_path / "in") + b"/" + NAME
    os.rename(made.path, raw)
    out = tmp_path / "out"
    argv = ["curate", str(tmp_path / "in"), "--out", str(out), "--no-encode", "--filter-preset", "none",
            "--min-clip-s", "1"]
    assert main(argv) == 0
    (video,) = store.read(out, "videos").to_pylist()
    assert video["status"] == "ok", video["error_message"]
    assert video["path_bytes"] == raw and video["path"].endswith("caf\\xe9 \\xff take.mp4")
    kept = clips.kept_clips(out)
    assert len(kept) == 2 and all(c.path == os.fsdecode(raw) and c.refused is None for c in kept)
    assert sample_frames(kept[1].path, [kept[1].start_s + 0.5])[0].rgb.shape == (120, 160, 3)
    capsys.readouterr()
    assert main(argv) == 0, "a rerun resumes"
    assert "0 to process" in capsys.readouterr().err or store.read(out, "videos").num_rows == 1
