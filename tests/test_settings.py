"""Settings declared once (rushes.settings): every command's flags come from its typed config, every number is
checked in one place, ``--config FILE`` sets the same settings, and only the command line names flags."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from rushes.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
# A command line per command that reaches its handler; the settings are checked before any work starts.
PREFIX = {"curate": ["curate", "in.mp4", "--out", "{tmp}/o"], "filter": ["filter", "{tmp}/missing"],
          "caption": ["caption", "{tmp}"], "encode": ["encode", "{tmp}/missing"],
          "train": ["train", "{tmp}", "--run", "{tmp}/r"],
          "sample": ["sample", "{tmp}/missing", "--prompt", "x", "--out", "{tmp}/s.mp4"],
          "inspect": ["inspect", "{tmp}/missing"], "export": ["export", "{tmp}/missing", "{tmp}/dest"]}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    return sub.choices


def _numeric_flags():
    for command, parser in _subparsers().items():
        for action in parser._actions:  # noqa: SLF001
            flag = getattr(action, "setting", None)
            if flag is not None and not flag.is_switch and flag.kind in (int, float):
                yield command, flag


def _bad_values(flag) -> list[str]:
    """NaN and infinities (for floats) and a value just outside each declared bound."""
    spec, out = flag.spec, (["nan", "inf", "-inf"] if flag.kind is float else [])
    if spec.ge is not None:
        below = spec.ge - 1
        out.append(str(0.5 if spec.zero and below == 0 else below))
    if spec.gt is not None:
        out.append(str(spec.gt))
    if spec.le is not None:
        out.append(str(spec.le + 1))
    if spec.lt is not None:
        out.append(str(spec.lt))
    return [v if flag.kind is float or "." not in v else v.split(".")[0] for v in out]


NUMERIC = list(_numeric_flags())


def _run(argv: list[str], tmp_path, capsys) -> tuple[int, str, str]:
    code = main([a.format(tmp=tmp_path) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_numeric_flag_declares_its_range():
    assert len(NUMERIC) > 50  # every command's numbers
    unbounded = [f"{c} {f.option}" for c, f in NUMERIC if f.spec.ge is None and f.spec.gt is None]
    assert not unbounded, f"numeric flags without a lower bound: {unbounded}"


@pytest.mark.parametrize("command, flag", NUMERIC, ids=[f"{c}{f.option}" for c, f in NUMERIC])
def test_every_numeric_flag_refuses_nan_infinity_and_out_of_range_naming_the_flag(command, flag, tmp_path, capsys):
    for value in _bad_values(flag):
        code, out, err = _run([*PREFIX[command], f"{flag.option}={value}"], tmp_path, capsys)
        assert code == 2 and out == "", (flag.option, value, out, err)
        assert f"error: argument {flag.option}: must be" in err, (flag.option, value, err)
        assert err.startswith("usage: rushes ")  # argparse style: usage, then the error


@pytest.mark.parametrize("argv, words", [
    (["train", "{tmp}", "--run", "{tmp}/r", "--lr", "inf"], "argument --lr: must be a finite number, got inf"),
    (["train", "{tmp}", "--run", "{tmp}/r", "--lr", "1e30"], "argument --lr: must be in (0, 1], got 1e+30"),
    (["train", "{tmp}", "--run", "{tmp}/r", "--packs-per-step", "0"], "argument --packs-per-step: must be in 1..65536, got 0"),
    (["train", "{tmp}", "--run", "{tmp}/r", "--progress-every", "nan"], "argument --progress-every: must be a finite"),
    (["caption", "{tmp}", "--scratch-max-gb", "nan"], "argument --scratch-max-gb: must be a finite number"),
    (["encode", "{tmp}", "--scratch-max-gb", "inf"], "argument --scratch-max-gb: must be a finite number"),
    (["curate", "in.mp4", "--out", "{tmp}/o", "--scratch-max-gb", "0"], "argument --scratch-max-gb: must be in (0,"),
    (["caption", "{tmp}", "--frames", "100000"], "argument --frames: must be in 1..256, got 100000"),
    (["caption", "{tmp}", "--fps", "nan"], "argument --fps: must be a finite number"),
    (["sample", "{tmp}", "--prompt", "x", "--out", "{tmp}/s.mp4", "--size", "100000x64"], "argument --size: must "
     "have both sides in 1..4096 px"),
    (["sample", "{tmp}", "--prompt", "x", "--out", "{tmp}/s.mp4", "--size", "big"], "argument --size: 'big' must "
     "look like HEIGHTxWIDTH"),
    (["sample", "{tmp}", "--prompt", "x", "--out", "{tmp}/s.mp4", "--frames", "100000"], "argument --frames: must "
     "be in 1..1024"),
    (["curate", "in.mp4", "--out", "{tmp}/o", "--detector", "transnetv2", "--threshold", "1.5"],
     "argument --threshold: must be in (0, 1), got 1.5; TransNetV2's reference value is 0.5 (transnet_threshold"),
    (["curate", "in.mp4", "--out", "{tmp}/o", "--max-clip-s", "1"], "argument --max-clip-s: must be > 0 and >= "
     "min_clip_s (2.0)"),
])
def test_known_bad_values_exit_2_naming_the_flag(argv, words, tmp_path, capsys):
    code, out, err = _run(argv, tmp_path, capsys)
    assert code == 2 and out == "" and words in err, err


def test_a_config_file_sets_settings_and_flags_override_it(tmp_path):
    from rushes.caption import cli as caption_cli
    from rushes.curate import cli as curate_cli

    toml = tmp_path / "caption.toml"
    toml.write_text('preset = "debug"\nframes = 3\nbatch-size = 5\nfps = 2\ntrust_remote_code = true\n')
    parse = _subparsers()["caption"].parse_args
    cfg = caption_cli.config_from_args(parse(["OUT", "--config", str(toml)]))
    assert (cfg.num_frames, cfg.batch_size, cfg.fps, cfg.trust_remote_code, cfg.max_new_tokens) == (3, 5, 2.0, True,
                                                                                                    16)
    cfg = caption_cli.config_from_args(parse(["OUT", "--config", str(toml), "--frames", "6", "--preset", "default"]))
    assert (cfg.num_frames, cfg.batch_size, cfg.max_new_tokens) == (6, 5, 256)  # the flags win

    yaml_file = tmp_path / "curate.yaml"
    yaml_file.write_text("crf: 30\nno_encode: true\nmin_clip_s: 1\nscores: null\nthreshold: 40\ndetector: content\n")
    cfg = curate_cli.build_config(_subparsers()["curate"].parse_args(["in.mp4", "--out", "o", "--config",
                                                                      str(yaml_file), "--crf", "25"]))
    assert (cfg.encode.crf, cfg.encode.enabled, cfg.min_clip_s, cfg.scores_preset) == (25, False, 1.0, None)
    assert (cfg.detector.name, cfg.detector.content_threshold) == ("content", 40.0)


@pytest.mark.parametrize("text, words", [
    ("crff = 30\n", "unknown key 'crff': not a setting of rushes curate; known: "),
    ("out = \"runs/a\"\n", "unknown key 'out': an argument, give it on the command line"),
    ("crf = 80\n", ": crf: must be in 0..51, got 80"),
    ("crf = \"fast\"\n", ": crf: invalid literal for int()"),
    ("crf = 2.5\n", ": crf: expected an integer, got 2.5"),
    ("no_encode = 1\n", ": no_encode: expected true or false, got 1"),
    ("crf = \n", "is not valid TOML"),
])
def test_a_bad_config_file_is_a_usage_error_naming_the_file_and_key(text, words, tmp_path, capsys):
    path = tmp_path / "settings.toml"
    path.write_text(text)
    code, out, err = _run(["curate", "in.mp4", "--out", "{tmp}/o", "--config", str(path)], tmp_path, capsys)
    assert code == 2 and out == "" and words in err and str(path) in err, err
    assert not (tmp_path / "o").exists()


def test_config_file_errors_on_every_command(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_setting: 1\n")
    for command, prefix in PREFIX.items():
        code, _out, err = _run([*prefix, "--config", str(bad)], tmp_path, capsys)
        assert code == 2 and f"{bad}: unknown key 'no_such_setting'" in err, (command, err)
    for name, words in (("x.json", "is not a .toml, .yaml or .yml file"), ("gone.toml", "cannot read")):
        code, _out, err = _run([*PREFIX["train"], "--config", str(tmp_path / name)], tmp_path, capsys)
        assert code == 2 and "argument --config: " in err and words in err, err


def test_a_file_value_out_of_range_names_the_file_and_key(tmp_path, capsys):
    path = tmp_path / "train.yaml"
    path.write_text("lr: 1.0e+30\nsteps: 3\n")
    code, _out, err = _run([*PREFIX["train"], "--config", str(path)], tmp_path, capsys)
    assert code == 2 and f"{path}: lr: must be in (0, 1], got 1e+30" in err


def test_only_the_command_line_knows_flag_names():
    flag = re.compile(r"--[a-z][a-z0-9-]+")
    for path in [*sorted((REPO / "rushes" / "storage").glob("*.py")), REPO / "manifests" / "lock.py"]:
        found = flag.findall(path.read_text())
        assert not found, f"{path.relative_to(REPO)} names flags {found}: raise a typed error, let the CLI word it"


def test_lock_errors_carry_facts_and_the_command_line_names_its_flag(tmp_path):
    from rushes.manifests.lock import LockError, acquire
    from rushes.settings import explain

    with acquire(tmp_path, "rushes curate"):
        with pytest.raises(LockError) as refused:
            with acquire(tmp_path, "again"):
                pass
    exc = refused.value
    assert exc.reason == "busy" and exc.owner["command"] == "rushes curate" and exc.run_dir == tmp_path.absolute()
    assert "another run directory" in str(exc)
    assert explain(exc, "--run").endswith("or use another --run")
