"""The documented "on your own footage" sequence (docs/install.md) runs as the docs print it.

The commands are read out of the markdown block, so a docs change that breaks the sequence fails here. The only
substitutions: the footage folder ``/data/raw/`` is a folder of real footage, ``more/*.mov`` and ``list.txt`` exist
in the working folder, and the hub models the defaults name (SmolVLM2, T5) are tiny random-weight models of the same
families, found through ``RUSHES_MODEL_DIR`` (docs/offline.md) with ``HF_HUB_OFFLINE=1``: nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rushes.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "install.md"
FOOTAGE_DIR = "/data/raw/"  # the footage folder the docs name
RAY_LINES = re.compile(r"Token authentication|Started a local Ray instance|^\[\d{4}-\d\d-\d\d [\d:,]+ [IWEF] \d+|"
                       r"^\d{4}-\d\d-\d\d [\d:,]+\s+(INFO|WARNING|ERROR) \S+\.py:\d+ --|Running Dataset", re.M)


def documented_sequence(path: Path = DOC, heading: str = "## On your own footage") -> list[list[str]]:
    """The commands of the first bash block after ``heading``, each split as a shell would (comments dropped)."""
    text = path.read_text()
    assert heading in text, f"{path} has no section {heading!r}"
    block = re.search(r"```bash\n(.*?)```", text.split(heading, 1)[1], re.S)
    assert block, f"no bash block under {heading!r} in {path}"
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines() if line.strip()]


def _argv(words: list[str], raw: Path) -> list[str]:
    assert words[0] == "rushes", f"not a rushes command: {words}"
    return [str(raw) + "/" if w == FOOTAGE_DIR else w for w in words[1:]]


def test_the_sequence_is_the_whole_first_hour_and_encode_and_train_agree():
    # Fast, in the default run: the commands parse, and encode makes what train streams (the break:
    # encode defaulted to one preset, train was given another, and train refused the encodings).
    from rushes import settings
    from rushes.train import cli as train_cli
    from rushes.train.shards import DATA_FIELDS

    seq = documented_sequence()
    commands = [words[1] for words in seq]
    for step in ("curate", "filter", "caption", "encode", "inspect", "train", "sample"):
        assert step in commands, f"the documented sequence has no `rushes {step}`"
    parser = build_parser()
    parsed = {words[1]: parser.parse_args(words[1:]) for words in seq}
    encode = train_cli.shaped_config(parsed["encode"], settings.resolve(parsed["encode"]))
    train = settings.resolve(parsed["train"]).build("config", train_cli.preset(parsed["train"].preset))
    for field in DATA_FIELDS:
        assert getattr(encode.data, field) == getattr(train.data, field), f"encode and train differ in {field}"
    assert encode.model.patch_size == train.model.patch_size
    assert parsed["train"].out == [parsed["encode"].out] and parsed["sample"].run == parsed["train"].run


def _tiny_models(root: Path) -> None:
    from rushes.caption.config import DEFAULT_MODEL
    from rushes.testing.tiny import build_tiny_smolvlm, save_tiny_text_encoder
    from rushes.train.config import DataConfig

    vlm = Path(build_tiny_smolvlm(root / DEFAULT_MODEL))
    # A random VLM never ends a caption, so every caption would be flagged truncated and left out of training, as
    # a real truncated caption is. Half its 512-token vocabulary ends a caption after 3 tokens here: captions stop
    # as a real model's do, pass the checks, and the sequence runs as printed.
    gen_path = vlm / "generation_config.json"
    gen = json.loads(gen_path.read_text())
    gen.update(eos_token_id=sorted(set(gen.get("eos_token_id") or []) | set(range(256, 512))), min_new_tokens=3)
    gen_path.write_text(json.dumps(gen))
    save_tiny_text_encoder(root / DataConfig().text_encoder, kind="t5")


# Minutes on 2 shared cores (four Ray starts, a tiny training run): `pytest -m slow`. The fast test above holds the
# sequence's parsing and encode/train agreement in the default run.
@pytest.mark.slow
def test_the_documented_sequence_runs_as_printed(tmp_path, footage_dir):
    seq = documented_sequence()
    work, raw = tmp_path / "work", tmp_path / "raw"
    (work / "more").mkdir(parents=True)
    raw.mkdir()
    # Real footage whose clips the strict preset keeps some of (two of six).
    os.symlink(footage_dir / "mpy_big_buck_bunny_0_30.webm", raw / "mpy_big_buck_bunny_0_30.webm")
    from rushes.testing.synth import make_cut_video

    make_cut_video(work / "more" / "take1.mov", [1.5, 1.5], fps=10, size=(96, 64))
    (work / "list.txt").write_text(str(footage_dir / "iio_realshort.mp4") + "\n")
    _tiny_models(tmp_path / "models")
    ray_tmp = Path(tempfile.mkdtemp(prefix="qs", dir="/tmp"))  # Ray's socket paths must stay short
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RUSHES_", "HF_"))}
    env.update(PYTHONPATH=str(REPO), RAY_TMPDIR=str(ray_tmp), RUSHES_MODEL_DIR=str(tmp_path / "models"),
               HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    try:
        for words in seq:
            argv = _argv(words, raw)
            res = subprocess.run([sys.executable, "-m", "rushes.cli", *argv], cwd=work, env=env, capture_output=True,
                                 text=True, timeout=900)
            shown = f"$ {shlex.join(words)}\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
            assert res.returncode == 0, shown
            assert not RAY_LINES.search(res.stderr), shown
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert (work / "runs" / "r1" / "report.html").is_file()
    video = work / "kite.mp4"
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames,width,height", "-of", "csv=p=0", str(video)],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0 and probe.stdout.strip(), probe.stderr
