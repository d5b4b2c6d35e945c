"""Thresholds applied to raw clip scores: ``rushes filter`` (interface; being implemented)."""

from __future__ import annotations


def filter_run(run_dir, preset: str = "default", overrides: dict | None = None) -> dict:
    """Re-apply thresholds to the clips manifest of ``run_dir``; returns counts per reason."""
    return {}


def register(subparsers) -> None:
    """Add ``rushes filter`` to the ``rushes`` parser."""
