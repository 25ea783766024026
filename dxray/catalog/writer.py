"""Appending results to the catalog: one Parquet file per batch, written atomically.

Layout: `<root>/<table>/run_id=<id>/part-<uuid>.parquet`. A file is written to a hidden temp
name (`.part-<uuid>.parquet.tmp`) in the same folder and then renamed with `os.replace`, so
a reader sees either the whole file or nothing; readers list only `part-*.parquet`, so a temp
file left by a crash is never read. Files are appended, never rewritten: a retried target
adds a row, and the views pick the best row per (run_id, target_id, seed).
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dxray.catalog.health import readable
from dxray.catalog.schema import SchemaError, check_run_id, schema, validate

# Statuses that resume retries by default: an "error" is an exception (out of memory, a lost
# worker, a bad input) that may well pass on a second try. "nan" is kept as a result: the same
# seed and config diverge the same way again, so retrying it only spends GPU time.
RETRY_STATUSES = ("error",)

# Where `move_run_aside` puts a run's rows that a rerun computes again.
SUPERSEDED_DIR = "_superseded"
# Packages whose versions a run records, read from installed metadata (nothing is imported).
RECORDED_PACKAGES = ("torch", "diffusers", "transformers", "ray", "pyarrow", "duckdb")

# Fields a caller may give to `write_run`; the rest of a runs row is filled in here.
RUN_FIELDS = (
    "name",
    "spec_yaml",
    "generator",
    "classifier",
    "classifier_sha256",
    "segmenter",
    "num_targets",
)


def partition_dir(root: str | os.PathLike, table_name: str, run_id: str) -> Path:
    return Path(root) / table_name / f"run_id={check_run_id(run_id)}"


def part_files(root: str | os.PathLike, table_name: str, run_id: str | None = None) -> list[Path]:
    """The committed, readable Parquet files of one table (of one run, if given), in a stable
    order. A file whose footer does not read is left out with a warning naming it
    (`dxray.catalog.health`), so one broken file never stops a query, a report or a resume."""
    base = Path(root) / table_name
    pattern = (
        f"run_id={check_run_id(run_id)}/part-*.parquet" if run_id else "run_id=*/part-*.parquet"
    )
    return readable(sorted(base.glob(pattern)), root)


def _now() -> datetime:
    return datetime.now(UTC)


def to_table(table_name: str, rows: Sequence[Mapping] | pa.Table, run_id: str) -> pa.Table:
    """Rows (dicts or an Arrow table) as a validated table of `table_name` for run `run_id`.

    `run_id` is filled in where rows leave it out and must match where they give it; optional
    fields left out are null; `created_at` (and `updated_at` for runs) default to now. Dicts
    with unknown keys are refused (a misspelt field would otherwise vanish). Arrow columns are cast only within a
    kind (int64 -> int32, float32 -> float64, large_string -> string), never across kinds.
    """
    check_run_id(run_id)
    target = schema(table_name)
    if isinstance(rows, pa.Table):
        table = _fill(rows, table_name, run_id)
        table = _cast_within_kind(table, target, table_name)
    else:
        table = _from_dicts(list(rows), target, table_name, run_id)
    ids = set(table.column("run_id").unique().to_pylist())
    if ids - {run_id}:
        raise SchemaError(
            f"{table_name}: rows carry run_id {sorted(i for i in ids if i != run_id)}, "
            f"but they are being written to run {run_id!r}"
        )
    return validate(table_name, table)


def _fill(table: pa.Table, table_name: str, run_id: str) -> pa.Table:
    now = pa.scalar(_now(), type=schema(table_name).field("created_at").type)
    n = table.num_rows
    if "run_id" not in table.column_names:
        table = table.append_column("run_id", pa.array([run_id] * n, pa.string()))
    for name in ("created_at", "updated_at"):
        if schema(table_name).get_field_index(name) >= 0 and name not in table.column_names:
            table = table.append_column(name, pa.array([now.as_py()] * n, now.type))
    for field in schema(table_name):  # optional columns left out are null, as with dicts
        if field.nullable and field.name not in table.column_names:
            table = table.append_column(field.name, pa.nulls(n, field.type))
    return table


def _from_dicts(rows: list[Mapping], target: pa.Schema, table_name: str, run_id: str) -> pa.Table:
    known = set(target.names)
    now = _now()
    columns: dict[str, list] = {name: [] for name in target.names}
    for i, row in enumerate(rows):
        unknown = set(row) - known
        if unknown:
            raise SchemaError(f"{table_name}: row {i} has unknown field(s) {sorted(unknown)}")
        for name in target.names:
            value = row.get(name)
            if value is None and name == "run_id":
                value = run_id
            elif value is None and name in ("created_at", "updated_at"):
                value = now
            columns[name].append(value)
    arrays = []
    for field in target:
        try:
            arrays.append(pa.array(columns[field.name], type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as err:
            raise SchemaError(
                f"{table_name}.{field.name}: values do not fit type {field.type}: {err}"
            ) from None
    return pa.table(arrays, names=target.names)


def _kind(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "binary"
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "list:" + _kind(t.value_type)
    return str(t)


def _cast_within_kind(table: pa.Table, target: pa.Schema, table_name: str) -> pa.Table:
    for name in table.column_names:
        index = target.get_field_index(name)
        if index < 0:
            continue  # validate() names unknown columns
        have, want = table.column(name).type, target.field(index).type
        if have.equals(want):
            continue
        same = _kind(have) == _kind(want) or (_kind(have), _kind(want)) == ("int", "float")
        if not same:
            continue  # validate() reports the wrong type with both types named
        if pa.types.is_timestamp(have) and have.tz is None:
            raise SchemaError(
                f"{table_name}.{name} is a timestamp without a time zone; give UTC times"
            )
        try:
            column = table.column(name).cast(want)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise SchemaError(f"{table_name}.{name}: cannot cast {have} to {want}: {err}") from None
        table = table.set_column(table.column_names.index(name), name, column)
    return table


class CatalogWriter:
    """Appends batches of rows to a catalog folder; safe for many workers writing at once
    (each file has its own uuid name) and for a crash at any point (atomic rename)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -- results -----------------------------------------------------------------------------
    def write(
        self, table_name: str, rows: Sequence[Mapping] | pa.Table, run_id: str
    ) -> Path | None:
        """Validate `rows` and append them as one new Parquet file; returns its path (None
        when there are no rows). Give a whole worker batch at once, not one target."""
        table = to_table(table_name, rows, run_id)
        if table.num_rows == 0:
            return None
        folder = partition_dir(self.root, table_name, run_id)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{uuid.uuid4().hex}.parquet"
        temp = folder / f".{name}.tmp"
        try:
            pq.write_table(table, temp, compression="zstd")
            os.replace(temp, folder / name)
        finally:
            temp.unlink(missing_ok=True)
        return folder / name

    def write_batch(
        self,
        run_id: str,
        explanations: Sequence[Mapping] | pa.Table,
        verdicts: Sequence[Mapping] | pa.Table = (),
        images: Sequence[Mapping] | pa.Table = (),
    ) -> None:
        """One worker batch: images and verdicts first, explanations last. The explanations
        file is the batch's commit record (`done_keys` reads it), so a crash in between leaves
        the batch not done and it is redone on resume rather than left without images."""
        # Validate all three before writing any, so a bad batch writes nothing.
        tables = {
            "images": to_table("images", images, run_id),
            "verdicts": to_table("verdicts", verdicts, run_id),
            "explanations": to_table("explanations", explanations, run_id),
        }
        for name, table in tables.items():
            self.write(name, table, run_id)

    def done_keys(self, run_id: str, retry: Iterable[str] = RETRY_STATUSES) -> set[tuple[str, int]]:
        """(target_id, seed) pairs of `run_id` that resume should skip: those with at least
        one explanations row whose status is not in `retry` (by default only "error" is
        retried; pass ("error", "nan") to retry diverged targets too) and, when that row is a
        result (converged, max_iterations), a verdict and an image: a key whose verdicts or
        images file was lost (cut short, quarantined) is redone, so every table holds it
        again. Reads key columns only."""
        key = ("target_id", "seed")
        keys = self.usable_keys("explanations", run_id, key, retry)
        results = self.usable_keys("explanations", run_id, key, ("error", "nan"))  # images
        keys -= results - (self._keys("verdicts", run_id) & self._keys("images", run_id))
        return {(target_id, int(seed)) for target_id, seed in keys}

    def _keys(self, table_name: str, run_id: str) -> set[tuple[str, int]]:
        """(target_id, seed) of every row of `table_name` (verdicts, images) of `run_id`."""
        found = set()
        for path in part_files(self.root, table_name, run_id):
            table = pq.read_table(path, columns=["target_id", "seed"])
            columns = (table.column("target_id").to_pylist(), table.column("seed").to_pylist())
            found.update(zip(*columns, strict=True))
        return found

    def usable_keys(
        self,
        table_name: str,
        run_id: str,
        key_columns: Iterable[str],
        retry: Iterable[str] = RETRY_STATUSES,
    ) -> set[tuple]:
        """The `key_columns` tuples of `run_id`'s rows in `table_name` with at least one row
        whose status is not in `retry`: what resume skips. Reads only those columns."""
        retry, columns = set(retry), list(key_columns)
        done: set[tuple] = set()
        for path in part_files(self.root, table_name, run_id):
            table = pq.read_table(path, columns=[*columns, "status"])
            keys = zip(*(table.column(c).to_pylist() for c in columns), strict=True)
            for key, status in zip(keys, table.column("status").to_pylist(), strict=True):
                if status not in retry:
                    done.add(key)
        return done

    # -- runs ----------------------------------------------------------------------------------
    def write_run(
        self,
        run_id: str,
        *,
        versions: Mapping[str, str] | None = None,
        created_at: datetime | None = None,
        **fields,
    ) -> dict:
        """Record that run `run_id` started (status "running"). `fields` are runs columns:
        name, spec_yaml, generator, classifier, classifier_sha256, segmenter, num_targets.
        Versions of the main packages are filled in from installed metadata. Returns the row.

        A run that already has rows is being resumed: it keeps its first `created_at` and the
        `wall_seconds` spent so far, to which `finish_run` adds this session's."""
        unknown = set(fields) - set(RUN_FIELDS)
        if unknown:
            raise SchemaError(f"runs: unknown field(s) {sorted(unknown)}; known: {RUN_FIELDS}")
        now = _now()
        earlier = self.latest_run(run_id)
        if earlier is not None and created_at is None:
            created_at = earlier["created_at"]
        row = {
            "run_id": run_id,
            "created_at": created_at or now,
            "updated_at": now,
            **fields,
            "dxray_version": _version("dxray"),
            "versions_json": json.dumps(
                dict(versions) if versions is not None else recorded_versions(), sort_keys=True
            ),
            "status": "running",
            "wall_seconds": (earlier or {}).get("wall_seconds") or 0.0,
        }
        self.write("runs", [row], run_id)
        return row

    def finish_run(
        self,
        run_id: str,
        status: str = "finished",
        *,
        wall_seconds: float | None = None,
        error: str | None = None,
    ) -> dict:
        """Record the end of a run: a new runs row, a copy of its latest one with `status`
        ("finished", "partial": targets left to do, or "failed") and `error`. `wall_seconds` is this session's time (default:
        since its `write_run`); the row holds the run's total over all its sessions. The views
        show the latest row."""
        if status not in ("finished", "partial", "failed"):
            raise ValueError(f"a run finishes as 'finished', 'partial' or 'failed'; got {status!r}")
        row = self.latest_run(run_id)
        if row is None:
            raise ValueError(f"run {run_id!r} has no start row: call write_run first")
        now = _now()
        if wall_seconds is None:
            wall_seconds = (now - row["updated_at"]).total_seconds()
        spent = (row.get("wall_seconds") or 0.0) if row["status"] == "running" else 0.0
        row.update(status=status, updated_at=now, wall_seconds=spent + wall_seconds, error=error)
        self.write("runs", [row], run_id)
        return row

    def move_run_aside(self, run_id: str, label: str) -> Path | None:
        """Move every table's rows of `run_id` to <root>/_superseded/<run_id>-<label>/<table>/
        (a rerun then computes the run again; nothing is deleted, and no reader lists them).
        Returns that folder, or None when the run has no rows."""
        check_run_id(run_id)
        if not re.fullmatch(r"[A-Za-z0-9._-]+", label):
            raise ValueError(f"a label of letters, digits, '.', '_' or '-', got {label!r}")
        base = self.root / SUPERSEDED_DIR / f"{run_id}-{label}"
        aside, n = base, 1
        while aside.exists():  # moved aside with this label before: keep both
            n += 1
            aside = base.with_name(f"{base.name}.{n}")
        tables = [] if not self.root.is_dir() else sorted(self.root.iterdir())
        moved = False
        for table in tables:
            rows = table / f"run_id={run_id}"
            if table.name.startswith(("_", ".")) or not rows.is_dir():
                continue
            (aside / table.name).mkdir(parents=True, exist_ok=True)
            os.replace(rows, aside / table.name / rows.name)
            moved = True
        return aside if moved else None

    def latest_run(self, run_id: str) -> dict | None:
        """The latest runs row of `run_id`, or None."""
        rows = [
            r for p in part_files(self.root, "runs", run_id) for r in pq.read_table(p).to_pylist()
        ]
        if not rows:
            return None
        return max(rows, key=lambda r: (r["updated_at"], r["status"] != "running"))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def recorded_versions() -> dict[str, str]:
    """The installed versions of `RECORDED_PACKAGES` (those not installed left out)."""
    found = {name: _version(name) for name in RECORDED_PACKAGES}
    return {name: v for name, v in found.items() if v is not None}


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temp file and a rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temp.write_text(text)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def json_safe(value: Any, digits: int | None = None) -> Any:
    """`value` as plain JSON (what catalog rows become in diffs and gate files): timestamps as
    ISO text, non-finite floats as null, anything else unknown as its text; with `digits`,
    floats rounded to that many (files that diff cleanly from run to run)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, digits) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return value if digits is None else round(value, digits)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
