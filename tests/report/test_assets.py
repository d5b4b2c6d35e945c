"""The report's template, stylesheet and script are package data: an installed rushes carries them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from rushes.report import assets

REPO = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.name for p in REPO.iterdir() if (p / "__init__.py").is_file() and p.name != "tests")


def test_wheel_ships_the_report_assets(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("rushes-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ("page.html", "report.css", "report.js"):
        assert f"rushes/report/{asset}" in names, f"{asset} is not in the wheel: list it in package-data"


def test_assets_inline_without_ending_their_element():
    page = assets.page()
    assert "<style>{css}</style>" in page and "<script>{js}</script>" in page
    assert "</script" not in assets.js().lower() and "</style" not in assets.css().lower()
    assert "rushesReport" in assets.js() and ".clip" in assets.css()
