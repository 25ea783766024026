"""The diffs a scan writes: each checkpoint against the one before it, and a checkpoint
rewritten in place against its previous content, one JSON file per pair of runs.

    <catalog>/diffs/<from run>__<to run>.json   # both runs and checkpoints, the summary, one
                                                # row per target, the class shortcuts' changes

A diff file is written once, by rename (a reader never sees half of one); a missing one is
written by the next scan, so the diffs always cover the whole chain.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dxray.catalog.writer import json_safe, write_text_atomic
from dxray.run.checkpoints import Checkpoint

DIFF_DIR = "diffs"


def diff_path(catalog: Path, from_run: str, to_run: str) -> Path:
    """Where the diff of two runs is written."""
    return Path(catalog) / DIFF_DIR / f"{from_run}__{to_run}.json"


def write_missing_diffs(
    catalog: Path, chain: list[tuple[Checkpoint, str]], say: Callable[[str], None]
) -> list[Path]:
    """For each consecutive pair of `chain` ((checkpoint, run id), oldest first) whose diff file
    is missing, compute the diff and write it. Returns the files written."""
    pairs = [(a, b, False) for a, b in zip(chain, chain[1:], strict=False)]
    return _write_diffs(catalog, pairs, say)


def write_rewrite_diffs(
    catalog: Path, rewritten: list[tuple[Checkpoint, str, str]], say: Callable[[str], None]
) -> list[Path]:
    """The diff of each checkpoint rewritten in place ((checkpoint, run of its previous
    content, run of its content now), from `previous_contents`) whose diff file is missing."""
    pairs = [((ckpt, before), (ckpt, after), True) for ckpt, before, after in rewritten]
    return _write_diffs(catalog, pairs, say)


def _write_diffs(
    catalog: Path,
    pairs: list[tuple[tuple[Checkpoint, str], tuple[Checkpoint, str], bool]],
    say: Callable[[str], None],
) -> list[Path]:
    """Write the diff of each ((checkpoint, run) before, after, rewritten in place) whose file
    is missing; returns the files written."""
    from dxray.catalog.diff import diff_runs
    from dxray.catalog.views import connect

    pairs = [p for p in pairs if not diff_path(catalog, p[0][1], p[1][1]).exists()]
    if not pairs:
        return []
    written = []
    con = connect(catalog, read_only=True)
    try:
        for (before, from_run), (after, to_run), in_place in pairs:
            diff = diff_runs(con, from_run, to_run)
            document = {
                "from_run": from_run,
                "to_run": to_run,
                "from_checkpoint": str(before.path),
                "to_checkpoint": str(after.path),
                "rewritten_in_place": in_place,
                "summary": diff.summary,
                "targets": diff.rows,
                "shortcuts": diff.shortcuts.to_pylist() if diff.shortcuts is not None else [],
            }
            path = diff_path(catalog, from_run, to_run)
            write_text_atomic(path, json.dumps(json_safe(document), indent=1, allow_nan=False))
            written.append(path)
            if in_place:
                say(
                    f"      {after.path} was rewritten in place: diffed against its previous content"
                )
            say(_diff_line(diff.rows, from_run, to_run, path))
            for row in document["shortcuts"]:
                if row["change"] != "kept":
                    say(f"      shortcut {row['class_name']} <- {row['attribute']} {row['change']}")
    finally:
        con.close()
    return written


def _diff_line(rows: list[dict], from_run: str, to_run: str, path: Path) -> str:
    def named(change: str) -> str:
        hits = [r for r in rows if r["change"] == change]
        labels = [
            (r.get("unit") or r["target_id"]) + (f" ({r['class_name']})" if r["class_name"] else "")
            for r in hits
        ]
        return f"{len(hits)} {change}" + (f" [{', '.join(labels)}]" if labels else "")

    changed = sum(1 for r in rows if r["change"] == "changed")
    return (
        f"diff  {from_run} -> {to_run}: units {named('new spurious')}, {named('resolved')}; "
        f"{changed} other targets changed -> {path}"
    )
