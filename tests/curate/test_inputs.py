"""What rushes curate reads is exactly what the user named: no video at all is an error saying so, and a file
named explicitly is curated even when it lies inside the run's own output folder."""

from __future__ import annotations

import os

import pytest

from rushes.curate.inputs import NoVideoFound, collect_inputs


@pytest.mark.parametrize("layout", ["empty folder", "folder named like a video", "only non-video files"])
def test_no_video_is_an_error_naming_the_inputs(tmp_path, capsys, layout):
    from rushes.cli import main

    target = tmp_path / ("x.mp4" if layout == "folder named like a video" else "in")
    target.mkdir()
    if layout == "only non-video files":
        (target / "notes.txt").write_text("not a list of videos, just notes\n")
        (target / "cover.png").write_bytes(b"\x89PNG")
    with pytest.raises(NoVideoFound, match="no video found under"):
        collect_inputs([str(target)])
    assert main(["curate", str(target), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"no video found under {target}" in err and "Traceback" not in err


def test_a_file_named_inside_the_output_folder_is_still_curated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "old_clip.mp4").write_bytes(b"x")  # an earlier run's clip, found by walking the folder
    (tmp_path / "take1.mp4").write_bytes(b"x")
    found = collect_inputs([".", "take1.mp4"], exclude_dir=".")  # --out . holding the inputs
    assert found.paths == [os.path.realpath("take1.mp4")]
    assert found.skipped_counts()["run_output"] == 1, "the clip of the run found by the walk is left out"
