"""The dependency rules of DESIGN.md, held by walking every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("curate", "caption", "train")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def test_stages_never_import_each_other():
    for stage in STAGES:
        for mod in _modules(stage):
            bad = _imports(mod) & (set(STAGES) - {stage}) | (_imports(mod) & {"rushes"})
            assert not bad, f"{mod.relative_to(REPO)} imports {bad}: stages share only manifests/ and media/"


def test_manifests_depend_on_pyarrow_alone():
    allowed_third_party = {"pyarrow", "storage"}  # storage/ is pyarrow alone too (tests/storage holds it)
    for mod in _modules("manifests"):
        third = {n for n in _imports(mod) if n not in _stdlib() and n != "manifests"}
        assert third <= allowed_third_party, f"{mod.relative_to(REPO)} imports {third - allowed_third_party}"


def test_only_pipeline_modules_import_ray():
    for package in (*STAGES, "manifests", "media"):
        for mod in _modules(package):
            if "ray" in _imports(mod):
                assert mod.name == "pipeline.py", f"{mod.relative_to(REPO)} imports ray; only pipeline.py may"


def test_model_imports_torch_only_and_diffusion_not_model():
    model = REPO / "train" / "model.py"
    if model.exists():
        third = {n for n in _imports(model) if n not in _stdlib()}
        assert third <= {"torch"}, f"train/model.py imports {third - {'torch'}}"
    diffusion = REPO / "train" / "diffusion.py"
    if diffusion.exists():
        src = diffusion.read_text()
        assert "train.model" not in src and "from .model" not in src, "train/diffusion.py must not import the model"


def test_no_utils_modules():
    found = [p for p in REPO.rglob("utils.py") if ".git" not in p.parts and "site-packages" not in p.parts]
    assert not found, f"no utils.py: put helpers with the concept they serve ({found})"


def _stdlib() -> set[str]:
    import sys

    return set(sys.stdlib_module_names) | {"__future__"}
