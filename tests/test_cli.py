"""The ``rushes`` command as a user meets it: every command registered, every flag explained, errors on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rushes.cli import build_parser
from rushes.testing.cli_help import help_problems

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {"curate", "filter", "caption", "encode", "train", "sample", "inspect", "export"}


def _commands() -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
    return {"rushes": parser, **sub.choices}


def test_every_command_is_registered_and_every_flag_states_its_default():
    commands = _commands()
    assert set(commands) == COMMANDS | {"rushes"}
    problems = [f"rushes {name} {p}" for name, parser in commands.items() for p in help_problems(parser)]
    assert not problems, "\n".join(problems)


def test_no_command_is_a_usage_error_on_stderr():
    res = subprocess.run([sys.executable, "-m", "rushes.cli"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == "" and "COMMAND" in res.stderr
    res = subprocess.run([sys.executable, "-m", "rushes.cli", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and all(c in res.stdout for c in COMMANDS)


def test_every_command_reports_bad_input_on_stderr_with_a_nonzero_exit(tmp_path, capsys):
    from rushes.cli import main

    missing = str(tmp_path / "missing")
    cases = {"curate": ["curate", "in.mp4", "--out", str(tmp_path / "o"), "--crf", "80"],
             "filter": ["filter", missing],
             "caption": ["caption", str(tmp_path)],
             "encode": ["encode", missing],
             "train": ["train", str(tmp_path), "--run", str(tmp_path / "r"), "--lr", "-1"],
             "sample": ["sample", missing, "--prompt", "a cat", "--out", str(tmp_path / "s.mp4")],
             "inspect": ["inspect", missing],
             "export": ["export", missing, str(tmp_path / "e"), "--shard-size", "0"]}
    assert set(cases) == COMMANDS, "a case per command"
    on_stdout = set()
    for name, argv in cases.items():
        code = main(argv)
        out, err = capsys.readouterr()
        assert code != 0, f"rushes {' '.join(argv)} exited 0"
        if out.strip() or not err.strip():
            on_stdout.add(name)
    assert not on_stdout, f"errors not on stderr (or output on stdout): {sorted(on_stdout)}"


def test_sigint_stops_a_command_that_inherited_it_ignored(tmp_path):
    # A script that starts rushes in the background (`rushes ... &`) hands it SIGINT ignored.
    import signal
    import time

    (tmp_path / "clips").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "rushes.cli", "inspect", str(tmp_path), "--sql", "-"], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:  # until the command is waiting on stdin
            proc.send_signal(signal.SIGINT)
            time.sleep(0.5)
        assert proc.poll() == 128 + signal.SIGINT, "kill -INT did not stop the command"
        assert "stopped by SIGINT" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_a_full_disk_is_one_line_saying_so_not_a_traceback(tmp_path, capsys, monkeypatch):
    import errno

    from rushes import storage
    from rushes.cli import main
    from rushes.testing.train_manifests import Clip, write_manifest

    run = write_manifest(tmp_path / "out", [Clip("/v.mp4", 0.0, 2.0, 64, 48, "a clip")])

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "publish", full)  # every manifest part is published through it
    assert main(["filter", str(run), "--preset", "strict"]) == 2
    err = capsys.readouterr().err
    assert "a disk or quota is full" in err and "rerun the same command" in err and "Traceback" not in err, err
