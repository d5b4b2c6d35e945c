"""Inputs (files, folders, globs, .txt lists) and the ``rushes curate`` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rushes.curate import cli
from rushes.curate.inputs import expand_inputs
from rushes.testing.synth import make_cut_video

REPO = Path(__file__).resolve().parents[2]


def test_expand_inputs_from_files_folders_globs_and_lists(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "deep").mkdir()
    for p in ("a/x.mp4", "a/deep/y.MOV", "a/readme.md", "z.mkv"):
        (tmp_path / p).write_bytes(b"0")
    listing = tmp_path / "list.txt"
    listing.write_text("# footage\nz.mkv\na/x.mp4  # again\nmissing.mp4\n")
    got = expand_inputs([str(tmp_path / "a"), str(tmp_path / "*.mkv"), str(listing), str(tmp_path / "q*.mp4")])
    names = [Path(p).relative_to(tmp_path).as_posix() for p in got]
    # deduplicated, order kept; missing paths and empty globs stay so the run records them as failed
    assert names == ["a/deep/y.MOV", "a/x.mp4", "z.mkv", "missing.mp4", "q*.mp4"]
    assert expand_inputs([str(tmp_path / "a")], limit=1) == [str(tmp_path / "a" / "deep" / "y.MOV")]


def test_flags_override_the_preset(tmp_path):
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    cli.register(sub)
    args = sub.choices["curate"].parse_args(["in.mp4", "--out", "o", "--preset", "debug", "--detector", "content",
                                             "--threshold", "30", "--no-encode", "--max-clip-s", "10",
                                             "--no-scores"])
    cfg = cli.build_config(args)
    assert cfg.detector.name == "content" and cfg.detector.content_threshold == 30
    assert not cfg.encode.enabled and cfg.max_clip_s == 10 and cfg.scores_preset is None
    assert cfg.min_clip_s == 0.5  # from the debug preset


def test_dry_run_lists_work_and_writes_nothing(tmp_path):
    v = make_cut_video(tmp_path / "v.mp4", [1.0, 1.0], fps=25, size=(64, 48))
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "rushes.cli", "curate", v.path, str(tmp_path / "nope.mp4"),
                          "--out", str(out), "--dry-run"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["videos"] == 2 and plan["to_process"] == 2 and plan["duration_s"] == pytest.approx(2.0, abs=0.05)
    assert "nope.mp4" in plan["unreadable"][0] and plan["out"] == str(out)
    assert not out.exists()


def test_help_explains_every_flag():
    res = subprocess.run([sys.executable, "-m", "rushes.cli", "curate", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0
    for flag in ("--dry-run", "--limit", "--detector", "--no-encode", "--address", "--num-cpus-per-task",
                 "--max-short-side", "--min-clip-s", "--max-clip-s", "--trim-s"):
        assert flag in res.stdout
    assert "bad value" not in res.stdout


def test_bad_flag_value_exits_2_with_a_fix(capsys):
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    cli.register(sub)
    args = sub.choices["curate"].parse_args(["in.mp4", "--out", "o", "--crf", "80"])
    assert cli.main(args) == 2
    assert "argument --crf: must be in 0..51, got 80" in capsys.readouterr().err


def test_inputs_skip_the_runs_own_output_and_keep_urls(tmp_path):
    from rushes.curate.inputs import expand_inputs

    (tmp_path / "a.mp4").write_bytes(b"x")
    out = tmp_path / "run"
    (out / "media" / "v").mkdir(parents=True)
    (out / "media" / "v" / "c.mp4").write_bytes(b"x")
    got = expand_inputs([str(tmp_path), "s3://bucket/key.mp4"], exclude_dir=out)
    assert got == [str(tmp_path / "a.mp4"), "s3://bucket/key.mp4"]


def test_filter_preset_is_checked_and_not_part_of_the_config_hash():
    import dataclasses

    import pytest

    from rushes.curate.config import default

    base = default()
    assert dataclasses.replace(base, filter_preset="strict").hashed_dict() == base.hashed_dict()
    with pytest.raises(ValueError, match="strictt"):
        dataclasses.replace(base, filter_preset="strictt")


def test_dry_run_leaves_out_the_runs_own_output_like_a_real_run(tmp_path, capsys):
    import argparse
    import shutil

    v = make_cut_video(tmp_path / "v.mp4", [1.0], fps=25, size=(64, 48))
    out = tmp_path / "run"
    (out / "media" / "x").mkdir(parents=True)
    shutil.copy(v.path, out / "media" / "x" / "clip.mp4")  # a clip of an earlier run inside the input folder
    sub = argparse.ArgumentParser().add_subparsers()
    cli.register(sub)
    assert cli.main(sub.choices["curate"].parse_args([str(tmp_path), "--out", str(out), "--dry-run"])) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["videos"] == 1 and plan["duration_s"] == pytest.approx(1.0, abs=0.05)
    assert plan["skipped_inputs"] == {"run_output": 1}


def test_register_adds_curate_and_filter():
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    cli.register(sub)
    assert {"curate", "filter"} <= set(sub.choices)
    args = sub.choices["filter"].parse_args(["OUT", "--min-motion", "0.02", "--max-text-area", "none"])
    assert args.func is cli.filter_main and args.min_motion == 0.02 and args.max_text_area is None


@pytest.mark.parametrize("argv,words", [
    (["curate", "in.mp4", "--out", "{out}/o", "--min-clip-s", "nan"], "argument --min-clip-s: must be a finite number"),
    (["curate", "in.mp4", "--out", "{out}/o", "--max-clip-s", "inf"], "argument --max-clip-s: must be a finite number"),
    (["curate", "in.mp4", "--out", "{out}/o", "--threshold", "nan"], "argument --threshold: must be a finite number"),
    (["filter", "{out}", "--min-motion", "nan"], "argument --min-motion: must be a finite number"),
    (["filter", "{out}", "--max-text-area", "inf"], "argument --max-text-area: must be a finite number"),
])
def test_numbers_must_be_finite(tmp_path, capsys, argv, words):
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    cli.register(sub)
    args = sub.choices[argv[0]].parse_args([a.format(out=tmp_path) for a in argv[1:]])
    assert args.func(args) == 2
    assert words in capsys.readouterr().err


def test_every_file_a_folder_holds_is_listed_or_counted_and_links_are_followed(tmp_path):
    import os

    from rushes.curate.inputs import collect_inputs

    src, outside = tmp_path / "src", tmp_path / "outside"
    (src / "sub").mkdir(parents=True)
    outside.mkdir()
    for p in ("src/a.mp4", "src/notes.md", "src/.hidden.mp4", "src/sub/b.mov", "outside/c.mkv", "outside/d.txt"):
        (tmp_path / p).write_bytes(b"0")
    os.symlink(outside, src / "linked")  # a linked folder is followed
    os.symlink(src, src / "sub" / "loop")  # a cycle back to the top is cut
    os.symlink(src / "a.mp4", src / "alias.mp4")  # another name of a listed file
    os.symlink(tmp_path / "gone.mp4", src / "dangling.mp4")  # a broken link stays: its row says so
    found = collect_inputs([str(src)])
    assert found.paths == [str(src / "a.mp4"), str(src / "dangling.mp4"), str(outside / "c.mkv"),
                           str(src / "sub" / "b.mov")]
    assert found.skipped_counts() == {"hidden": 1, "not_video": 2, "same_file": 1, "symlink_cycle": 1}
    assert found.skipped["not_video"] == [str(src / "notes.md"), str(src / "linked" / "d.txt")]


def test_a_url_in_a_list_stays_a_url(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("ftp://host/a.mp4\nhttps://example.com/b.mp4  # remote\nlocal.mp4\n")
    assert expand_inputs([str(listing)]) == ["ftp://host/a.mp4", "https://example.com/b.mp4",
                                             str(tmp_path / "local.mp4")]


def test_a_newer_clips_schema_changes_the_config_hash(monkeypatch):
    # An OUT curated by an older rushes (clips without the columns of today's schema) must not count as done:
    # the rerun redoes its videos instead of failing later on the old parts.
    from rushes.curate.config import default
    from rushes.manifests import config_hash, schema

    before = config_hash(default().hashed_dict())
    monkeypatch.setitem(schema.SCHEMA_VERSIONS, "clips", schema.SCHEMA_VERSIONS["clips"] + 1)
    assert config_hash(default().hashed_dict()) != before
