"""The spec's unit CSV: where it is (relative to the spec file) and that it reads, in either
format of `dxray.labels`. Which targets it adds to a run: `dxray.run.targets`."""

from __future__ import annotations

from functools import lru_cache
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
    the spec has none. Errors are SpecErrors naming the spec, the CSV, the line and column.
    An audit asks for it several times (loading the spec, the preflight, planning, the labels
    it stores); a file is parsed once per version (path, size, mtime)."""
    path = unit_csv_path(spec)
    if path is None:
        return None
    source = str(spec.source_path) if spec.source_path is not None else "<dict>"
    try:
        stat = path.stat()
    except OSError:
        stat = None  # read_unit_csv says why it cannot be read
    try:
        if stat is None:
            return read_unit_csv(path)
        return _read_version(str(path), stat.st_size, stat.st_mtime_ns)
    except UnitCsvError as err:
        raise SpecError(f"{source}: targets.units.csv: {err}") from err


@lru_cache(maxsize=8)
def _read_version(path: str, size: int, mtime_ns: int) -> UnitCsv:
    """One version of a CSV file, parsed once (`size` and `mtime_ns` key the version)."""
    return read_unit_csv(Path(path))
