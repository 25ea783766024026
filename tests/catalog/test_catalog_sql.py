"""run_sql: every output format parses back; anything that writes is refused, at two layers."""

import csv
import io
import json
import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dxray.catalog.sample import write_sample
from dxray.catalog.sql import SqlRefused, check_read_only, run_sql
from dxray.catalog.views import connect

QUERY = (
    "SELECT run_id, class_name, object_in_explanation, object_shown_fraction, mean_probability, "
    "top_probes "
    "FROM class_summary ORDER BY run_id, class_index"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    write_sample(root)
    return root


def snapshot(folder):
    """Every file under `folder` with its size and modification time."""
    return {
        (path, os.stat(os.path.join(path, name)).st_mtime_ns)
        for path, _, names in os.walk(folder)
        for name in names
    } | {path for path, _, _ in os.walk(folder)}


def test_table_format(root):
    text = run_sql(root, QUERY, "table", limit=3)
    lines = text.splitlines()
    assert lines[0].split() == [
        "run_id",
        "class_name",
        "object_in_explanation",
        "object_shown_fraction",
        "mean_probability",
        "top_probes",
    ]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split()[:3] == ["ckpt-a", "circle", "absent"]
    assert len(lines) == 2 + 3 + 1 and lines[-1] == "(10 rows, first 3 shown)"
    # columns line up: every row's value starts where the header's does
    start = lines[0].index("object_in_explanation")
    assert all(line[start - 2 : start] == "  " for line in lines[2:5])


def test_csv_format(root, tmp_path):
    out = run_sql(root, QUERY, "csv", tmp_path / "out.csv")
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert len(rows) == 10
    circle = rows[0]
    assert (circle["run_id"], circle["class_name"], circle["object_in_explanation"]) == (
        "ckpt-a",
        "circle",
        "absent",
    )
    assert float(circle["mean_probability"]) == pytest.approx(0.8)
    assert json.loads(circle["top_probes"]) == [{"probe": "water", "rate": 1.0}]
    hexagon_b = rows[-1]
    assert hexagon_b["top_probes"] == ""  # null: no probe present


def test_json_format(root):
    rows = json.loads(run_sql(root, QUERY, "json"))
    assert len(rows) == 10 and rows[0]["class_name"] == "circle"
    assert rows[0]["object_shown_fraction"] == 0.0 and rows[-1]["top_probes"] is None
    # maps become objects, timestamps ISO strings, blobs base64
    (row,) = json.loads(
        run_sql(
            root,
            "SELECT v.probe_scores, v.created_at, i.png FROM verdicts v JOIN images i "
            "USING (run_id, target_id, seed) WHERE run_id = 'ckpt-a' AND target_id = 'class:0' "
            "AND seed = 0",
            "json",
        )
    )
    assert row["probe_scores"] == {"water": 0.9, "a watermark": 0.1, "grass": 0.0}
    assert row["created_at"].startswith("2026-11-20T09:01:00")
    assert row["png"].startswith("iVBORw0KGgo")  # base64 of the PNG signature


def test_parquet_format(root, tmp_path):
    table = pq.read_table(io.BytesIO(run_sql(root, QUERY, "parquet")))
    assert table.num_rows == 10 and table.column("class_name")[0].as_py() == "circle"
    out = run_sql(root, "SELECT * FROM verdicts", "parquet", tmp_path / "v.parquet")
    assert pq.read_schema(out).field("probe_scores").type == pa.map_(pa.string(), pa.float64())


@pytest.mark.parametrize(
    "query",
    [
        "DESCRIBE audit",
        "SHOW TABLES",
        "SUMMARIZE class_summary",
        "FROM runs",
        "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
    ],
)
def test_read_only_statements_run(root, query):
    assert "rows" in run_sql(root, query, "table") or "row)" in run_sql(root, query, "table")


def test_keywords_inside_strings_and_quoted_names_are_fine(root):
    text = run_sql(root, 'SELECT \'insert into x\' AS "update", 1 AS "drop" -- delete')
    assert "insert into x" in text and "update" in text.splitlines()[0]


def write_attempts(tmp):
    return [
        ("INSERT INTO explanations SELECT * FROM explanations", "INSERT"),
        ("CREATE TABLE evil AS SELECT 1", "CREATE"),
        (f"COPY (SELECT * FROM runs) TO '{tmp}/evil.csv'", "COPY"),
        (f"COPY runs TO '{tmp}/evil.parquet' (FORMAT parquet)", "COPY"),
        (f"ATTACH '{tmp}/evil.db' AS evil", "ATTACH"),
        ("SELECT 1; DROP VIEW runs", "2 statements"),
        ("SELECT 1; SELECT 2", "2 statements"),
        ("-- just a comment\n/* and another */ DROP VIEW runs", "DROP"),
        ("WITH gone AS (DELETE FROM explanations RETURNING *) SELECT * FROM gone", "DELETE"),
        ("WITH x AS (SELECT 1) INSERT INTO explanations SELECT * FROM x", "INSERT"),
        ("SET enable_external_access = true", "SET"),
        ("PRAGMA enable_profiling", "PRAGMA"),
        ("INSTALL httpfs", "INSTALL"),
        (f"EXPORT DATABASE '{tmp}/export'", "EXPORT"),
        ("UPDATE explanations SET status = 'converged'", "UPDATE"),
        ("CALL pragma_version()", "CALL"),
        ("", "no statement"),
        # parses as SELECT, but the connection cannot open files: refused by the engine
        (f"SELECT * FROM read_csv('{tmp}/secret.csv')", "cannot open files"),
    ]


def test_writes_are_refused_and_nothing_is_written(root, tmp_path):
    (tmp_path / "secret.csv").write_text("a\n1\n")
    before_catalog, before_tmp = snapshot(root), snapshot(tmp_path)
    for query, reason in write_attempts(tmp_path):
        with pytest.raises(SqlRefused, match="read-only") as refused:
            run_sql(root, query)
        assert reason in str(refused.value), (query, str(refused.value))
        assert "SELECT" in str(refused.value) and "SUMMARIZE" in str(refused.value)
    assert snapshot(root) == before_catalog
    assert snapshot(tmp_path) == before_tmp
    # and the views still answer
    assert "ckpt-a" in run_sql(root, "SELECT run_id FROM runs")


def test_the_engine_refuses_writes_without_the_query_check(root, tmp_path):
    """The second layer on its own: a read-only connection run without check_read_only."""
    con = connect(root, read_only=True)
    for query in [
        f"COPY (SELECT 1) TO '{tmp_path}/evil.csv'",
        f"ATTACH '{tmp_path}/evil.db' AS evil",
        f"SELECT * FROM read_parquet('{root}/runs/*/*.parquet')",
        "INSTALL httpfs",
    ]:
        with pytest.raises(duckdb.PermissionException):
            con.sql(query)
    with pytest.raises(duckdb.InvalidInputException, match="locked"):
        con.sql("SET enable_external_access = true")
    assert list(tmp_path.iterdir()) == []
    assert con.sql("SELECT count(*) FROM audit").fetchall() == [(28,)]


def test_check_read_only_returns_the_statement():
    assert check_read_only("  SELECT 1 AS a ; ").strip().startswith("SELECT 1")
    with pytest.raises(duckdb.ParserException):
        check_read_only("SELEC 1")


def test_unknown_format(root):
    with pytest.raises(ValueError, match="fmt must be one of"):
        run_sql(root, "SELECT 1", "xlsx")
