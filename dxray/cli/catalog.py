"""Commands that read a catalog: `dxray sql`, `report`, `diff`, `gate` (the release gate), and
`dxray catalog check` (unreadable files, quarantined on request).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from dxray.cli.common import fail


def sql(
    catalog: Path = typer.Argument(..., help="A catalog folder, e.g. catalogs/toy."),
    query: str = typer.Argument(..., help="One read-only query (SELECT, WITH, DESCRIBE, ...)."),
    fmt: str = typer.Option("table", "--format", help="table | csv | json | parquet"),
    out: Path = typer.Option(None, help="Write the result here instead of printing it."),
    limit: int = typer.Option(100, min=1, help="Rows shown by the table format."),
) -> None:
    """Query a catalog with DuckDB SQL, read-only. Views: class_shortcuts (what each class
    relies on), class_summary, unit_summary, audit, runs, probe_rates, shortcuts,
    shortcut_images, shortcut_pool, shortcut_candidates, labels, label_agreement,
    explanations, verdicts, images (and *_log: every row), eval_metrics, eval_neurons,
    eval_classes (dxray/catalog/sql/views.sql; docs/PLATFORM.md).

    Example: dxray sql catalogs/toy "SELECT class_name, shortcuts FROM class_summary"
    """
    from dxray.catalog.sql import SqlRefused, run_sql

    if fmt not in ("table", "csv", "json", "parquet"):
        fail(f"--format must be table, csv, json or parquet, not {fmt!r}")
    if fmt == "parquet" and out is None:
        fail("--format parquet needs --out FILE")
    try:
        result = run_sql(catalog, query, fmt, out, limit=limit)
    except SqlRefused as err:
        fail(str(err))
    except Exception as err:  # noqa: BLE001 - DuckDB's own message says what is wrong
        fail(f"{type(err).__name__}: {err}")
    if out is not None:
        typer.echo(f"wrote {result}")
    else:
        sys.stdout.write(result if result.endswith("\n") else result + "\n")


def report(
    catalog: Path = typer.Argument(..., help="A catalog folder."),
    out: Path = typer.Option(Path("report.html"), help="The HTML file to write."),
    run: str = typer.Option(None, help="The run to report (default: the latest)."),
    diff_from: str = typer.Option(None, help="Also show what changed since this run."),
) -> None:
    """Write the bias report of one run: one self-contained HTML file.

    Example: dxray report catalogs/toy --out toy-report.html
    """
    from dxray.report.page import write_report

    try:
        path = write_report(catalog, out, run, diff_from=diff_from)
    except (ValueError, LookupError) as err:
        fail(str(err))
    typer.echo(f"wrote {path}")


def diff(
    catalog: Path = typer.Argument(..., help="A catalog folder."),
    from_run: str = typer.Option(..., "--from", help="The earlier run (checkpoint)."),
    to_run: str = typer.Option(..., "--to", help="The later run."),
    threshold: float = typer.Option(0.25, help="Report probe-rate shifts at least this large."),
) -> None:
    """What changed between two runs: new spurious features, resolved ones, shifts.

    Example: dxray diff catalogs/toy --from toy-aaaa --to toy-bbbb
    """
    from dxray.catalog.diff import diff_runs
    from dxray.catalog.views import connect

    con = connect(catalog, read_only=True)
    try:
        result = diff_runs(con, from_run, to_run, probe_threshold=threshold)
    except (ValueError, LookupError) as err:
        fail(str(err))
    finally:
        con.close()
    for key, value in result.summary.items():
        typer.echo(f"{key}: {value}")
    # What a release cares about first: shortcuts, then units, then class explanations.
    for row in result.shortcuts.to_pylist() if result.shortcuts is not None else []:
        typer.echo(
            f"  shortcut {row['class_name']} <- {row['attribute']}: {row['change']}, lift "
            f"{_nats(row['lift_before'])} -> {_nats(row['lift_after'])}"
        )
    for row in sorted(result.rows, key=lambda r: r["kind"] != "unit"):
        if row["change"] == "unchanged":
            continue
        if row["kind"] == "unit":
            what = f"unit {row['unit']}" + (f" ({row['class_name']})" if row["class_name"] else "")
            before, after = row["verdict_before"], row["verdict_after"]
        else:
            what = f"class {row['class_name']} explanation, object"
            before, after = row["object_before"], row["object_after"]
        typer.echo(f"  {what}: {row['change']}, {before} -> {after}")


def _nats(value) -> str:
    from dxray.text import MISSING

    return MISSING if value is None else f"{value:.2f}"


def gate(
    catalog: Path = typer.Argument(..., help="A catalog folder holding both runs."),
    baseline: str = typer.Option(..., help="The run of the release the candidate replaces."),
    candidate: str = typer.Option(..., help="The run of the checkpoint to release."),
    spec_path: Path = typer.Option(
        None, "--spec", help="Thresholds from this spec's gate: (default: the candidate's spec)."
    ),
    margin: float = typer.Option(None, help="Override gate.lift_margin (nats, >= 0)."),
    units: bool = typer.Option(None, "--units/--no-units", help="Override gate.units."),
    allow_partial: bool = typer.Option(
        False, "--allow-partial", help="Gate runs that are not finished (what they lack passes)."
    ),
    json_out: Path = typer.Option(None, "--json", help="Also write the result as JSON here."),
    junit_out: Path = typer.Option(
        None, "--junit", help="Also write JUnit XML here: a test case per shortcut and unit."
    ),
) -> None:
    """Release gate: exit 1 when the candidate gained a shortcut finding or a spurious unit,
    or a kept shortcut grew beyond both intervals by more than the margin; 0 when it passes;
    2 on bad input (docs/SCANS.md).

    Example: dxray gate catalogs/toy --baseline toy-aaaa --candidate toy-bbbb --junit gate.xml
    """
    from dxray.catalog.gate import GateInputError, gate_runs
    from dxray.catalog.gate_render import render_text, to_json_text, to_junit
    from dxray.catalog.views import connect
    from dxray.spec.model import SpecError
    from dxray.spec.parse import load_spec

    if not catalog.is_dir():
        fail(f"catalog {catalog} is not a folder")
    thresholds = None
    try:
        thresholds = load_spec(spec_path).gate if spec_path is not None else None
    except (SpecError, OSError) as err:
        fail(str(err))
    con = connect(catalog, read_only=True)
    try:
        result = gate_runs(
            con, baseline, candidate, thresholds=thresholds,
            thresholds_from=str(spec_path) if spec_path is not None else None,
            lift_margin=margin, units=units, allow_partial=allow_partial,
        )  # fmt: skip
    except GateInputError as err:
        fail(str(err))
    finally:
        con.close()
    for path, text in ((json_out, to_json_text), (junit_out, to_junit)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text(result) + "\n", encoding="utf-8")
    typer.echo(render_text(result))
    if not result.passed:
        raise typer.Exit(1)


catalog_app = typer.Typer(no_args_is_help=True, help="Look after a catalog folder.")


@catalog_app.command("check")
def catalog_check(
    catalog: Path = typer.Argument(..., help="A catalog folder, e.g. catalogs/toy."),
    deep: bool = typer.Option(False, help="Read every row, not only each file's footer."),
    quarantine: bool = typer.Option(
        False, help="Move unreadable files to <catalog>/_quarantine/ (nothing is deleted)."
    ),
) -> None:
    """List the catalog's unreadable Parquet files (readers already leave them out, with a
    warning); exits 1 while any is left in place.

    Example: dxray catalog check catalogs/toy --quarantine
    """
    from dxray.catalog import health

    if not catalog.is_dir():
        fail(f"catalog {catalog} is not a folder")
    broken = health.broken_files(catalog, deep=deep)
    for item in broken:
        typer.echo(f"unreadable: {item.path} ({item.reason})")
    if not broken:
        files = len(health.committed_files(catalog))
        typer.echo(
            f"{catalog}: {files} files, all readable" + (" (every row read)" if deep else "")
        )
        return
    if not quarantine:
        typer.echo(f"{len(broken)} unreadable file(s); --quarantine moves them aside")
        raise typer.Exit(1)
    for target in health.quarantine(catalog, broken):
        typer.echo(f"moved to {target}")
    typer.echo(
        f"{len(broken)} file(s) quarantined: their rows are gone from the views; rerunning the "
        "audit recomputes the targets of a quarantined explanations file"
    )
