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
        (target / "cover.psd").write_bytes(b"8BPS")  # an image, but not one curate reads (png/jpg/... are)
    with pytest.raises(NoVideoFound, match="no video or image found under"):
        collect_inputs([str(target)])
    assert main(["curate", str(target), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"no video or image found under {target}" in err and "Traceback" not in err


def test_a_file_named_inside_the_output_folder_is_still_curated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "old_clip.mp4").write_bytes(b"x")  # an earlier run's clip, found by walking the folder
    (tmp_path / "take1.mp4").write_bytes(b"x")
    found = collect_inputs([".", "take1.mp4"], exclude_dir=".")  # --out . holding the inputs
    assert found.paths == [os.path.realpath("take1.mp4")]
    assert found.skipped_counts()["run_output"] == 1, "the clip of the run found by the walk is left out"


def test_a_local_file_is_probed_before_its_bytes_are_hashed(tmp_path, ray_local):
    # A sparse multi-GB file that is no video: refused from its header, never read through.
    from rushes.cli import main
    from rushes.manifests import store

    (tmp_path / "in").mkdir()
    with open(tmp_path / "in" / "disk_image.mp4", "wb") as fh:
        fh.truncate(4 << 30)  # 4 GiB of holes: no bytes on disk, all of them for a hash to read
    main(["curate", str(tmp_path / "in"), "--out", str(tmp_path / "out")])  # its exit code is issue 22's
    (row,) = store.read(tmp_path / "out", "videos").to_pylist()
    assert row["status"] == "error" and row["error_stage"] in ("input", "probe"), row
    assert row["content_hash"] is None, "the file was hashed before it was probed"


def test_a_task_no_node_can_hold_fails_at_once_naming_the_flag(tmp_path, ray_local, capsys):
    # Ray waits forever, without a word, for 4 CPUs on a 2-CPU machine.
    from rushes.cli import main
    from rushes.testing.synth import make_cut_video

    (tmp_path / "in").mkdir()
    make_cut_video(tmp_path / "in" / "v.mp4", [1.0], fps=8, size=(64, 48))
    assert main(["curate", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--num-cpus-per-task", "64"]) == 2
    err = capsys.readouterr().err
    assert "asks for 64 CPU" in err and "--num-cpus-per-task" in err, err
