"""dxray as a user installs it: built from this tree into a folder outside the repository and
run from another directory, it opens a catalog (the SQL and the CSS are package data)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dxray.catalog.sample import write_sample

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    return target


def dxray(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run(
        [sys.executable, "-m", "dxray.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_an_installed_dxray_reads_a_catalog_from_another_directory(installed, tmp_path):
    catalog = tmp_path / "catalog"
    write_sample(catalog)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = dxray(installed, elsewhere, "--help")
    assert where.returncode == 0
    probe = subprocess.run(
        [sys.executable, "-c", "import dxray; print(dxray.__file__)"],
        cwd=elsewhere, env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True, text=True,
    )  # fmt: skip
    assert probe.stdout.strip().startswith(str(installed))  # the installed copy, not the repo
    query = "SELECT class_name, attribute FROM class_shortcuts WHERE finding ORDER BY ALL"
    result = dxray(installed, elsewhere, "sql", str(catalog), query, "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "circle,water", "square,grass", "star,a watermark", "star,a watermark"
    ]  # fmt: skip
    report = dxray(installed, elsewhere, "report", str(catalog), "--out", "r.html")
    assert report.returncode == 0, report.stderr
    assert "What this classifier relies on" in (elsewhere / "r.html").read_text()


def test_an_installed_dxray_runs_its_demo_from_any_folder(installed, tmp_path):
    """The demo's spec and the toy zoo are package data: from a folder with neither, `dxray
    demo` audits (here two targets: a partial run) and writes the catalog and the report."""
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    demo = dxray(installed, elsewhere, "demo", "--limit", "2")
    assert demo.returncode == 0, demo.stderr[-3000:] + demo.stdout[-2000:]
    assert (elsewhere / "catalogs" / "toy" / "report.html").is_file()
    assert "report:  catalogs/toy/report.html" in demo.stdout
    assert (installed / "dxray" / "toyworld" / "zoo" / "default" / "classifier").is_dir()
    assert not (elsewhere / "dxray").exists()  # the zoo was read from the package
