"""Where a command may write what it made (a query's result, a report): never into a catalog.

A catalog is written only by dxray's writer. Its readers take every `part-*.parquet` under a
table's `run_id=` folders, so a file written there by hand (`dxray sql --format parquet --out
CATALOG/shortcut_pool/run_id=R/part-X.parquet`) would be read back as rows. A catalog's folders
(its tables, diffs, gates, quarantine, superseded rows) are therefore off limits to `--out`; a file at the
catalog's top level (`CATALOG/report.html`, as `dxray demo` writes) is not read as data and is
allowed.

    check_output(path, suffixes=(".html", ".htm"))   # raises OutputRefused with what to do
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from dxray.catalog.health import QUARANTINE_DIR
from dxray.catalog.schema import TABLES
from dxray.catalog.writer import SUPERSEDED_DIR

# Folders a catalog holds besides its tables: scans' diffs and gate results, rows moved aside.
CATALOG_FOLDERS = (*TABLES, QUARANTINE_DIR, SUPERSEDED_DIR, "diffs", "gates")


class OutputRefused(ValueError):
    """An output path that would overwrite something it should not."""


def is_catalog(folder: Path) -> bool:
    """Whether `folder` holds a dxray catalog: a table folder with a run partition in it."""
    for table in TABLES:
        path = folder / table
        if path.is_dir() and any(p.name.startswith("run_id=") for p in path.iterdir()):
            return True
    return False


def catalog_holding(path: Path) -> Path | None:
    """The catalog whose folders `path` would be written into, or None."""
    path = Path(os.path.abspath(path))
    for folder in path.parents:
        inner = path.relative_to(folder).parts
        if len(inner) > 1 and inner[0] in CATALOG_FOLDERS and is_catalog(folder):
            return folder
    return None


def check_output(path: str | os.PathLike, suffixes: Sequence[str] = ()) -> Path:
    """`path` if a command may write its result there; OutputRefused otherwise: a folder, a
    name without one of `suffixes` (so that `--out spec.yaml` cannot overwrite a spec), or a
    place inside a catalog's folders."""
    path = Path(path)
    if path.is_dir():
        raise OutputRefused(f"--out {path} is a folder: give a file name, e.g. {path}/result")
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputRefused(
            f"--out {path} must end in {' or '.join(suffixes)} (an output never overwrites a "
            "file of another kind, such as a spec)"
        )
    catalog = catalog_holding(path)
    if catalog is not None:
        raise OutputRefused(
            f"--out {path} is inside the catalog {catalog}, which only dxray's audits write "
            "(its readers would take the file for data): write it elsewhere"
        )
    return path
