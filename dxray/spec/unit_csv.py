"""The spec's unit CSV: where it is (relative to the spec file) and that it reads, in either
format of `dxray.labels`. Which targets it adds to a run: `dxray.run.targets`."""

from __future__ import annotations

from pathlib import Path

from dxray.labels import UnitCsv, UnitCsvError, read_unit_csv
from dxray.spec.model import AuditSpec, SpecError


def unit_csv_path(spec: AuditSpec) -> Path | None:
    """The unit CSV's path (relative to the spec file, where there is one), or None."""
    if spec.targets.units.csv is None:
        return None
    path = Path(spec.targets.units.csv).expanduser()
    if not path.is_absolute() and spec.source_path is not None:
        path = spec.source_path.parent / path
    return path


def read_units(spec: AuditSpec) -> UnitCsv | None:
    """The spec's unit CSV, read and checked (either format of `dxray.labels`), or None when
    the spec has none. Errors are SpecErrors naming the spec, the CSV, the line and column."""
    path = unit_csv_path(spec)
    if path is None:
        return None
    source = str(spec.source_path) if spec.source_path is not None else "<dict>"
    try:
        return read_unit_csv(path)
    except UnitCsvError as err:
        raise SpecError(f"{source}: targets.units.csv: {err}") from err
