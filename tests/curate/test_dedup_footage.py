"""Near-duplicate clips on real footage: copies (re-encoded, other codec, 0.5x, 5% crop, trimmed) of shared
videos are caught through ``rushes curate``; the distinct shots of the shared footage are never marked."""

from __future__ import annotations

import dataclasses

import pytest

from rushes.curate.config import EncodeConfig, RayConfig, default
from rushes.curate.pipeline import run_curate
from rushes.manifests import read, read_summary
from rushes.testing.near_copies import TRANSFORMS, make_copies, marked, score_copies

# Two sources with a hard cut, a still-ish film shot, VFR and a pillarbox; every transform of each.
SOURCES = ("psd_goldeneye-vfr-drop3.mp4", "mpy_chaplin.mp4")


def _cfg(scores: bool = True):
    """Default clip rules, no clip files (the search reads the analysis pass only)."""
    return dataclasses.replace(default(), encode=EncodeConfig(enabled=False),
                               scores_preset="default" if scores else None)


@pytest.fixture(scope="module")
def copies(footage_dir, tmp_path_factory):
    return make_copies([footage_dir / s for s in SOURCES], tmp_path_factory.mktemp("copies"))


@pytest.fixture(scope="module")
def two_runs(footage_dir, copies, tmp_path_factory, ray_local):
    """The originals curated first, then originals + copies into the same OUT (originals are skipped)."""
    out = tmp_path_factory.mktemp("run")
    originals = [str(footage_dir / s) for s in SOURCES]
    run_curate(originals, out, _cfg(), RayConfig())
    first = marked(out)
    summary = run_curate(originals + sorted(copies), out, _cfg(), RayConfig())
    return out, first, summary


def test_copies_are_caught_and_point_at_the_original_clips(two_runs, copies):
    out, first, summary = two_runs
    assert first == [], "the two distinct originals alone: nothing marked"
    scores = score_copies(out, copies)
    assert set(scores) == set(TRANSFORMS)
    hashable = sum(c.clips - c.unhashable for c in scores.values())
    caught = sum(c.caught for c in scores.values())
    assert hashable >= 10 and caught >= 0.95 * hashable, scores
    for transform, c in scores.items():
        assert c.rate >= 0.75, (transform, c)
    # Originals are never marked: the earlier run's clips win over this run's copies.
    originals = {v["video_id"] for v in read(out, "videos").to_pylist() if v["path"].endswith(SOURCES)}
    clips = read(out, "clips").to_pylist()
    assert not [c for c in clips if c["video_id"] in originals and c["duplicate_of"]]
    by_id = {c["clip_id"]: c for c in clips}
    for c in clips:
        if c["duplicate_of"]:
            assert by_id[c["duplicate_of"]]["video_id"] in originals
            assert not c["keep"] and "near_duplicate" in c["reject_reason"].split(";")
    assert summary["near_duplicates"]["duplicates"] == sum(1 for c in clips if c["duplicate_of"])
    assert read_summary(out)["filter"]["reasons"]["near_duplicate"] >= caught


def test_inspect_and_filter_show_and_reapply_the_rule(two_runs):
    from rushes.curate.filter import filter_run
    from rushes.inspect.summary import summarize

    out, _, _ = two_runs
    n = sum(1 for c in read(out, "clips").to_pylist() if c["duplicate_of"])
    assert dict(summarize(out).reasons)["near_duplicate"] == n
    assert "near_duplicate" not in filter_run(out, preset="none", dry_run=True)["reasons"]
    assert filter_run(out, overrides={"reject_near_duplicate": False}, dry_run=True)["reasons"].get(
        "near_duplicate") is None
    assert filter_run(out, dry_run=True)["reasons"]["near_duplicate"] == n


@pytest.mark.slow  # ~150 s of footage decoded (about 3 min on 2 loaded cores); bench/dedup.py checks it too
def test_distinct_shots_of_all_shared_footage_are_never_marked(footage_dir, tmp_path, ray_local):
    out = tmp_path / "run"
    summary = run_curate([str(footage_dir)], out, _cfg(scores=False), RayConfig())
    assert summary["videos"]["ok"] >= 12
    clips = read(out, "clips")
    assert clips.num_rows >= 20 and sum(1 for s in clips["signature"].to_pylist() if s) >= 20
    assert marked(out) == []


def test_dedup_against_another_run_marks_only_this_run_and_never_writes_the_other(footage_dir, copies, tmp_path,
                                                                               ray_local, capsys):
    from rushes.cli import main

    older, newer = tmp_path / "older", tmp_path / "newer"
    chaplin = [p for p, (src, _, _) in copies.items() if src.endswith("mpy_chaplin.mp4")]
    assert main(["curate", str(footage_dir / "mpy_chaplin.mp4"), "--out", str(older), "--no-encode"]) == 0
    before = {p: p.stat().st_mtime_ns for p in (older / "clips").iterdir()}
    assert main(["curate", *chaplin, "--out", str(newer), "--no-encode", "--dedup-against", str(older)]) == 0
    kept_ids = {c["clip_id"] for c in read(older, "clips").to_pylist()}
    new = read(newer, "clips").to_pylist()
    hashed = [c for c in new if sum(1 for h in c["signature"] or [] if h) >= 2]
    assert hashed and all(c["duplicate_of"] in kept_ids and not c["keep"] for c in hashed)
    assert {p: p.stat().st_mtime_ns for p in (older / "clips").iterdir()} == before, "the other run is read only"
    assert marked(older) == []
    capsys.readouterr()  # a --dedup-against that is no run fails at once, before any video is touched
    assert main(["curate", *chaplin, "--out", str(newer), "--no-encode", "--dedup-against",
                 str(tmp_path / "nothing")]) == 2
    assert "no clips manifest" in capsys.readouterr().err
