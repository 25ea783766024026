"""dxray: audit image classifiers for spurious features with diffusion models.

\b
  dxray audit pipelines/toy.yaml                  run (or resume) an audit on Ray
  dxray sql catalogs/toy "SELECT class_name, attribute, lift FROM class_shortcuts WHERE finding"
  dxray report catalogs/toy --out report.html     one self-contained HTML file
  dxray score catalogs/salient-imagenet           unit verdicts vs the crowd's labels
  dxray diff catalogs/toy --from RUN_A --to RUN_B what changed between two checkpoints
  dxray gate catalogs/toy --baseline A --candidate B   exit 1 if B gained a shortcut
  dxray bench engine                              ms per target-iteration, B=1 vs B=16
"""

from __future__ import annotations

import os

# Before torch is imported (its OpenMP runtime reads this once): the driver's idle threads
# sleep instead of spinning. On a busy machine spinning threads made a demo's planning (unit
# ranking on the driver) crawl: 14 CPU seconds in 4 minutes beside an evaluation and a sweep
# on 2 cores, where it takes 3.5 s alone. The hosts get the same (dxray.run.session).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from dxray.cli import audit, bench, catalog, common, convert, evaluate, scan, zoo  # noqa: E402

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False
)

# The commands in the order `dxray --help` lists them, then the groups of subcommands.
app.command()(audit.audit)
app.command()(catalog.sql)
app.command(name="eval")(evaluate.eval_)
app.command()(evaluate.score)
app.command()(evaluate.sweep)
app.command()(catalog.report)
app.command()(catalog.diff)
app.command()(catalog.gate)
app.command()(scan.scan)
app.command()(audit.demo)
app.add_typer(bench.bench_app, name="bench")
app.add_typer(catalog.catalog_app, name="catalog")
app.add_typer(convert.convert_app, name="convert")
app.add_typer(zoo.zoo_app, name="zoo")


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error."),
) -> None:
    common.set_debug(debug)


def main() -> None:
    """The `dxray` command: every error is one line on stderr (exit 2 for a bad input, 1 for
    anything else); `dxray --debug ...` shows the traceback of an unexpected one."""
    from dxray.run.session import Interrupted

    try:
        app()
    except (Interrupted, KeyboardInterrupt) as err:
        code = err.exit_code if isinstance(err, Interrupted) else 130
        typer.secho("interrupted: rerun the same command to resume", fg="yellow", err=True)
        raise SystemExit(code) from None
    except Exception as err:  # noqa: BLE001 - the one place that turns errors into a line
        if common.debugging():
            raise
        from dxray.text import first_line

        typer.secho(
            f"error: {type(err).__name__}: {first_line(err)}",
            fg=typer.colors.RED,
            err=True,
        )
        typer.echo("(rerun as `dxray --debug ...` for the traceback)", err=True)
        raise SystemExit(2 if isinstance(err, common.user_errors()) else 1) from None
