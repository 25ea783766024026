"""The report's reads of the catalog: the named queries of dxray/catalog/sql/report.sql, run as rows.

Contract: `queries()` is {name: SQL} of dxray/catalog/sql/report.sql; `query_rows` runs one of them
(binding $run_id when the query has it) on a connection from `dxray.catalog.connect` and
returns its rows as dicts. Nothing here writes.
"""

from __future__ import annotations

from dxray.catalog.views import named_queries


def queries() -> dict[str, str]:
    """The report's named queries (dxray/catalog/sql/report.sql)."""
    return named_queries("report.sql")


def query_rows(con, query: str, run_id: str | None = None) -> list[dict]:
    """The rows of `query` as dicts, with $run_id bound to `run_id` if the query uses it."""
    params = {"run_id": run_id} if "$run_id" in query else None
    return con.sql(query, params=params).to_arrow_table().to_pylist()
