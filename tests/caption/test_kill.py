"""``rushes caption`` killed with SIGKILL in the middle of writing a part, then rerun: the manifest never shows
a half-written part, the rerun clears the temporary file and captions exactly the clips still missing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from rushes.testing.grey_clips import make_run

from rushes.manifests import store

REPO = Path(__file__).resolve().parents[2]

# The real `rushes caption` in a subprocess, with parts flushed every 2 captions; the second part, written to its
# temporary file, is cut at half its bytes and the process SIGKILLs itself right there (before it is published).
KILL_MID_WRITE = """
import os, signal, sys
from rushes import storage
import rushes.caption.pipeline
rushes.caption.pipeline.FLUSH_ROWS = 2
_publish, _parts = storage.publish, []
def publish_or_die(tmp, final):
    if "/captions/" in str(final) and str(final).endswith(".parquet"):
        _parts.append(final)
        if len(_parts) == 2:  # the second caption part: written under its temporary name, not yet published
            size = os.path.getsize(tmp)
            with open(tmp, "r+b") as fh:
                fh.truncate(size // 2)
            os.kill(os.getpid(), signal.SIGKILL)
    return _publish(tmp, final)
storage.publish = publish_or_die
from rushes.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _caption(out: Path, model: Path, ray_tmp: str, script: str | None = None) -> tuple[int, str]:
    """Exit code and stderr of one run; whatever it left running (Ray's processes) is stopped after it."""
    argv = ["caption", str(out), "--preset", "debug", "--model", str(model), "--batch-size", "2"]
    cmd = [sys.executable, "-c", script, *argv] if script else [sys.executable, "-m", "rushes.cli", *argv]
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=600)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: Ray daemons a killed driver left behind
        except ProcessLookupError:
            pass
    return proc.returncode, err


def test_killed_mid_write_then_rerun_completes(tmp_path, grey_video, tiny_vlms):
    out = tmp_path / "run"
    ids = make_run(out, grey_video, [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12)], encoded={0, 3})
    ray_tmp = tempfile.mkdtemp(prefix="rk", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        code, err = _caption(out, tiny_vlms["qwen2_5_vl"], ray_tmp, KILL_MID_WRITE)
        assert code == -signal.SIGKILL, err[-3000:]
        captions = out / "captions"
        temp = [p for p in captions.iterdir() if p.name.startswith("_tmp-")]
        assert len(temp) == 1, "the cut write is a temporary file"
        # Readers see only the part written before the kill, complete and valid.
        assert len(store.part_paths(out, "captions")) == 1 and store.read(out, "captions").num_rows == 2

        code, err = _caption(out, tiny_vlms["qwen2_5_vl"], ray_tmp)
        assert code == 0, err[-3000:]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not [p for p in captions.iterdir() if p.name.startswith("_tmp-")], "the rerun clears the leftover"
    table = store.read(out, "captions")  # validates: no duplicate caption_id
    assert sorted(table.column("clip_id").to_pylist()) == sorted(ids), "one caption row per kept clip"
