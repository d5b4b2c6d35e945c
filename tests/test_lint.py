"""The linter is part of the test run: ``ruff check .`` (pyflakes rules, see pyproject.toml) finds nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = shutil.which("ruff")
    if exe:
        return [exe]
    try:
        import ruff  # noqa: F401 - only to learn whether the module is installed
    except ImportError:
        pytest.fail("ruff is not installed: run .ci/install (it is in the test extra of pyproject.toml)")
    return [sys.executable, "-m", "ruff"]


def test_ruff_finds_nothing():
    res = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", "."], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"ruff check . found problems (fix them, or `ruff check --fix .`):\n{res.stdout}{res.stderr}"
