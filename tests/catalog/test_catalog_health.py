"""A broken Parquet file in a catalog: SQL, the report and resume name it and go on without it;
`dxray catalog check` finds it (the footer, or every row with --deep) and moves it aside."""

import logging
import random

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dxray.catalog import health
from dxray.catalog.sample import write_sample
from dxray.catalog.sql import run_sql
from dxray.catalog.writer import CatalogWriter, part_files
from dxray.cli.main import app


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "catalog"
    write_sample(root)
    return root


def truncate(path):
    """Cut a file in half, as a copy cut short would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def damage_inside(path):
    """Overwrite the first page's bytes, leaving the footer whole."""
    data = bytearray(path.read_bytes())
    data[8:400] = b"\xab" * 392
    path.write_bytes(bytes(data))


def keys_in(path):
    table = pq.read_table(path, columns=["target_id", "seed"])
    return set(
        zip(table.column("target_id").to_pylist(), table.column("seed").to_pylist(), strict=True)
    )


def test_a_truncated_file_is_left_out_of_sql_report_and_resume_by_name(root, tmp_path, caplog):
    files = part_files(root, "explanations", "ckpt-a")
    lost = keys_in(files[0])
    done_before = CatalogWriter(root).done_keys("ckpt-a")
    rows_before = run_sql(root, "SELECT count(*) AS n FROM explanations", "json")
    truncate(files[0])

    with caplog.at_level(logging.WARNING, logger="dxray.catalog"):
        rows_after = run_sql(root, "SELECT count(*) AS n FROM explanations", "json")
        done_after = CatalogWriter(root).done_keys("ckpt-a")
    assert rows_after != rows_before  # the broken file's rows are gone, the rest answer
    assert done_after == done_before - lost  # resume recomputes exactly what the file held
    assert str(files[0]) in caplog.text and "dxray catalog check" in caplog.text
    assert caplog.text.count(str(files[0])) == 1  # named once per process, not per query

    report = CliRunner().invoke(app, ["report", str(root), "--out", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    assert (tmp_path / "r.html").stat().st_size > 1000


def test_catalog_check_lists_and_quarantines_broken_files(root):
    files = part_files(root, "verdicts")
    truncate(files[0])
    runner = CliRunner()

    found = runner.invoke(app, ["catalog", "check", str(root)])
    assert found.exit_code == 1
    assert f"unreadable: {files[0]}" in found.output and "--quarantine" in found.output
    assert files[0].exists()  # nothing moves without --quarantine

    moved = runner.invoke(app, ["catalog", "check", str(root), "--quarantine"])
    assert moved.exit_code == 0, moved.output
    target = root / health.QUARANTINE_DIR / files[0].relative_to(root)
    assert target.is_file() and not files[0].exists()
    assert target.read_bytes()  # moved, not deleted

    clean = runner.invoke(app, ["catalog", "check", str(root)])
    assert clean.exit_code == 0 and "all readable" in clean.output
    assert target not in part_files(root, "verdicts")  # readers never see the quarantine


def test_deep_check_finds_damage_the_footer_check_cannot(root):
    path = part_files(root, "explanations")[1]
    damage_inside(path)
    assert health.broken_files(root) == []
    deep = health.broken_files(root, deep=True)
    assert [b.path for b in deep] == [path]
    assert "OSError" in deep[0].reason


def flip_inside(path, at=0.25, count=2000):
    """Flip `count` bytes a quarter into the file: a damaged page, the footer whole."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    data[start : start + count] = bytes(b ^ 0xFF for b in data[start : start + count])
    path.write_bytes(bytes(data))


def test_damage_inside_a_file_is_named_and_left_out_by_sql_and_the_report(tmp_path, caplog):
    root = tmp_path / "catalog"
    write_sample(root)
    # a file with several pages of blobs, so that the damage lands inside one
    writer = CatalogWriter(root)
    words = random.Random(0)  # compressible blobs: flipped pages no longer decompress
    rows = [{"target_id": f"class:{i}", "seed": 9,
             "png": " ".join(words.choice(["water", "sand", "snow"]) for _ in range(2000)).encode()}
            for i in range(40)]  # fmt: skip
    damaged = writer.write("images", rows, "ckpt-a")
    flip_inside(damaged)
    assert health.file_problem(damaged) is None  # the footer reads: the quick check passes
    query = "SELECT count(*) AS n, sum(octet_length(png)) AS bytes FROM images_log"

    with caplog.at_level(logging.WARNING, logger="dxray.catalog"):
        result = CliRunner().invoke(app, ["sql", str(root), query, "--format", "json"])
        report = CliRunner().invoke(app, ["report", str(root), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert '"n": 26' in result.output  # the sample's images, without the damaged file's 40
    assert str(damaged) in caplog.text and "--deep --quarantine" in caplog.text
    assert report.exit_code == 0, report.output

    moved = CliRunner().invoke(app, ["catalog", "check", str(root), "--deep", "--quarantine"])
    assert moved.exit_code == 0 and not damaged.exists()
