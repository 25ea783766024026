"""What every command shares: one line for a bad input (`fail`), the `--debug` switch that
turns it into a traceback, and the errors that count as a bad input (`user_errors`)."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

# Set by --debug (`dxray.cli.main`): an unexpected error shows its traceback instead of one
# line, and `fail` shows the traceback of the error it reports.
_debug = False


def set_debug(on: bool) -> None:
    global _debug
    _debug = on


def debugging() -> bool:
    """Whether this command runs with --debug."""
    return _debug


def user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean a bad input (exit 2), not a bug."""
    from dxray.models.classifier import ClassifierLoadError
    from dxray.models.generator import GeneratorLoadError
    from dxray.models.segmenter import SegmenterLoadError
    from dxray.run.lock import Locked
    from dxray.run.provenance import StaleRun
    from dxray.spec.model import SpecError

    return (
        SpecError,
        Locked,
        StaleRun,
        ClassifierLoadError,
        GeneratorLoadError,
        SegmenterLoadError,
    )


def fail(message: str) -> NoReturn:
    """One line for a bad input, exit 2; with --debug, the traceback of the error being
    handled first."""
    if _debug and sys.exc_info()[1] is not None:
        import traceback

        traceback.print_exc()
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def verbose_option():
    """`--verbose` of the commands that run audits (audit, demo, eval, sweep): library output
    goes to a log in any case; this shows it on the terminal too."""
    return typer.Option(
        False, "--verbose", help="Also show what Ray and the models print (always in the log)."
    )


def fresh_option():
    """`--fresh` of the commands that run audits (audit, demo, eval)."""
    return typer.Option(
        False,
        "--fresh",
        help="Compute the run again: its earlier rows move to <catalog>/_superseded/.",
    )


def resume_stale_option():
    """`--resume-stale` of audit and eval (`dxray.run.provenance`)."""
    return typer.Option(
        False,
        "--resume-stale",
        help="Resume a run that other dxray code or model files computed (the rows mix).",
    )


def resume_mode(fresh: bool, resume_stale: bool = False, default: str = "check") -> str:
    """The `run_audit(resume=...)` that --fresh and --resume-stale ask for."""
    if fresh and resume_stale:
        fail("--fresh computes the run again, --resume-stale keeps its rows: give one")
    return "fresh" if fresh else "any" if resume_stale else default
