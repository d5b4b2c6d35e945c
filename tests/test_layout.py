"""The dependency rules of docs/design.md, held by walking every module's imports."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Where each part of the one `rushes` namespace lives in the repository (pyproject.toml's package-dir).
FOLDERS = {"rushes.curate": "curate", "rushes.caption": "caption", "rushes.train": "train",
           "rushes.manifests": "manifests"}
STAGES = ("rushes.curate", "rushes.caption", "rushes.train")
# The layers every stage may import.
SHARED = ("rushes.storage", "rushes.manifests", "rushes.media", "rushes.cluster", "rushes.progress", "rushes.versions",
          "rushes.settings", "rushes.exits", "rushes.models")
OLD_TOP_LEVEL = {"curate", "caption", "train", "manifests", "storage", "media", "cluster"}
# What each shared layer may import of rushes besides itself (third-party and stdlib aside).
SHARED_MAY_IMPORT = {
    "rushes.storage": set(),  # where files live (pyarrow.fs): below everything
    "rushes.manifests": {"rushes.storage"},
    "rushes.media": {"rushes.manifests", "rushes.storage"},
    "rushes.versions": {"rushes.media"},  # the ffmpeg version beside the packages'
    "rushes.progress": set(),
    "rushes.exits": set(),  # the exit-status convention: below everything
    "rushes.models": set(),  # $RUSHES_MODEL_DIR: below everything
    "rushes.cluster": {"rushes.exits"},  # connecting to Ray: knows nothing of files, manifests or stages
    # settings declared once: flags, --config FILE, checks (and the scratch's), model folders
    "rushes.settings": {"rushes.storage", "rushes.exits", "rushes.models"},
    # the inspect command reads manifests; it never calls a stage
    "rushes.inspect": {"rushes.manifests", "rushes.media", "rushes.settings", "rushes.storage", "rushes.exits"},
    # the export command sits above the stages: it selects clips as training does (rushes.train.selection), cuts
    # spans as curate encodes them (rushes.curate.encode) and hands a training run to rushes.train.export
    "rushes.export": {"rushes.manifests", "rushes.media", "rushes.settings", "rushes.storage", "rushes.progress",
                      "rushes.versions", "rushes.curate", "rushes.train", "rushes.exits"},
}
# Modules that may import ray: each stage's pipeline.py and the one shared Ray-connection module.
RAY_MODULES = {"rushes/cluster.py"}


def _dotted(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.update(f"{node.module}.{a.name}" if node.module == "rushes" else node.module for a in node.names)
    return names


def _imports(path: Path) -> set[str]:
    """Top-level names ``path`` imports."""
    return {name.split(".")[0] for name in _dotted(path)}


def _part(name: str) -> str:
    """The part of rushes a dotted name belongs to: ``rushes.curate.split.x`` -> ``rushes.curate``."""
    return ".".join(name.split(".")[:2])


def _modules(part: str) -> list[Path]:
    """The files of ``part`` (``rushes.curate``, ``rushes.storage``, ``rushes.cluster``, ...)."""
    if part in FOLDERS:
        return sorted((REPO / FOLDERS[part]).rglob("*.py"))
    path = REPO / Path(*part.split("."))
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def _first_party(path: Path) -> set[str]:
    return {n for n in _dotted(path) if n.split(".")[0] == "rushes"}


def _stdlib() -> set[str]:
    return set(sys.stdlib_module_names) | {"__future__"}


def _repo_python() -> list[Path]:
    return [p for p in REPO.rglob("*.py") if not {".git", ".venv", "runs", "site-packages"} & set(p.parts)]


def test_every_import_of_our_code_reads_rushes():
    bad = {p.relative_to(REPO).as_posix(): sorted(_imports(p) & OLD_TOP_LEVEL) for p in _repo_python()
           if _imports(p) & OLD_TOP_LEVEL}
    assert not bad, f"import rushes.<part>, never a bare top-level name: {bad}"


def test_the_wheel_installs_one_top_level_package_without_test_helpers(tmp_path):
    # From a copy without build/ and *.egg-info: setuptools reuses a stale build folder's files.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", ".venv", "runs", "out",
                                                              "__pycache__", "*.mp4", "node_modules", "site"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                          str(tmp_path), str(src)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = tmp_path.glob("rushes-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if ".dist-info/" not in n]
    assert {n.split("/")[0] for n in names} == {"rushes"}
    for part in ("curate", "caption", "train", "manifests", "storage", "media", "inspect", "export"):
        assert f"rushes/{part}/__init__.py" in names, f"rushes.{part} is missing from the wheel"
    assert not [n for n in names if n.startswith("rushes/testing/")], "test helpers are not shipped"
    for asset in ("page.html", "report.css", "report.js"):
        assert f"rushes/inspect/{asset}" in names, f"the report's {asset} is not in the wheel: list it in package-data"


def test_stages_never_import_each_other():
    for stage in STAGES:
        for mod in _modules(stage):
            bad = {n for n in _first_party(mod) if _part(n) not in {stage, *SHARED}}
            assert not bad, f"{mod.relative_to(REPO)} imports {bad}: stages share only {', '.join(SHARED)}"


def test_shared_layers_import_only_the_layers_below_them():
    for part, allowed in SHARED_MAY_IMPORT.items():
        for mod in _modules(part):
            bad = {n for n in _first_party(mod) if _part(n) not in allowed | {part}}
            assert not bad, f"{mod.relative_to(REPO)} imports {bad}: {part} may import only {sorted(allowed)}"


def test_manifests_depend_on_pyarrow_alone():
    for mod in _modules("rushes.manifests"):
        third = {n for n in _imports(mod) if n not in _stdlib() | {"rushes"}}
        assert third <= {"pyarrow"}, f"{mod.relative_to(REPO)} imports {third - {'pyarrow'}}"
        assert {_part(n) for n in _first_party(mod)} <= {"rushes.manifests", "rushes.storage"}


def _package_modules() -> list[Path]:
    return [p for part in (*STAGES, "rushes.manifests") for p in _modules(part)] + \
        [p for p in (REPO / "rushes").rglob("*.py") if "testing" not in p.parts]


def test_only_pipeline_modules_and_the_connection_module_import_ray():
    for mod in _package_modules():
        rel = mod.relative_to(REPO).as_posix()
        if "ray" in _imports(mod):
            assert mod.name == "pipeline.py" and rel.split("/")[0] in FOLDERS.values() or rel in RAY_MODULES, (
                f"{rel} imports ray; only a stage's pipeline.py and rushes/cluster.py may")


def test_ray_is_started_or_joined_only_by_the_connection_module():
    # One owner of ray.init: the rules (fresh local instance by default, explicit joins, bounded wait, signals)
    # hold everywhere only if no stage calls ray.init itself.
    callers = set()
    for mod in _package_modules():
        calls = {n.func.attr for n in ast.walk(ast.parse(mod.read_text())) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
                 and n.func.value.id == "ray"}
        if calls & {"init", "shutdown"}:
            callers.add(mod.relative_to(REPO).as_posix())
    assert callers <= RAY_MODULES, (
        f"call ray.init/ray.shutdown only in rushes/cluster.py (use connect() and session.close()): "
        f"{sorted(callers - RAY_MODULES)}")


def test_model_imports_torch_only_and_diffusion_not_model():
    model = REPO / "train" / "model.py"
    third = {n for n in _imports(model) if n not in _stdlib()}
    assert third <= {"torch"}, f"train/model.py imports {third - {'torch'}}"
    diffusion = REPO / "train" / "diffusion.py"
    assert not {n for n in _dotted(diffusion) if n.startswith("rushes.train.model")}, "train/diffusion.py imports the model"
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
