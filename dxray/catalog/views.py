"""A DuckDB connection over a catalog folder, with the standard views of sql/views.sql.

Each table is read as a pyarrow dataset over its committed files (`part-*.parquet`; temp files
of a write in progress are not listed) with the table's schema, so a missing or empty table is
an empty typed table, and a file written before a column was added reads that column as null.
DuckDB scans these datasets with projection and filter pushdown: a query that does not select
`png` never reads the image blobs. A connection sees the files present when it was opened.
"""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow.dataset as ds

from dxray.catalog.schema import TABLES, schema
from dxray.catalog.writer import part_files

# The SQL of the views, the report, the diffs and the gate: package data (dxray/catalog/sql/),
# read through importlib.resources so that an installed dxray opens catalogs too.
SQL_PACKAGE = "dxray.catalog"
SQL_FOLDER = "sql"

VIEWS = (
    "runs",
    "runs_log",
    "explanations_log",
    "verdicts_log",
    "images_log",
    "explanations",
    "verdicts",
    "images",
    "audit",
    "probe_scores",
    "probe_rates",
    "target_summary",
    "class_summary",
    "unit_summary",
    "labels",
    "label_agreement",
    "shortcut_images",
    "shortcuts",
    "shortcut_pool",
    "shortcut_candidates",
    "class_shortcuts",
    "unit_shortcuts",
    "eval_metrics",
    "eval_neurons",
    "eval_classes",
)

# Applied, in this order, to a read-only connection once its views exist. Measured on DuckDB
# 2.0.1: with external access off, COPY ... TO, ATTACH, EXPORT DATABASE, INSTALL/LOAD,
# read_csv/read_parquet/glob of any path all fail with a PermissionException, while the
# registered Arrow datasets (read by pyarrow, outside DuckDB's file system) still scan; the
# lock makes `SET enable_external_access = true` (and RESET) fail.
LOCKDOWN = (
    "SET python_enable_replacements = false",  # no scans of stray Python variables by name
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)


@cache
def sql_file(name: str) -> str:
    """The text of dxray/catalog/sql/<name> (package data)."""
    try:
        return resources.files(SQL_PACKAGE).joinpath(SQL_FOLDER, name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"dxray/catalog/sql/{name} is missing from the installed dxray package: reinstall "
            "dxray (the SQL is package data, see [tool.setuptools.package-data] in pyproject)"
        ) from None


def named_queries(name: str) -> dict[str, str]:
    """The queries of sql/<name>, each introduced by a line "-- name: <query name>"."""
    queries: dict[str, list[str]] = {}
    current = None
    for line in sql_file(name).splitlines():
        if line.startswith("-- name:"):
            current = line.removeprefix("-- name:").strip()
            queries[current] = []
        elif current is not None:
            queries[current].append(line)
    return {key: "\n".join(lines).strip() for key, lines in queries.items()}


def dataset(root: str | os.PathLike, table_name: str) -> ds.Dataset:
    """The committed files of one table as a pyarrow dataset with the table's schema."""
    files = [str(p) for p in part_files(root, table_name)]
    return ds.dataset(files, schema=schema(table_name), format="parquet")


def connect(root: str | os.PathLike, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the catalog's views (see sql/views.sql).

    `read_only=True` also cuts the connection off from the file system (see LOCKDOWN): no SQL
    run on it can read or write a file, attach a database or load an extension.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"catalog root {root} is a file; give the catalog folder")
    con = duckdb.connect()
    for name in TABLES:
        con.register(f"raw_{name}", dataset(root, name))
    for statement in con.extract_statements(sql_file("views.sql")):
        con.execute(statement)
    if read_only:
        for setting in LOCKDOWN:
            con.execute(setting)
    return con
