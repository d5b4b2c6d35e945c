"""Training from curated sets: clips of several runs selected by a SQL condition, recorded in the run."""

from __future__ import annotations

import hashlib
import json

import pytest

from rushes.cli import main
from rushes.train.config import DataConfig
from rushes.train.selection import SelectionError, select_clips


@pytest.fixture(scope="module")
def second_out(synth_out, tmp_path_factory):
    """A second run over the same source video: one clip also in synth_out (same id), two of its own."""
    from rushes.testing.train_manifests import Clip, write_manifest

    src = str(synth_out.parent / "src.mp4")
    return write_manifest(tmp_path_factory.mktemp("second") / "out", [
        Clip(src, 0.0, 1.0, 96, 64, "a colourful test pattern with moving shapes", clip_id="clip0000"),
        Clip(src, 0.0, 0.5, 96, 64, "a short burst of colour", clip_id="b-short"),
        Clip(src, 0.25, 2.0, 96, 64, "a long take of a fractal", clip_id="b-long")])


def _ids(selection):
    return [c.clip_id for c in selection.clips]


def test_clips_of_several_runs_are_selected_once_by_a_sql_condition(synth_out, second_out):
    everything = select_clips([synth_out, second_out], DataConfig())
    assert _ids(everything) == ["b-long", "b-short", "clip0000", "clip0001", "clip0002"]  # clip0000 once
    assert [r["clips"] for r in everything.record["runs"]] == [3, 3]

    long = select_clips([synth_out, second_out], DataConfig(where="duration_s >= 1.5"))
    assert _ids(long) == ["b-long"]
    record = long.record
    assert record["where"] == "duration_s >= 1.5" and record["clips"] == 1
    assert [r["run"] for r in record["runs"]] == [str(synth_out.resolve()), str(second_out.resolve())]
    assert [r["clips"] for r in record["runs"]] == [0, 1]
    assert record["ids_hash"] == hashlib.blake2b(b"b-long", digest_size=16).hexdigest()

    by_caption = select_clips([synth_out, second_out], DataConfig(where="caption LIKE '%fractal%'"))
    assert _ids(by_caption) == ["b-long", "clip0001"]
    assert _ids(select_clips([second_out, synth_out], DataConfig(where="width_px = 96 AND duration_s < 1"))) == [
        "b-short"]


@pytest.mark.parametrize("where, message", [
    ("durration_s > 1", "durration_s"),  # a misspelt column: the error lists the real ones
    ("duration_s >", "syntax"),
    ("clip_id IN (SELECT column0 FROM read_csv('/etc/passwd'))", "disabled"),  # nothing outside the view
    ("true); DROP VIEW clips; SELECT (1", "more than one SQL statement"),  # never a statement list
])
def test_a_bad_condition_is_a_clear_error(synth_out, where, message):
    with pytest.raises(SelectionError, match="--where") as err:
        select_clips([synth_out], DataConfig(where=where))
    assert message in str(err.value).lower() or message in str(err.value)
    assert "duration_s" in str(err.value)  # the columns one can use


def test_nothing_selected_names_the_condition(synth_out):
    with pytest.raises(SelectionError, match="duration_s > 100"):
        select_clips([synth_out], DataConfig(where="duration_s > 100"))


def test_train_on_two_runs_records_the_selection_and_refuses_a_changed_one(synth_out, second_out, tiny_t5,
                                                                           tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--run", str(run), "--text-encoder", tiny_t5, "--max-frames", "4", "--clip-tokens", "128",
              "--batch-tokens", "256", "--steps", "2"]
    where = "duration_s >= 1 AND caption NOT LIKE '%bars%'"
    assert main(["train", str(synth_out), str(second_out), "--where", where, *common]) == 0
    selection = json.loads((run / "selection.json").read_text())
    assert selection["where"] == where and selection["clips"] == 3  # clip0000, clip0001, b-long
    assert selection["ids_hash"] == hashlib.blake2b(b"b-long\nclip0000\nclip0001", digest_size=16).hexdigest()
    assert json.loads((run / "config.json").read_text())["data"]["where"] == where
    capsys.readouterr()

    # Resuming on other runs selects other clips: refused, the saved run untouched.
    assert main(["train", str(second_out), *common[:-1], "3"]) == 2
    err = capsys.readouterr().err
    assert "differ from those" in err and "new --run" in err
    assert main(["train", str(synth_out), str(second_out), "--where", "duration_s > 0", *common]) == 2
    assert "was started with --where" in capsys.readouterr().err

    assert main(["train", str(synth_out), "--run", str(tmp_path / "bad"), "--where", "no_such_column = 1",
                 "--dry-run"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("rushes train: --where 'no_such_column = 1'")


def test_window_level_without_window_captions_says_so(synth_out, caplog):
    """Asked for window captions where there are none, the selection falls back to clip captions and says so."""
    got = select_clips([synth_out], DataConfig(caption_level="window"))
    assert [c.clip_id for c in got.clips] == [c.clip_id for c in select_clips([synth_out], DataConfig()).clips]
    assert "no clip has window captions" in caplog.text and "--window-s" in caplog.text
