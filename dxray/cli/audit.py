"""`dxray audit` and `dxray demo`: run an audit (or resume it) with a bar per stage, then say
what it found, findings first. What Ray and the models print goes to the catalog's log.
"""

from __future__ import annotations

from pathlib import Path

import typer

from dxray.cli.common import (
    fail,
    fresh_option,
    resume_mode,
    resume_stale_option,
    user_errors,
    verbose_option,
)


def audit(
    spec_path: Path = typer.Argument(..., help="An audit spec, e.g. pipelines/toy.yaml."),
    catalog: str = typer.Option(None, help="Override output.catalog."),
    run_id: str = typer.Option(None, help="Override output.run_id (default: derived)."),
    address: str = typer.Option(None, help='Ray address; "auto" inside `ray job submit`.'),
    workers: int = typer.Option(None, help="Override ray.workers."),
    iterations: int = typer.Option(None, help="Override engine.iterations."),
    limit: int = typer.Option(
        None, min=1, help="Compute at most this many targets (a rerun resumes)."
    ),
    fresh: bool = fresh_option(),
    resume_stale: bool = resume_stale_option(),
    verbose: bool = verbose_option(),
) -> None:
    """Run an audit, or resume it: targets already in the catalog are skipped (if this dxray
    code computed them: see --fresh). Prints what it will do, a bar per stage and the outcome;
    what Ray and the models print goes to <catalog>/logs/audit-<time>.log.

    Example: dxray audit pipelines/toy.yaml --workers 2
    """
    import logging

    from dxray.spec.model import SpecError
    from dxray.spec.parse import load_spec, with_overrides

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = {
        "output.catalog": catalog,
        "output.run_id": run_id,
        "ray.address": address,
        "ray.workers": workers,
        "engine.iterations": iterations,
    }
    try:
        spec = load_spec(spec_path)
        spec = with_overrides(spec, **{k: v for k, v in overrides.items() if v is not None})
    except (SpecError, OSError) as err:
        fail(str(err))

    resume = resume_mode(fresh, resume_stale)
    try:
        summary = _run_quietly(spec, "audit", verbose, limit=limit, resume=resume)
    except user_errors() as err:  # found before Ray starts or anything is written
        fail(str(err))
    typer.echo(
        f"run {summary.run_id}: {summary.computed} computed, {summary.skipped} already in the "
        f"catalog, {summary.total} in all, {summary.seconds:.0f} s -> {summary.catalog}"
    )
    _echo_answer(summary)
    _exit_for(summary)


def _run_quietly(spec, command: str, verbose: bool, **options):
    """`run_audit` with a bar per stage on the terminal, and what Ray and the models print
    in <catalog>/logs/<command>-<time>.log (also on the terminal with `verbose`)."""
    from dxray.run.console import library_output, log_path
    from dxray.run.pipeline import run_audit
    from dxray.run.preflight import check_before_models
    from dxray.run.progress import TerminalProgress

    check_before_models(spec)  # bad inputs: one line before the log (or anything) is made
    log = log_path(spec.output.catalog, command)
    with library_output(log, verbose=verbose) as terminal:
        # Live bars only when nothing else writes to the terminal meanwhile
        live = False if verbose else None
        with TerminalProgress(terminal, log=log, live=live) as progress:
            return run_audit(spec, stages=progress, **options)


def _exit_for(summary) -> None:
    """Say a run that is not finished, and exit 1 when targets failed (cron and CI notice)."""
    if summary.status == "finished":
        return
    if summary.status == "partial":
        typer.secho(f"run {summary.run_id} is partial: {summary.error}", fg="yellow")
        return
    typer.secho(f"run {summary.run_id} failed: {summary.error}", fg="red", err=True)
    raise typer.Exit(1)


def _echo_answer(summary) -> None:
    """What the run found, findings first (`dxray.catalog.findings`), for `audit` and `demo`:
    the class-shortcut findings, the spurious units, then the leads, apart."""
    from dxray.catalog.findings import read_answer
    from dxray.catalog.views import connect

    sc = summary.shortcuts
    for problem in (sc.problems + sc.notes) if sc is not None else []:
        typer.secho(f"shortcuts: {problem}", fg=typer.colors.YELLOW, err=True)
    con = connect(summary.catalog, read_only=True)
    try:
        answer = read_answer(con, summary.run_id)
    finally:
        con.close()
    typer.echo("")
    colours = {"finding": typer.colors.RED, "unit": typer.colors.RED, "lead": None}
    for kind, line in answer.tagged_lines():
        typer.secho(line, fg=colours.get(kind), bold=kind == "head")


# {run}: the demo's run id. A catalog keeps every run; an edited spec is a new run beside the old.
DEMO_QUERIES = (
    "SELECT class_name, attribute, round(lift, 2) AS lift, round(low, 2) AS low, "
    "round(high, 2) AS high FROM class_shortcuts WHERE run_id = '{run}' AND finding",
    "SELECT class_name, shortcuts, object_in_explanation FROM class_summary WHERE run_id = '{run}'",
    "SELECT unit, class_name, verdict, judged_by, unit_factor, round(unit_margin, 2) AS margin "
    "FROM unit_summary WHERE run_id = '{run}'",
    "SELECT target_id, probe, rate FROM probe_rates WHERE run_id = '{run}' AND rate >= 0.5 "
    "ORDER BY rate DESC",
    "SELECT run_id, status, count(*) FROM explanations GROUP BY ALL",
)


def demo(
    spec_path: Path = typer.Option(
        None,
        "--spec",
        help="The audit to run (default: pipelines/toy.yaml, or the installed copy).",
    ),
    out: Path = typer.Option(None, help="The HTML report (default: <catalog>/report.html)."),
    limit: int = typer.Option(
        None, min=1, help="Compute at most this many targets (a partial run; rerun to finish)."
    ),
    fresh: bool = fresh_option(),
    verbose: bool = verbose_option(),
) -> None:
    """What `make demo` runs: the toy-world audit through Ray, its catalog and HTML report.
    What Ray and the models print goes to <catalog>/logs/demo-<time>.log. A demo run that
    other dxray code computed is computed again (its rows move to <catalog>/_superseded/).

    Example: dxray demo
    """
    import logging

    from dxray.report.page import write_report
    from dxray.spec.model import SpecError
    from dxray.toyworld.demo import demo_spec

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        spec = demo_spec(spec_path)
    except (SpecError, OSError) as err:
        fail(str(err))
    zoo = Path(str(spec.classifier.source)).parent
    if not zoo.is_dir():
        fail(f"the toy zoo is missing at {zoo}: train it with `dxray zoo train --out {zoo}`")

    resume = resume_mode(fresh, default="fresh-if-stale")
    try:
        summary = _run_quietly(spec, "demo", verbose, limit=limit, resume=resume)
    except user_errors() as err:
        fail(str(err))
    report = write_report(summary.catalog, out or summary.catalog / "report.html", summary.run_id)
    typer.echo("")
    typer.echo(
        f"audit {summary.run_id}: {summary.total} targets ({summary.computed} computed now, "
        f"{summary.skipped} already in the catalog) in {summary.seconds:.0f} s"
    )
    _echo_answer(summary)
    typer.echo("")
    typer.echo(f"catalog: {summary.catalog}")
    typer.echo(f"report:  {report}")
    typer.echo("explore it with SQL, e.g.:")
    command = dxray_command()
    for query in DEMO_QUERIES:
        typer.echo(f'  {command} sql {summary.catalog} "{query.format(run=summary.run_id)}"')


def dxray_command(argv0: str | None = None, cwd: Path | None = None) -> str:
    """How the user can run this dxray again: "dxray" when that is the one on PATH, else the
    script's path (relative to the working directory when inside it: ".venv/bin/dxray")."""
    import shutil
    import sys

    script = Path(argv0 or sys.argv[0]).resolve()
    on_path = shutil.which("dxray")
    if script.name != "dxray" or (on_path and Path(on_path).resolve() == script):
        return "dxray"
    try:
        return str(script.relative_to((cwd or Path.cwd()).resolve()))
    except ValueError:
        return str(script)
