"""Fixtures of the report tests: one hand-known run directory per session (it is only read)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_fixture import make_run  # noqa: E402


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """The fixture run of report_fixture.py: 5 videos (3 failed), 6 clips (2 kept), 4 caption rows."""
    return make_run(tmp_path_factory.mktemp("report-run"))


def run_inspect(argv: list[str]) -> int:
    """``rushes inspect ARGS`` through this stage's own ``register`` (the other stages' commands are not
    needed here, so a stage under construction elsewhere cannot break these tests)."""
    import argparse

    from rushes.inspect import cli

    parser = argparse.ArgumentParser(prog="rushes")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def inspect():
    """Callable running ``rushes inspect`` with a list of arguments; returns the exit code."""
    return run_inspect
