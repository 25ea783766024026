"""Unreadable catalog files: found, named, left out by every reader, and moved aside on request.

dxray writes each Parquet file whole (a temp name, then a rename), so a broken file comes from
outside: a copy cut short, a full disk on another tool's write, a bit flip. One such file must
not stop SQL, the report or a resume. Every reader lists files through
`dxray.catalog.writer.part_files`, which leaves out a file whose footer does not read and warns
once, naming it and the command that moves it aside. A resume then recomputes the rows the file
held (the explanations file is each batch's commit record).

    broken_files(root)              # [BrokenFile(path, reason)], footers only (fast)
    broken_files(root, deep=True)   # reads every row too: finds damage inside a file
    quarantine(root, files)         # moves them to <root>/_quarantine/, keeping their paths
    leaving_out_damage(root, read)  # read(); if a damaged page stops it, find the file(s) by
                                    # reading every row, leave them out (named), read again

Damage inside a file whose footer is whole (a flipped page) only shows when its rows are
decoded, so the footer check cannot see it; `leaving_out_damage` makes a query that hits it
name the file and carry on without it, like a truncated file.

The footer check is cached per (path, size, mtime), so a long-lived process checks each file once.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger("dxray.catalog")

QUARANTINE_DIR = "_quarantine"  # readers list `<table>/run_id=*/part-*.parquet` only

_checked: dict[tuple[str, int, int], str | None] = {}  # (path, size, mtime_ns) -> reason
_warned: set[str] = set()


T = TypeVar("T")
# What reading a damaged page raises: Arrow's errors, and DuckDB's wrapping of them when it
# scans the Arrow dataset ("reading the stream registered as ... failed: IOError: ...").
READ_ERRORS = (pa.ArrowException, OSError, duckdb.InvalidInputException, duckdb.IOException)


@dataclass(frozen=True)
class BrokenFile:
    path: Path
    reason: str


def file_problem(path: Path, *, deep: bool = False) -> str | None:
    """Why `path` cannot be read as Parquet (one line), or None when it reads. The quick check
    reads the footer, which a truncated file lacks; `deep` also decodes every row."""
    try:
        stat = path.stat()
    except OSError as err:
        return err.strerror or str(err)
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if not deep and key in _checked:
        return _checked[key]
    try:
        if deep:
            pq.read_table(path)
        else:
            pq.ParquetFile(path).metadata  # noqa: B018 - reading the footer is the check
        problem = None
    except Exception as err:  # noqa: BLE001 - Arrow's errors vary with the damage
        text = str(err).strip().splitlines()
        problem = f"{type(err).__name__}: {text[0] if text else 'unreadable'}"
    if not deep or problem is not None:
        _checked[key] = problem
    return problem


def readable(paths: list[Path], root: str | os.PathLike) -> list[Path]:
    """`paths` without the files whose footer does not read; each left out is named once per
    process in a warning that says how to move it aside."""
    kept = []
    for path in paths:
        problem = file_problem(path)
        if problem is None:
            kept.append(path)
        elif str(path) not in _warned:
            _warned.add(str(path))
            log.warning(
                "catalog file %s is unreadable (%s) and is left out; `dxray catalog check %s "
                "--quarantine` moves it aside",
                path,
                problem,
                root,
            )
    return kept


def committed_files(root: str | os.PathLike) -> list[Path]:
    """Every committed Parquet file of every table of the catalog, in path order (what
    `writer.part_files` lists per table, before leaving out the unreadable ones)."""
    return sorted(Path(root).glob("*/run_id=*/part-*.parquet"))


def broken_files(root: str | os.PathLike, *, deep: bool = False) -> list[BrokenFile]:
    """Every committed Parquet file of the catalog that does not read, in path order."""
    found = []
    for path in committed_files(root):
        problem = file_problem(path, deep=deep)
        if problem is not None:
            found.append(BrokenFile(path, problem))
    return found


def quarantine(root: str | os.PathLike, files: list[BrokenFile]) -> list[Path]:
    """Move `files` under `<root>/_quarantine/`, at the same relative paths; returns where each
    went. Nothing is deleted: a file can be inspected, repaired and moved back by hand."""
    base = Path(root)
    moved = []
    for broken in files:
        target = base / QUARANTINE_DIR / broken.path.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        while target.exists():  # quarantined there before: keep both copies
            n += 1
            target = target.with_name(f"{broken.path.name}.{n}")
        shutil.move(broken.path, target)
        moved.append(target)
    return moved


def leaving_out_damage(root: str | os.PathLike, read: Callable[[], T]) -> T:
    """`read()`, and when it fails on a damaged file of the catalog at `root`: find every file
    that does not read whole (`broken_files(deep=True)`), leave them out of every later read
    of this process (each named once in a warning, as for a truncated file) and `read()` once
    more. The error is raised as it is when no file is damaged (it was something else)."""
    try:
        return read()
    except READ_ERRORS:
        damaged = broken_files(root, deep=True)
        if not damaged:
            raise
    for broken in damaged:
        if str(broken.path) not in _warned:
            _warned.add(str(broken.path))
            log.warning(
                "catalog file %s is damaged (%s) and is left out; `dxray catalog check %s "
                "--deep --quarantine` moves it aside",
                broken.path,
                broken.reason,
                root,
            )
    return read()
