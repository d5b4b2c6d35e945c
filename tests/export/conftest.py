"""Fixtures of the export tests: one hand-known curated run per session (only read), and the command."""

from __future__ import annotations

from pathlib import Path

import pytest

from rushes.testing.curated_run import make_curated_run


@pytest.fixture(scope="session")
def curated_run(tmp_path_factory) -> Path:
    """rushes.testing.curated_run: 4 kept captioned clips (3 spans to cut, 1 encoded clip file), 1 rejected."""
    return make_curated_run(tmp_path_factory.mktemp("export-run"))


@pytest.fixture
def export():
    """``rushes export ARGS`` in this process through the real entry point; returns the exit code."""
    from rushes.cli import main

    return lambda *args: main(["export", *map(str, args)])
