"""The docs stay true to the code: the generated references match the parsers and schemas, every file and module a
page names exists, the README's links and quick start hold, and the site builds with ``mkdocs build --strict``."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = sorted(DOCS.rglob("*.md")) + [REPO / "README.md"]
# Where a dotted name's first part lives (pyproject.toml's package-dir); the rest of rushes is under rushes/.
FOLDERS = {"curate": "curate", "caption": "caption", "train": "train", "manifests": "manifests"}
# Roots of the repository a page may name a path under; the old top-level folders are listed so a stale path
# (storage/fs.py, cluster/ray_connect.py) is reported as missing rather than ignored.
ROOTS = ("curate/", "caption/", "train/", "manifests/", "rushes/", "bench/", "tests/", "examples/", "docs/", ".ci/",
         "storage/", "media/", "cluster/")
NOT_MODULES = {"rushes.kind", "rushes.schema_version"}  # schema metadata keys, not modules


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_references_are_current():
    gen = _generator()
    for rel, make in gen.GENERATED.items():
        path = DOCS / rel
        assert path.exists(), f"docs/{rel} is missing: run `python docs/generate.py`"
        assert path.read_text() == make(), (
            f"docs/{rel} is stale (a flag, help text or column changed): run `python docs/generate.py` and commit it")


def test_the_cli_reference_lists_every_command_and_flag():
    from rushes.cli import build_parser

    text = (DOCS / "reference" / "cli.md").read_text()
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, parser in sub.choices.items():
        assert f"## rushes {name}\n" in text, f"rushes {name} is missing from docs/reference/cli.md"
        for action in parser._actions:
            for flag in [] if action.__class__.__name__ == "_HelpAction" else action.option_strings:
                assert f"`{flag}" in text or f", {flag}" in text, f"rushes {name} {flag} is missing from the reference"


def _code_spans(text: str) -> list[str]:
    text = re.sub(r"```.*?```", lambda m: m.group(0).replace("`", ""), text, flags=re.S)  # fenced blocks: skip
    return re.findall(r"`([^`\n]+)`", text)


def _paths(span: str) -> list[str]:
    words = [w.strip(".,;:()'\"") for w in span.split()]
    return [w for w in words if w.startswith(ROOTS) and not re.search(r"[*<>{}\[\]$]", w)]


def test_every_path_a_page_names_exists():
    missing = [f"{page.relative_to(REPO)}: {path}" for page in PAGES for span in _code_spans(page.read_text())
               for path in _paths(span) if not (REPO / path).exists()]
    assert not missing, "these paths do not exist (moved? see the layout in README.md):\n" + "\n".join(missing)


def _defined(module: Path) -> set[str]:
    names = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _resolves(dotted: str) -> bool:
    """``rushes.train.loop.auto_prefetch``: a module of the repository, then at most a name defined in it."""
    parts = dotted.split(".")[1:]
    here = REPO / FOLDERS[parts[0]] if parts and parts[0] in FOLDERS else REPO / "rushes"
    rest = parts[1:] if parts and parts[0] in FOLDERS else parts
    while rest and ((here / rest[0]).is_dir() or (here / f"{rest[0]}.py").is_file()):
        here = here / rest[0] if (here / rest[0]).is_dir() else here / f"{rest[0]}.py"
        rest = rest[1:]
    if not rest:
        return True
    module = here / "__init__.py" if here.is_dir() else here
    return module.is_file() and rest[0] in _defined(module)


def test_every_module_and_name_a_page_names_exists():
    names = {(page.relative_to(REPO), m) for page in PAGES for span in _code_spans(page.read_text())
             for m in re.findall(r"\brushes(?:\.[A-Za-z_]\w*)+", span)}
    missing = sorted(f"{page}: {name}" for page, name in names if name not in NOT_MODULES and not _resolves(name))
    assert not missing, "these modules or names do not exist (moved or renamed?):\n" + "\n".join(missing)


def test_readme_links_point_at_pages_that_exist():
    text = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert links, "the README links into docs/"
    missing = [link for link in links if "://" not in link and not (REPO / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
    pages = {p.relative_to(REPO).as_posix() for p in DOCS.rglob("*.md")} - {"docs/index.md"}  # the site's home
    assert pages <= set(links), f"README.md does not link to {sorted(pages - set(links))}"


def test_readme_quick_start_is_the_two_commands():
    text = (REPO / "README.md").read_text()
    block = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert commands == ["./quickstart.sh", "python3 -m pytest"]
    assert os.access(REPO / "quickstart.sh", os.X_OK), "quickstart.sh must stay executable"
    assert len(text.splitlines()) <= 250, "the README is the front page: move detail into docs/"


def test_mkdocs_build_strict(tmp_path):
    for module in ("mkdocs", "material"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[test]' installs mkdocs and mkdocs-material)")
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                          str(REPO / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert res.returncode == 0, f"mkdocs build --strict failed (broken link, page missing from nav?):\n{res.stderr[-4000:]}"
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()


def _shell_commands(text: str) -> list[list[str]]:
    """Every ``rushes ...`` command line of the page's bash blocks, environment assignments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]
            if words[:1] == ["rushes"]:
                commands.append(words[1:])
    return commands


def test_every_example_command_in_the_docs_parses(capsys):
    from rushes.cli import build_parser

    bad = []
    for page in PAGES:
        for argv in _shell_commands(page.read_text()):
            try:
                build_parser().parse_args(argv)
            except SystemExit:
                bad.append(f"{page.relative_to(REPO)}: rushes {shlex.join(argv)}\n  {capsys.readouterr().err.strip()}")
    assert not bad, "example commands that do not parse (a renamed or removed flag?):\n" + "\n".join(bad)
