"""The cluster examples users copy: every ``rushes`` command in ``docs/cluster.md`` (the "Run on a cluster" page)
and in ``examples/kuberay-rayjob.yaml`` parses with the real CLI parser (a renamed or removed flag fails here)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from rushes.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def _page_commands() -> list[list[str]]:
    text = (REPO / "docs" / "cluster.md").read_text()
    commands = []
    for block in text.split("```bash")[1:]:
        for line in block.split("```", 1)[0].replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "rushes.cli" in words:
                commands.append(words[words.index("rushes.cli") + 1:])
    return commands


def _rayjob_commands() -> list[list[str]]:
    job = yaml.safe_load((REPO / "examples" / "kuberay-rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["apiVersion"] == "ray.io/v1"
    return [shlex.split(part)[1:] for part in job["spec"]["entrypoint"].split("&&")]


def test_the_examples_cover_every_stage_with_its_resource_flags():
    for commands in (_page_commands(), _rayjob_commands()):
        flags = {c[0]: set(c) for c in commands}
        assert {"curate", "caption", "train"} <= set(flags)
        assert {"--num-cpus-per-task", "--memory-per-task-mb"} <= flags["curate"]
        assert {"--num-gpus", "--concurrency", "--batch-size"} <= flags["caption"]
        assert {"--workers", "--gpus-per-worker"} <= flags["train"]


@pytest.mark.parametrize("argv", _page_commands() + _rayjob_commands(), ids=lambda a: a[0])
def test_every_example_command_parses(argv, capsys):
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`rushes {shlex.join(argv)}` does not parse: {capsys.readouterr().err}")
