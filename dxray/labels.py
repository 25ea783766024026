"""Unit lists and human labels from CSV files: dxray's own format and Salient ImageNet's crowd
answers exactly as the authors publish them.

Two formats, told apart by their header:

- dxray's: `class_index,feature_index[,label]`, one row per unit (`label`: core or spurious,
  optional; other columns are ignored). The toy zoo's truth writes it (`units.csv`).
- Salient ImageNet's `mturk_results/discover_spurious_features.csv`:
  `WorkerId,Input.wordnet_id,Input.class_index,Input.feature_index,Input.feature_rank,
  Answer.main,Answer.confidence,Answer.reasons`, one row per worker answer, about 5 per
  (class, feature). `Answer.main` is main_object (the feature is the class's object: core),
  separate_object or background (spurious). A pair is spurious when most of its answers say
  so (the authors' rule: >= 3 of 5; 630 of their 5,000 pairs), core otherwise.

    table = read_unit_csv("discover_spurious_features.csv")
    table.units[0]   # UnitLabel(class_index=0, feature_index=1797, rank=1, label="core", ...)

Every problem is a `UnitCsvError` naming the file, the line and the column. The file's license
may forbid redistribution (Salient ImageNet's does): users download it, dxray never ships it.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dxray.yamlio import suggest

SIMPLE_COLUMNS = ("class_index", "feature_index")
MAX_CSV_BYTES = 64 << 20  # a unit CSV is read whole, before any model loads
MTURK_COLUMNS = ("WorkerId", "Input.wordnet_id", "Input.class_index", "Input.feature_index",
                 "Input.feature_rank", "Answer.main", "Answer.confidence", "Answer.reasons")  # fmt: skip
# Salient ImageNet's answers and what each says of the feature
ANSWERS = {"main_object": "core", "separate_object": "spurious", "background": "spurious"}
LABELS = ("core", "spurious")
CsvFormat = Literal["dxray", "salient-imagenet"]


class UnitCsvError(ValueError):
    """A unit CSV that cannot be used; the message names the file, line and column."""


@dataclass(frozen=True)
class UnitLabel:
    """One (class, feature) pair of a unit CSV, with its human label if the file has one."""

    class_index: int
    feature_index: int
    line: int  # where the pair first appears (1 = the header)
    label: str | None = None  # core | spurious | None (no label in the file)
    rank: int | None = None  # Salient ImageNet: the feature's rank among the class's top 5
    wordnet_id: str | None = None
    votes: dict[str, int] = field(default_factory=dict)  # answer -> count (Salient ImageNet)

    @property
    def answers(self) -> int:
        return sum(self.votes.values())


@dataclass(frozen=True)
class UnitCsv:
    path: Path
    format: CsvFormat
    units: list[UnitLabel]  # one per (class, feature), in order of first appearance

    @property
    def labelled(self) -> bool:
        return any(u.label is not None for u in self.units)


def read_unit_csv(path: str | Path) -> UnitCsv:
    """Read either format (see the module docstring)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CSV_BYTES:
            raise UnitCsvError(
                f"'{path}': {size:,} bytes is too large for a unit CSV (at most "
                f"{MAX_CSV_BYTES:,}; Salient ImageNet's answers are ~2 MB)"
            )
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            rows, starts, end = [], [], 0
            for record in reader:  # a quoted cell may span lines: keep where each record starts
                rows.append(record)
                starts.append(end + 1)
                end = reader.line_num
    except OSError as err:
        raise UnitCsvError(f"'{path}': cannot read the unit CSV ({err.strerror})") from err
    except (UnicodeDecodeError, csv.Error) as err:
        raise UnitCsvError(f"'{path}' is not a readable CSV: {err}") from err
    if not rows:
        raise UnitCsvError(f"'{path}' is empty: it needs a header line")
    header = [cell.strip() for cell in rows[0]]
    body = list(zip(starts[1:], rows[1:], strict=True))
    if not any(any(cell.strip() for cell in record) for _, record in body):
        raise UnitCsvError(f"'{path}' has a header and no unit: add one row per unit")
    if all(c in header for c in MTURK_COLUMNS[2:6]):
        return UnitCsv(path, "salient-imagenet", _salient(path, header, body))
    missing = [c for c in SIMPLE_COLUMNS if c not in header]
    if missing:
        hints = "".join(suggest(c, header) for c in missing)
        raise UnitCsvError(
            f"'{path}' line 1: the header lacks column(s) {missing}{hints}. A unit CSV is "
            f"either {','.join(SIMPLE_COLUMNS)}[,label] (one row per unit) or Salient "
            f"ImageNet's discover_spurious_features.csv as published ({','.join(MTURK_COLUMNS)})"
        )
    return UnitCsv(path, "dxray", _simple(path, header, body))


def _simple(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> list[UnitLabel]:
    at = {c: header.index(c) for c in header}
    units: dict[tuple[int, int], UnitLabel] = {}
    for line, record in rows:
        if not any(cell.strip() for cell in record):
            continue
        c = _index(path, line, "class_index", _cell(record, at["class_index"]))
        f = _index(path, line, "feature_index", _cell(record, at["feature_index"]))
        label = None
        if "label" in at:
            label = _cell(record, at["label"]).lower() or None
            if label is not None and label not in LABELS:
                raise UnitCsvError(
                    f"'{path}' line {line}, column label: {label!r} is not core or spurious"
                )
        units.setdefault((c, f), UnitLabel(c, f, line, label=label))
    return list(units.values())


def _salient(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> list[UnitLabel]:
    at = {c: header.index(c) for c in header}
    votes: dict[tuple[int, int], Counter] = {}
    first: dict[tuple[int, int], tuple[int, int, str]] = {}  # pair -> (line, rank, wordnet id)
    wordnet: dict[int, tuple[str, int]] = {}  # class -> (wordnet id, line)
    for line, record in rows:
        if not any(cell.strip() for cell in record):
            continue
        c = _index(path, line, "Input.class_index", _cell(record, at["Input.class_index"]))
        f = _index(path, line, "Input.feature_index", _cell(record, at["Input.feature_index"]))
        rank = _index(path, line, "Input.feature_rank", _cell(record, at["Input.feature_rank"]))
        answer = _cell(record, at["Answer.main"])
        if answer not in ANSWERS:
            raise UnitCsvError(
                f"'{path}' line {line}, column Answer.main: {answer!r} is not one of "
                f"{', '.join(ANSWERS)}" + suggest(answer, list(ANSWERS))
            )
        wnid = _cell(record, at["Input.wordnet_id"]) if "Input.wordnet_id" in at else ""
        if wnid:
            seen = wordnet.setdefault(c, (wnid, line))
            if seen[0] != wnid:
                raise UnitCsvError(
                    f"'{path}' line {line}, column Input.wordnet_id: class {c} is {wnid!r} "
                    f"here but {seen[0]!r} on line {seen[1]}"
                )
        votes.setdefault((c, f), Counter())[answer] += 1
        first.setdefault((c, f), (line, rank, wnid))
    units = []
    for (c, f), counts in votes.items():
        line, rank, wnid = first[(c, f)]
        spurious = sum(n for a, n in counts.items() if ANSWERS[a] == "spurious")
        label = "spurious" if 2 * spurious > sum(counts.values()) else "core"
        units.append(
            UnitLabel(c, f, line, label=label, rank=rank, wordnet_id=wnid or None,
                      votes={a: counts.get(a, 0) for a in ANSWERS})
        )  # fmt: skip
    return units


def _cell(record: list[str], position: int) -> str:
    return record[position].strip() if position < len(record) else ""


def _index(path: Path, line: int, column: str, cell: str) -> int:
    if not (cell.isascii() and cell.isdigit()):
        raise UnitCsvError(
            f"'{path}' line {line}, column {column}: expected an integer >= 0, got {cell!r}"
        )
    return int(cell)
