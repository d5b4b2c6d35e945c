"""``rushes caption``: flags, dry run, and errors a user can act on."""

from __future__ import annotations

import argparse
import json

from rushes.testing.grey_clips import make_run

from rushes.caption import cli
from rushes.manifests import store
from rushes.testing.cli_help import help_problems, subparser

FLAGS = ("--model", "--prompt", "--frames", "--fps", "--batch-size", "--concurrency", "--num-gpus",
         "--max-new-tokens", "--limit", "--dry-run", "--trust-remote-code", "--address", "--revision", "--preset",
         "--engine", "--endpoint", "--api-key-env", "--request-concurrency", "--request-timeout-s", "--request-retries",
         "--window-s", "--language", "--no-retry-flagged", "--prompt-file", "--temperature", "--top-p", "--seed")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rushes")
    cli.register(parser.add_subparsers())
    return parser


def test_help_explains_every_flag():
    parser = subparser(cli.register, "caption")
    assert help_problems(parser) == []
    text = parser.format_help()
    for flag in FLAGS:
        assert flag in text
    assert "SmolVLM2-256M-Video-Instruct" in text and "Qwen2.5-VL" in text
    assert "(default: from --preset: default 8, debug 4)" in " ".join(text.split())


def test_flags_override_the_preset():
    args = _parser().parse_args(["caption", "OUT", "--preset", "debug", "--fps", "2", "--batch-size", "3",
                                 "--trust-remote-code", "--prompt", "structured"])
    cfg = cli.config_from_args(args)
    assert (cfg.fps, cfg.batch_size, cfg.trust_remote_code, cfg.prompt, cfg.num_frames) == (2.0, 3, True,
                                                                                            "structured", 4)
    assert cli.config_from_args(_parser().parse_args(["caption", "OUT"])).trust_remote_code is False


def test_fps_and_frames_combine_as_the_readme_shows():
    cfg = cli.config_from_args(_parser().parse_args(["caption", "OUT", "--prompt", "structured", "--fps", "1",
                                                     "--frames", "16"]))
    assert (cfg.fps, cfg.num_frames) == (1.0, 16)


def test_dry_run_reports_the_plan_and_writes_nothing(tmp_path, grey_video, tiny_vlms, capsys):
    out = tmp_path / "run"
    make_run(out, grey_video, [(0, 2), (2, 4), (4, 6)], rejected={2})
    args = _parser().parse_args(["caption", str(out), "--model", str(tiny_vlms["smolvlm"]), "--dry-run",
                                 "--limit", "1"])
    assert args.func(args) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["kept_clips"] == 2 and plan["to_caption"] == 1 and plan["prompt_version"] == "dense-v1"
    assert not store.part_paths(out, "captions")


def test_bad_arguments_exit_2_with_a_hint_on_stderr(tmp_path, capsys):
    args = _parser().parse_args(["caption", str(tmp_path)])
    assert args.func(args) == 2
    err = capsys.readouterr()
    assert f"rushes curate INPUT --out {tmp_path}" in err.err and err.out == ""
    args = _parser().parse_args(["caption", str(tmp_path), "--frames", "0"])
    assert args.func(args) == 2 and "argument --frames: must be in 1..256, got 0" in capsys.readouterr().err


def test_a_second_writer_on_one_out_is_refused_at_once_naming_the_first(tmp_path, grey_video, tiny_vlms, capsys):
    from rushes.manifests.lock import acquire

    out = tmp_path / "run"
    make_run(out, grey_video, [(0, 2), (2, 4)])
    args = _parser().parse_args(["caption", str(out), "--model", str(tiny_vlms["smolvlm"])])
    with acquire(out, "rushes curate"):  # another writer (here: this process) holds OUT
        assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "is being written by" in err and "rushes curate" in err
    assert not store.part_paths(out, "captions") and not (out / "config" / "caption.json").exists()


def test_a_request_no_node_can_meet_fails_at_once_naming_the_flag(tmp_path, grey_video, tiny_vlms, capsys,
                                                                   ray_local):
    # Ray would queue a GPU actor on a machine without a GPU forever, without a word.
    from rushes.cli import main

    out = tmp_path / "run"
    make_run(out, grey_video, [(0, 2), (2, 4)])
    assert main(["caption", str(out), "--model", str(tiny_vlms["smolvlm"]), "--num-gpus", "1"]) == 2
    err = capsys.readouterr().err
    assert "asks for 1 GPU" in err and "--num-gpus" in err and "largest node: 0 GPU" in err, err
