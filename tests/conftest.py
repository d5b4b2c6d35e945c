"""Shared fixtures: the real footage beside the checkout, synthetic videos, one local Ray instance."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Test helper modules (synth.py, tiny_vlm.py, ...) import by bare name; test files may share basenames
# across folders (pytest runs with --import-mode=importlib), helper modules may not.
for _d in [REPO / "tests", *sorted(p for p in (REPO / "tests").iterdir() if p.is_dir() and p.name[0] not in "._")]:
    sys.path.insert(0, str(_d))
FOOTAGE = Path(os.environ.get("RUSHES_FOOTAGE", REPO.parent / "shared" / "footage"))


@pytest.fixture(scope="session")
def footage_dir() -> Path:
    """``../shared/footage`` beside the checkout (or ``$RUSHES_FOOTAGE``); skips when absent."""
    if not (FOOTAGE / "README.md").exists():
        pytest.skip(f"real footage not found at {FOOTAGE}: clone the project with ../shared beside it "
                    f"or set RUSHES_FOOTAGE")
    return FOOTAGE


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test: on a shared 2-core machine two OpenMP threads per process spin against
    other processes and a tiny training step becomes ~30x slower. Restored after the test."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole test session (2 CPUs, no dashboard); pipelines reuse it."""
    import ray

    if not ray.is_initialized():
        # address="local": a fresh instance of our own, never another process's cluster found in /tmp/ray
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=512 * 1024 * 1024, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _own_c2pa_certificate(tmp_path_factory):
    """``rushes sample`` signs with a per-user certificate when none is named: tests generate their own, in a
    temporary folder, never in the user's ~/.config/rushes/c2pa."""
    folder = tmp_path_factory.mktemp("c2pa")
    before = os.environ.get("RUSHES_C2PA_DIR")
    os.environ["RUSHES_C2PA_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("RUSHES_C2PA_DIR", None)
    else:
        os.environ["RUSHES_C2PA_DIR"] = before
