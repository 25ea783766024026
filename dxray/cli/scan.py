"""`dxray scan`: audit every new checkpoint in a folder, diff (and with --gate, gate) it against
the one before; safe to run from cron (docs/SCANS.md).
"""

from __future__ import annotations

from pathlib import Path

import typer

from dxray.cli.common import fail


def scan(
    watch: str = typer.Option(..., help="A folder of checkpoints, or a glob (quote it)."),
    spec_path: Path = typer.Option(..., "--spec", help="The audit to run on each checkpoint."),
    catalog: str = typer.Option(None, help="Override output.catalog."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be audited."),
    gate: bool = typer.Option(
        False,
        "--gate",
        help="Gate each new checkpoint against the one before; exit 1 if one fails.",
    ),
) -> None:
    """Audit every checkpoint not yet audited (by content hash), then diff it against the one
    before. Idempotent and locked: safe to run from cron (docs/SCANS.md).

    Example: dxray scan --watch '/checkpoints/*' --spec pipelines/toy.yaml --gate
    """
    import logging

    from dxray.run.scan import CheckpointsFailed, main_scan
    from dxray.run.scan_gates import GatesFailed
    from dxray.spec.model import SpecError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main_scan(watch, spec_path, dry_run, catalog=catalog, echo=typer.echo, gate=gate)
    except (SpecError, FileNotFoundError, ValueError) as err:
        fail(str(err))
    except GatesFailed as err:
        typer.secho(f"gate failed: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except CheckpointsFailed as err:
        typer.secho(f"scan failed: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
