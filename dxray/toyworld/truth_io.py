"""How the ground truth is stored: the two tables as Parquet and the neuron table's units as
`units.csv`, and back; and the tables as text for progress output.

    write_truth("zoo/truth", class_table, neuron_table)   # + units.csv, for an audit spec
    class_table, neuron_table = read_truth("zoo/truth")

`write_truth` writes `class_truth.parquet`, `neuron_truth.parquet` (schemas
`CLASS_TRUTH_SCHEMA` and `NEURON_TRUTH_SCHEMA` of dxray/toyworld/truth.py, which measures them)
and `units.csv` (`class_index,feature_index`, one row per neuron-truth unit), the format of an
audit spec's `targets.units.csv`, so an audit can explain exactly the units the truth labels
(with `targets.units.layer: penultimate`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dxray.text import text_table

CLASS_TRUTH_FILE = "class_truth.parquet"
NEURON_TRUTH_FILE = "neuron_truth.parquet"
UNITS_FILE = "units.csv"  # the neuron table's units, as an audit spec's targets.units.csv
UNITS_COLUMNS = ("class_index", "feature_index")


def write_truth(
    out_dir: str | Path,
    class_table: pa.Table,
    neuron_table: pa.Table,
    *,
    classes: Sequence[str] | None = None,
) -> Path:
    """Write both tables as Parquet (`class_truth.parquet`, `neuron_truth.parquet`) and the
    neuron table's units as `units.csv` in `out_dir`. `classes` is the world's class order, for
    the CSV's class_index (default: the order in which the class table lists its classes,
    which for `compute_truth`'s table is the world's)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(class_table, out / CLASS_TRUTH_FILE)
    pq.write_table(neuron_table, out / NEURON_TRUTH_FILE)
    if classes is None:
        classes = list(dict.fromkeys(class_table.column("class").to_pylist()))
    write_units_csv(out / UNITS_FILE, neuron_table, classes)
    return out


def unit_pairs(neuron_table: pa.Table, classes: Sequence[str]) -> list[tuple[int, int]]:
    """(class_index, channel) of each unit of the neuron table, in table order, each once.
    Every unit must be on one layer, since a unit CSV gives channels only."""
    index = {name: i for i, name in enumerate(classes)}
    pairs, layers = [], set()
    for row in neuron_table.select(["class", "unit"]).to_pylist():
        if row["class"] not in index:
            raise ValueError(f"neuron truth names class {row['class']!r}, not one of {classes}")
        layer, _, channel = row["unit"].rpartition(":")
        layers.add(layer)
        pairs.append((index[row["class"]], int(channel)))
    if len(layers) > 1:
        raise ValueError(f"a unit CSV holds channels of one layer; the truth has {sorted(layers)}")
    return list(dict.fromkeys(pairs))


def write_units_csv(path: str | Path, neuron_table: pa.Table, classes: Sequence[str]) -> Path:
    """The neuron table's units as `class_index,feature_index` lines: the format of an audit
    spec's targets.units.csv (read by dxray.spec, with targets.units.layer = the units' layer)."""
    path = Path(path)
    lines = [",".join(UNITS_COLUMNS)]
    lines += [f"{c},{j}" for c, j in unit_pairs(neuron_table, classes)]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_truth(out_dir: str | Path) -> tuple[pa.Table, pa.Table]:
    """Read back the two tables `write_truth` wrote (class level, neuron level)."""
    out = Path(out_dir)
    return pq.read_table(out / CLASS_TRUTH_FILE), pq.read_table(out / NEURON_TRUTH_FILE)


def describe(rows: Sequence[Mapping] | pa.Table, columns: Sequence[str]) -> str:
    """A plain-text table of `columns`, for progress output and reports."""
    if isinstance(rows, pa.Table):
        rows = rows.to_pylist()

    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    return "\n".join(text_table(columns, [[cell(r[c]) for c in columns] for r in rows]))
