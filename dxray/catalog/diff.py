"""Checkpoint diff: how the verdicts of two audit runs differ, target by target.

The typical use: audit checkpoint A, retrain to remove a bias, audit checkpoint B, then ask
which class shortcuts appeared or vanished, with their lifts before and after; which units
became spurious ("new spurious") or stopped ("resolved"); and how each class's explanation,
probability and attribute-probe rates moved. The words mean what they mean everywhere in
dxray: a class's shortcut is a finding of the class-shortcut test; a unit's verdict is by
intervention; whether a class's explanation shows its object is neither. The queries are
dxray/catalog/sql/diff.sql and dxray/catalog/sql/shortcut_diff.sql.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from dxray.catalog.views import sql_file

CHANGES = ("new spurious", "resolved", "changed", "unchanged", "added", "removed")
SHORTCUT_CHANGES = ("appeared", "vanished", "kept")


@dataclass
class RunDiff:
    """One row per target of either run (see dxray/catalog/sql/diff.sql for the columns), plus a
    summary: the runs compared, counts per change, classes with a shortcut finding and
    spurious units before and after."""

    from_run: str
    to_run: str
    table: pa.Table
    summary: dict
    # Class shortcuts that are a finding in either run: appeared / vanished / kept, with the
    # lift before and after (dxray/catalog/sql/shortcut_diff.sql); empty without the shortcut test
    shortcuts: pa.Table | None = None

    @property
    def rows(self) -> list[dict]:
        return self.table.to_pylist()

    def by_target(self) -> dict[str, dict]:
        return {row["target_id"]: row for row in self.rows}


def _run_info(con: duckdb.DuckDBPyConnection, run_id: str) -> dict:
    rows = con.sql(
        "SELECT run_id, name, classifier, classifier_sha256, created_at FROM runs "
        "WHERE run_id = $run_id",
        params={"run_id": run_id},
    ).fetchall()
    targets = con.sql(
        "SELECT count(*) FROM target_summary WHERE run_id = $run_id", params={"run_id": run_id}
    ).fetchall()[0][0]
    if not rows and not targets:
        known = [r[0] for r in con.sql("SELECT DISTINCT run_id FROM audit ORDER BY 1").fetchall()]
        raise ValueError(f"run {run_id!r} is not in the catalog; runs with results: {known}")
    keys = ("run_id", "name", "classifier", "classifier_sha256", "created_at")
    info = dict(zip(keys, rows[0], strict=True)) if rows else {"run_id": run_id}
    info["targets"] = targets
    return info


def _classes_with_findings(con: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """How many classes of the run have a class-shortcut finding (0 without the test)."""
    return con.sql(
        "SELECT count(DISTINCT class_index) FROM class_shortcuts WHERE run_id = $run_id "
        "AND finding",
        params={"run_id": run_id},
    ).fetchall()[0][0]


def diff_runs(
    con: duckdb.DuckDBPyConnection, from_run: str, to_run: str, *, probe_threshold: float = 0.25
) -> RunDiff:
    """Compare run `from_run` (before) with `to_run` (after) on a `connect()`ed catalog.

    Per target: verdict before/after, the change kind, the spurious fraction, mean
    probability and its shift, and the probes whose rate moved by at least `probe_threshold`
    (largest first).
    """
    if not 0.0 <= probe_threshold <= 1.0:
        raise ValueError(f"probe_threshold is a rate difference in [0, 1]; got {probe_threshold}")
    before, after = _run_info(con, from_run), _run_info(con, to_run)
    table = con.sql(
        sql_file("diff.sql"),
        params={"from_run": from_run, "to_run": to_run, "threshold": probe_threshold},
    ).to_arrow_table()
    changes = Counter(table.column("change").to_pylist())
    kinds = table.column("kind").to_pylist()

    def count(column: str, value: str, kind: str) -> int:
        return sum(
            1
            for v, k in zip(table.column(column).to_pylist(), kinds, strict=True)
            if v == value and k == kind
        )

    shortcuts = con.sql(
        sql_file("shortcut_diff.sql"), params={"from_run": from_run, "to_run": to_run}
    ).to_arrow_table()
    moved = Counter(shortcuts.column("change").to_pylist())
    shifts = [abs(s) for s in table.column("probability_shift").to_pylist() if s is not None]
    summary = {
        "from_run": before,
        "to_run": after,
        "targets": table.num_rows,
        "changes": {change: changes.get(change, 0) for change in CHANGES},
        "classes_with_shortcuts_before": _classes_with_findings(con, from_run),
        "classes_with_shortcuts_after": _classes_with_findings(con, to_run),
        "spurious_units_before": count("verdict_before", "spurious", "unit"),
        "spurious_units_after": count("verdict_after", "spurious", "unit"),
        "mean_abs_probability_shift": sum(shifts) / len(shifts) if shifts else None,
        "probe_threshold": probe_threshold,
        "shortcuts": {change: moved.get(change, 0) for change in SHORTCUT_CHANGES},
    }
    return RunDiff(from_run, to_run, table, summary, shortcuts)
