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


def test_no_function_is_over_60_lines():
    """docs/design.md section 10: functions over ~60 lines deserve a second look; the code holds them to 60."""
    import ast

    long = []
    for path in sorted(REPO.rglob("*.py")):
        if {".git", ".venv", "build", "runs", "site"} & set(path.relative_to(REPO).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these functions (at most 60 lines each):\n" + "\n".join(long)
