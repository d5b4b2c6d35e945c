"""`rushes inspect OUT --sql`: DuckDB views over the part files, empty views for missing manifests."""

from __future__ import annotations

import csv
import io
import json

import pytest

from manifests import store
from manifests.schema import schema_for
from rushes.report.sql import QueryError, query


def test_views_read_every_part_and_join(run_dir):
    r = query(run_dir, "SELECT count(*) FROM clips")  # clips has two part files
    assert r.rows == [(6,)]
    r = query(run_dir, "SELECT c.clip_id, k.caption FROM clips c JOIN captions k USING (clip_id) "
                       "WHERE k.prompt_version = 'dense-v1' ORDER BY 1")
    assert r.columns == ["clip_id", "caption"]
    assert r.rows == [("c1", "A red ball rolls across a wooden floor."), ("c4", "Bars of colour.")]


def test_missing_manifest_is_an_empty_view_with_the_declared_columns(tmp_path):
    store.write_part(tmp_path, "videos", [{"video_id": "v", "path": "/x.mp4", "status": "ok"}])
    r = query(tmp_path, "SELECT * FROM captions")
    assert r.rows == [] and r.columns == schema_for("captions").names
    assert query(tmp_path, "SELECT count(*) FROM clips WHERE keep").rows == [(0,)]


def test_bad_query_names_the_views(run_dir):
    with pytest.raises(QueryError, match="clips: clip_id, video_id"):
        query(run_dir, "SELECT no_such_column FROM clips")


def test_cli_formats(run_dir, capsys, inspect):
    sql = "SELECT reject_reason, count(*) AS n FROM clips WHERE NOT keep GROUP BY 1 ORDER BY 1"
    assert inspect(["inspect", str(run_dir), "--sql", sql, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"reject_reason": "dark", "n": 1},
                                                   {"reject_reason": "dark;text", "n": 1},
                                                   {"reject_reason": "motion<0.02;dark", "n": 1},
                                                   {"reject_reason": "too_short", "n": 1}]
    assert inspect(["inspect", str(run_dir), "--sql", sql, "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["reject_reason", "n"] and rows[2] == ["dark;text", "1"]
    assert inspect(["inspect", str(run_dir), "--sql", sql]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["reject_reason", "n"] and out[-1] == "(4 rows)"
    assert inspect(["inspect", str(run_dir), "--sql", "SELEC 1"]) == 2
    assert "query failed" in capsys.readouterr().err


def test_help_explains_every_flag():
    from rushes.report import cli
    from rushes.testing.cli_help import help_problems, subparser

    parser = subparser(cli.register, "inspect")
    assert help_problems(parser) == []
    for flag in ("--html", "--sql", "--format", "--frames", "--thumb-height", "--workers", "--no-thumbs",
                 "--page-size"):
        assert flag in parser.format_help()
