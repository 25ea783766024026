"""`--out` of `dxray sql` and `dxray report` never writes into a catalog or over a file of
another kind; a missing catalog, a bad limit and a second quarantine are clear."""

import pytest
from typer.testing import CliRunner

from dxray.catalog import health
from dxray.catalog.outputs import OutputRefused, check_output
from dxray.catalog.sample import write_sample
from dxray.catalog.views import connect
from dxray.catalog.writer import part_files
from dxray.cli.main import app

SELECT = "SELECT run_id, render_id, seed, status, created_at FROM shortcut_pool LIMIT 1"


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "catalog"
    write_sample(root)
    return root


def test_sql_out_cannot_write_into_a_catalog(root):
    target = root / "shortcut_pool" / "run_id=ckpt-a" / "part-bogus.parquet"
    before = connect(root).sql("SELECT count(*) FROM shortcut_pool").fetchall()
    result = CliRunner().invoke(
        app, ["sql", str(root), SELECT, "--format", "parquet", "--out", str(target)]
    )
    assert result.exit_code == 2 and "inside the catalog" in result.output
    assert not target.exists()
    assert connect(root).sql("SELECT count(*) FROM shortcut_pool").fetchall() == before
    # into another catalog's folders too, and into a new run partition of it
    other = root / "runs" / "run_id=new" / "x.parquet"
    with pytest.raises(OutputRefused, match="inside the catalog"):
        check_output(other, (".parquet",))
    # the catalog's top level is not data: a report beside the tables is fine
    assert check_output(root / "report.html", (".html",)) == root / "report.html"


def test_out_must_be_a_file_of_its_kind(root, tmp_path):
    spec = tmp_path / "audit.yaml"
    spec.write_text("name: keep me\n")
    runner = CliRunner()
    for args in (
        ["report", str(root), "--out", str(spec)],
        ["sql", str(root), SELECT, "--format", "csv", "--out", str(spec)],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "must end in" in result.output, args
    assert spec.read_text() == "name: keep me\n"
    folder = tmp_path / "reports"
    folder.mkdir()
    result = runner.invoke(app, ["report", str(root), "--out", str(folder)])
    assert result.exit_code == 2 and "is a folder" in result.output
    assert list(folder.iterdir()) == []  # no temp file left behind


def test_a_missing_catalog_and_a_bad_limit_are_errors(tmp_path, root):
    runner = CliRunner()
    missing = runner.invoke(app, ["sql", str(tmp_path / "catlog"), "SELECT 1"])
    assert missing.exit_code == 2 and "no catalog at" in missing.output
    bad = runner.invoke(app, ["sql", str(root), "SELECT 1", "--limit", "-1"])
    assert bad.exit_code == 2
    views = runner.invoke(app, ["sql", "--help"])
    assert "class_shortcuts" in views.output and "unit_summary" in views.output


def test_a_second_quarantine_at_the_same_path_keeps_both_copies(root):
    path = part_files(root, "verdicts", "ckpt-a")[0]
    first = b"first broken copy"
    path.write_bytes(first)
    health.quarantine(root, health.broken_files(root))
    path.write_bytes(b"second broken copy")
    (second,) = health.quarantine(root, health.broken_files(root))
    kept = root / health.QUARANTINE_DIR / path.relative_to(root)
    assert kept.read_bytes() == first and second.read_bytes() == b"second broken copy"
    assert second != kept


def test_score_names_a_run_the_catalog_lacks(root):
    result = CliRunner().invoke(app, ["score", str(root), "--run", "nope"])
    assert result.exit_code == 2 and "has no run 'nope'" in result.output
