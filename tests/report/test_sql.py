"""`rushes inspect OUT --sql`: DuckDB views over the part files, empty views for missing manifests."""

from __future__ import annotations

import csv
import io
import json

import pytest

from rushes.manifests import store
from rushes.manifests.schema import schema_for
from rushes.inspect.sql import QueryError, query


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
    from rushes.inspect import cli
    from rushes.testing.cli_help import help_problems, subparser

    parser = subparser(cli.register, "inspect")
    assert help_problems(parser) == []
    for flag in ("--html", "--sql", "--format", "--frames", "--thumb-height", "--workers", "--no-thumbs",
                 "--page-size"):
        assert flag in parser.format_help()


def test_queries_read_the_manifests_only(run_dir, tmp_path):
    # Reading a file nobody named, writing one, attaching a database, or switching access back on: all refused.
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    refused = ["SELECT * FROM read_csv('/etc/passwd')", f"SELECT * FROM read_csv('{secret}')",
               f"COPY (SELECT * FROM clips) TO '{tmp_path / 'leak.csv'}'",
               f"ATTACH '{tmp_path / 'x.duckdb'}'", "SET enable_external_access = true",
               "SELECT * FROM read_csv('https://example.com/x.csv')"]
    for sql in refused:
        with pytest.raises(QueryError, match="disabled by configuration|configuration has been locked"):
            query(run_dir, sql)
    assert not (tmp_path / "leak.csv").exists() and not (tmp_path / "x.duckdb").exists()
    assert query(run_dir, "SELECT count(*) FROM clips").rows == [(6,)]  # the views still read their parts


def test_duckdbs_temp_folder_in_the_cwd_is_not_reachable(run_dir, tmp_path, monkeypatch):
    # DuckDB allows its spill folder (the cwd's .tmp) even with external access off: it is switched off.
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(QueryError, match="disabled by configuration"):
        query(run_dir, "SELECT * FROM read_csv('.tmp/x.csv')")
    with pytest.raises(QueryError, match="disabled by configuration"):
        query(run_dir, "COPY (SELECT 1) TO '.tmp/y.csv'")
    assert not (tmp_path / ".tmp" / "y.csv").exists()


def test_allow_external_access_lets_a_query_export(run_dir, tmp_path, inspect, capsys):
    out = tmp_path / "kept.csv"
    sql = f"COPY (SELECT clip_id FROM clips WHERE keep ORDER BY 1) TO '{out}' (HEADER)"
    assert inspect(["inspect", str(run_dir), "--sql", sql]) == 2
    assert "--allow-external-access" in capsys.readouterr().err and not out.exists()
    assert inspect(["inspect", str(run_dir), "--sql", sql, "--allow-external-access"]) == 0
    assert out.read_text().split() == ["clip_id", "c1", "c4"]


def test_a_folder_that_is_not_a_run_is_refused(tmp_path, inspect, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    for argv in (["inspect", str(tmp_path)], ["inspect", str(tmp_path), "--sql", "SELECT 1"],
                 ["inspect", str(tmp_path), "--html", str(tmp_path / "r.html")]):
        assert inspect(argv) == 2
        captured = capsys.readouterr()
        assert "is not a rushes run" in captured.err and "rushes curate" in captured.err and captured.out == ""
    assert not (tmp_path / "r.html").exists()


def test_json_output_is_strict_and_an_empty_query_is_a_usage_error(run_dir, inspect, capsys, monkeypatch):
    import io

    sql = "SELECT 'nan'::DOUBLE AS x, 'inf'::DOUBLE AS y, [1.5, 'nan'::DOUBLE] AS z"
    assert inspect(["inspect", str(run_dir), "--sql", sql, "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}")) == [
        {"x": None, "y": None, "z": [1.5, None]}]
    monkeypatch.setattr("sys.stdin", io.StringIO("  \n"))
    assert inspect(["inspect", str(run_dir), "--sql", "-"]) == 2
    assert "no query" in capsys.readouterr().err
