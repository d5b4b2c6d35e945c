"""The dependency rules of DESIGN.md, held by walking every module's imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("curate", "caption", "train")
SHARED = ("storage", "manifests", "media", "cluster")  # the layers every stage may import
FIRST_PARTY = {*STAGES, *SHARED, "rushes", "tests", "bench"}
# What each shared package may import of the first-party code besides itself (third-party and stdlib aside).
SHARED_MAY_IMPORT = {
    "storage": set(),  # where files live (pyarrow.fs): below everything
    "manifests": {"storage"},
    "media": {"manifests", "storage"},
    "cluster": set(),  # connecting to Ray: knows nothing of files, manifests or stages
    "rushes/report": {"manifests", "media", "storage"},  # the report reads manifests; it never calls a stage
}
# Modules that may import ray: each stage's pipeline.py and the one shared Ray-connection module.
RAY_MODULES = {"pipeline.py", "cluster/ray_connect.py"}


def _imports(path: Path) -> set[str]:
    """Top-level names ``path`` imports (``rushes.report.x`` counts as ``rushes``, see _dotted for more)."""
    return {name.split(".")[0] for name in _dotted(path)}


def _dotted(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _stdlib() -> set[str]:
    return set(sys.stdlib_module_names) | {"__future__"}


def test_stages_never_import_each_other():
    for stage in STAGES:
        for mod in _modules(stage):
            bad = _imports(mod) & (FIRST_PARTY - {stage, *SHARED})
            assert not bad, f"{mod.relative_to(REPO)} imports {bad}: stages share only {', '.join(SHARED)}"


def test_shared_packages_import_only_the_layers_below_them():
    for package, allowed in SHARED_MAY_IMPORT.items():
        own = package.split("/")[0]
        for mod in _modules(package):
            first_party = {n for n in _dotted(mod) if n.split(".")[0] in FIRST_PARTY}
            # rushes/report may import rushes.report.*, not the rest of rushes (the CLI, which imports the stages).
            bad = {n for n in first_party if n.split(".")[0] not in allowed | {own}
                   or (n.split(".")[0] == "rushes" and not n.startswith(package.replace("/", ".")))}
            assert not bad, f"{mod.relative_to(REPO)} imports {bad}: {package} may import only {sorted(allowed)}"


def test_manifests_depend_on_pyarrow_alone():
    allowed_third_party = {"pyarrow", "storage"}  # storage/ is pyarrow alone too (tests/storage holds it)
    for mod in _modules("manifests"):
        third = {n for n in _imports(mod) if n not in _stdlib() and n != "manifests"}
        assert third <= allowed_third_party, f"{mod.relative_to(REPO)} imports {third - allowed_third_party}"


def test_only_pipeline_modules_and_the_connection_module_import_ray():
    for package in (*STAGES, *SHARED, "rushes"):
        for mod in _modules(package):
            rel = mod.relative_to(REPO).as_posix()
            if "ray" in _imports(mod):
                assert mod.name == "pipeline.py" and package in STAGES or rel in RAY_MODULES, (
                    f"{rel} imports ray; only a stage's pipeline.py and cluster/ray_connect.py may")


def test_ray_is_started_or_joined_only_by_the_connection_module():
    # One owner of ray.init: the rules (fresh local instance by default, explicit joins, bounded wait, signals)
    # hold everywhere only if no stage calls ray.init itself.
    callers = set()
    for package in (*STAGES, *SHARED, "rushes"):
        for mod in _modules(package):
            calls = {n.func.attr for n in ast.walk(ast.parse(mod.read_text())) if isinstance(n, ast.Call)
                     and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
                     and n.func.value.id == "ray"}
            if calls & {"init", "shutdown"}:
                callers.add(mod.relative_to(REPO).as_posix())
    assert callers <= {"cluster/ray_connect.py"}, (
        f"call ray.init/ray.shutdown only in cluster/ray_connect.py (use connect() and session.close()): "
        f"{sorted(callers - {'cluster/ray_connect.py'})}")


def test_model_imports_torch_only_and_diffusion_not_model():
    model = REPO / "train" / "model.py"
    third = {n for n in _imports(model) if n not in _stdlib()}
    assert third <= {"torch"}, f"train/model.py imports {third - {'torch'}}"
    diffusion = REPO / "train" / "diffusion.py"
    assert not {n for n in _dotted(diffusion) if n.startswith("train.model")}, "train/diffusion.py imports the model"
    assert "from .model" not in diffusion.read_text(), "train/diffusion.py must not import the model"


def test_no_utils_modules():
    found = [p for p in REPO.rglob("utils.py") if ".git" not in p.parts and "site-packages" not in p.parts]
    assert not found, f"no utils.py: put helpers with the concept they serve ({found})"


def test_bench_never_imports_from_tests():
    # bench/ runs without tests/ on the path: helpers both need live in rushes/testing.
    test_helpers = {p.stem for p in (REPO / "tests").rglob("*.py")} - {"conftest", "__init__"}
    for mod in _modules("bench"):
        bad = _imports(mod) & test_helpers
        assert not bad and '"tests"' not in mod.read_text(), (
            f"{mod.relative_to(REPO)} imports test helpers from tests/ ({sorted(bad) or 'puts tests/ on sys.path'}): "
            f"move them into rushes/testing")


def test_rushes_help_imports_no_heavy_library():
    # `rushes --help` builds every stage's parser: it must not pay for torch, ray, transformers or a decoder.
    code = ("import sys; from rushes.cli import build_parser; build_parser().format_help(); "
            "print(' '.join(sorted(m for m in ('torch', 'ray', 'transformers', 'av', 'cv2', 'duckdb', 'scenedetect')"
            " if m in sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"rushes --help imports {res.stdout.strip()}: import it inside the handler"
