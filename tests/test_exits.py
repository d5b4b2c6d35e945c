"""One exit-status convention for every command (rushes/exits.py, docs/settings.md "Exit status"), and quiet output.

0, 1 and 2 are checked here through the real ``rushes curate`` in a subprocess (a real local Ray); how ``main`` maps
an interrupt and a bad address is checked in-process. The real signals (130, 143) and a real lost cluster (3) run in
tests/cluster/test_ray_connect.py and tests/cluster/test_cluster.py, which assert the same codes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rushes import exits
from rushes.cli import main
from rushes.cluster import JobInterrupted, RayConnectError
from rushes.curate import cli as curate_cli
from rushes.manifests.store import read
from rushes.testing.synth import make_cut_video

REPO = Path(__file__).resolve().parents[1]
# What Ray prints on its own when nobody quiets it: its token-authentication notice, "Started a local Ray
# instance", its C++ log lines ("[2026-01-01 10:00:00,123 E 123 123] core_worker.cc:..."), Ray Data's log lines
# ("2026-01-01 10:00:00,123\tINFO streaming_executor.py:..."), Ray Data's progress bars.
RAY_LINES = re.compile(r"Token authentication|Started a local Ray instance|^\[\d{4}-\d\d-\d\d [\d:,]+ [IWEF] \d+|"
                       r"^\d{4}-\d\d-\d\d [\d:,]+\s+(INFO|WARNING|ERROR) \S+\.py:\d+ --|Running Dataset|"
                       r"RAY_BACKEND_LOG_LEVEL|ray\.data", re.M)


def test_the_documented_table_is_the_code():
    text = (REPO / "docs" / "settings.md").read_text()
    section = text.split("## Exit status", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", section, re.M))
    assert {int(k): v for k, v in rows.items()} == exits.MEANINGS
    assert exits.interrupted(signal.SIGINT) == 130 and exits.interrupted(signal.SIGTERM) == 143


def test_failures_are_grouped_by_reason_with_the_item_named_once():
    lines = exits.failure_lines([("probe: ffprobe cannot read /a.mp4 [mov @ 0x5564ab12cd00] moov atom", "/a.mp4"),
                                 ("probe: ffprobe cannot read /b.mp4 [mov @ 0x55f00dd2e240] moov atom", "/b.mp4"),
                                 ("decode: broken", "/c.mp4")])
    assert lines == ["  2 x probe: ffprobe cannot read ITEM [mov @ 0x..] moov atom (e.g. /a.mp4)",
                     "  1 x decode: broken (e.g. /c.mp4)"]
    many = exits.failure_lines([(f"reason {i}", None) for i in range(12)], limit=8)
    assert len(many) == 9 and many[-1] == "  ... and 4 more reasons"


@pytest.mark.parametrize("raised, code", [(JobInterrupted(signal.SIGINT), 130), (JobInterrupted(signal.SIGTERM), 143),
                                          (RayConnectError("cannot reach the Ray cluster at x:1"), 2)])
def test_main_maps_what_a_job_raises_to_its_code(monkeypatch, tmp_path, capsys, raised, code):
    def handler(_args):
        raise raised

    monkeypatch.setattr(curate_cli, "main", handler)
    assert main(["curate", str(tmp_path), "--out", str(tmp_path / "out")]) == code
    err = capsys.readouterr().err
    assert err.startswith("rushes curate: ") and len(err.strip().splitlines()) == 1


def test_bad_usage_is_2_before_or_after_the_subcommand_flags(tmp_path, capsys):
    assert main(["curate", str(tmp_path), "--out", str(tmp_path / "o"), "--crf", "99", "-q"]) == exits.USAGE
    assert "--crf" in capsys.readouterr().err
    assert main(["-q", "curate", str(tmp_path), "--out", str(tmp_path / "o")]) == exits.USAGE  # no video found
    assert "no video" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["curate", str(tmp_path), "--out", str(tmp_path / "o"), "-q", "-v"])
    assert stop.value.code == exits.USAGE


def _rushes(*argv: str, ray_tmp: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RUSHES_"))}
    env.update(PYTHONPATH=str(REPO), RAY_TMPDIR=str(ray_tmp))
    return subprocess.run([sys.executable, "-m", "rushes.cli", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def test_curate_exits_1_when_some_videos_failed_quietly_and_a_copy_is_a_duplicate(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = make_cut_video(raw / "a.mp4", [1.5, 1.5], fps=10, size=(96, 64)).path
    shutil.copy(good, raw / "b_copy.mp4")
    for name in ("c_bad.mp4", "d_bad.mp4"):
        (raw / name).write_text(f"{name} is not a video")  # distinct bytes: two failures, not a duplicate
    out = tmp_path / "out"
    ray_tmp = Path(tempfile.mkdtemp(prefix="rq", dir="/tmp"))  # Ray's socket paths must stay short
    try:
        first = _rushes("curate", str(raw), "--out", str(out), "--preset", "debug", ray_tmp=ray_tmp)
        # -q after the subcommand: only the closing summary (a rerun retries the failed videos: Ray starts again).
        quiet = _rushes("curate", str(raw), "--out", str(out), "--preset", "debug", "-q", ray_tmp=ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert first.returncode == exits.ITEMS_FAILED, first.stderr[-3000:]
    assert not RAY_LINES.search(first.stderr), first.stderr
    assert "rushes.curate.pipeline: curate: 4 input video(s)" in first.stderr  # rushes' own lines stay
    summary = json.loads((out / "summary.json").read_text())["curate"]["videos"]
    assert (summary["ok"], summary["error"], summary["duplicate"]) == (1, 2, 1)
    closing = first.stdout.splitlines()
    assert closing[0].startswith("curate: 1 ok / 2 failed, 1 duplicate videos")
    grouped = [line for line in closing if line.startswith("  ")]
    assert len(grouped) == 1 and grouped[0].startswith("  2 x probe: ffprobe cannot read ITEM"), closing
    rows = {Path(r["path"]).name: r for r in read(out, "videos").to_pylist()}
    dup = rows["b_copy.mp4"]
    assert (dup["status"], dup["error_stage"], dup["error_message"]) == ("duplicate", None, None)
    assert f"{raw / 'b_copy.mp4'} is a byte-identical copy of {raw / 'a.mp4'}, the first seen" in dup["warning"]
    assert quiet.returncode == exits.ITEMS_FAILED and quiet.stderr == "", quiet.stderr
    assert quiet.stdout.splitlines()[0].startswith("curate: 1 ok / 2 failed, 1 duplicate videos")


def test_curate_exits_0_when_every_video_is_done_or_a_duplicate(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = make_cut_video(raw / "a.mp4", [1.5, 1.5], fps=10, size=(96, 64)).path
    shutil.copy(good, raw / "b_copy.mp4")
    out = tmp_path / "out"
    ray_tmp = Path(tempfile.mkdtemp(prefix="rq", dir="/tmp"))
    try:
        res = _rushes("-q", "curate", str(raw), "--out", str(out), "--preset", "debug", ray_tmp=ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert res.returncode == exits.OK and res.stderr == "", res.stderr[-3000:]
    assert res.stdout.startswith("curate: 1 ok / 0 failed, 1 duplicate videos")
