"""Manifest paths resolve inside the run directory or are refused with the row, the path and the fix."""

from __future__ import annotations

import os

import pytest

from rushes.manifests.paths import UnsafePathError, resolve_inside


@pytest.fixture
def run(tmp_path):
    out = tmp_path / "run"
    (out / "media").mkdir(parents=True)
    (out / "media" / "c1.mp4").write_bytes(b"x")
    (tmp_path / "outside.mp4").write_bytes(b"secret")
    return out


def test_a_relative_path_inside_resolves(run):
    assert resolve_inside(run, "media/c1.mp4") == (run / "media" / "c1.mp4").resolve()
    os.symlink(run / "media" / "c1.mp4", run / "media" / "alias.mp4")  # a link that stays inside is followed
    assert resolve_inside(run, "media/alias.mp4") == (run / "media" / "c1.mp4").resolve()


@pytest.mark.parametrize("rel, why", [
    ("/etc/passwd", "is absolute"),
    ("../outside.mp4", "climbs out with '..'"),
    ("media/../../outside.mp4", "climbs out with '..'"),
    ("../../../../etc/passwd", "climbs out with '..'"),
    ("", "is empty"),
    (".", "names the run directory itself"),
])
def test_escapes_are_refused_naming_row_path_and_fix(run, rel, why):
    with pytest.raises(UnsafePathError) as err:
        resolve_inside(run, rel, column="clip_path", row="clip c9")
    msg = str(err.value)
    assert msg.startswith(f"clip c9: clip_path {rel!r} {why}") and "Rerun the stage that wrote the row" in msg


def test_symlinks_out_of_the_run_are_refused(run, tmp_path):
    os.symlink(tmp_path / "outside.mp4", run / "media" / "link.mp4")  # a file link pointing out
    os.symlink(tmp_path, run / "media" / "up")  # a folder link pointing out
    for rel in ("media/link.mp4", "media/up/outside.mp4"):
        with pytest.raises(UnsafePathError, match="resolves outside the run directory"):
            resolve_inside(run, rel, column="clip_path", row="clip c9")
