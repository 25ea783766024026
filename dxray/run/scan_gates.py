"""The release gates a scan applies (`dxray scan --gate`): each audited checkpoint against the
one before it (and a checkpoint rewritten in place against its previous content), the pairs
the diffs cover, written next to them:

    <catalog>/gates/<from run>__<to run>.json   # dxray.catalog.gate's JSON document
    <catalog>/gates/<from run>__<to run>.xml    # the same checks as JUnit XML

Like a diff, a gate file is written once, by rename, and a missing one is written by the next
scan with --gate. A pair the gate cannot compare (GateInputError: say, the shortcut vocabulary
changed between the two audits) gets no file: it counts as failed, and the next scan tries it
again. The thresholds are the scan spec's `gate:` section.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dxray.catalog.gate import GateInputError, gate_runs
from dxray.catalog.gate_render import to_json_text, to_junit
from dxray.catalog.writer import write_text_atomic
from dxray.spec.model import GateSpec

GATE_DIR = "gates"


class GatesFailed(Exception):
    """A scan with --gate wrote a gate that failed, or met a pair it could not gate."""


def gate_path(catalog: Path, from_run: str, to_run: str, suffix: str = ".json") -> Path:
    """Where the gate of two runs is written (`suffix` ".xml": its JUnit twin)."""
    return Path(catalog) / GATE_DIR / f"{from_run}__{to_run}{suffix}"


def write_missing_gates(
    catalog: Path,
    pairs: list[tuple[str, str]],
    thresholds: GateSpec,
    thresholds_from: str,
    say: Callable[[str], None],
) -> tuple[list[Path], list[str]]:
    """Gate each (baseline run, candidate run) of `pairs` whose gate file is missing and write
    it. Returns the JSON files written and one "A -> B: why" per pair that failed or could not
    be gated."""
    from dxray.catalog.views import connect

    pairs = [p for p in dict.fromkeys(pairs) if not gate_path(catalog, *p).exists()]
    if not pairs:
        return [], []
    written, failed = [], []
    con = connect(catalog, read_only=True)
    try:
        for before, after in pairs:
            try:
                result = gate_runs(
                    con, before, after, thresholds=thresholds, thresholds_from=thresholds_from
                )
            except GateInputError as err:
                failed.append(f"{before} -> {after}: cannot gate: {err}")
                say(f"gate  {before} -> {after}: cannot gate: {err}")
                continue
            path = gate_path(catalog, before, after)
            # The JUnit twin first: a JSON file present means the pair is done
            write_text_atomic(gate_path(catalog, before, after, ".xml"), to_junit(result) + "\n")
            write_text_atomic(path, to_json_text(result) + "\n")
            written.append(path)
            if result.passed:
                say(f"gate  {before} -> {after}: passed -> {path}")
                continue
            why = ", ".join(f"{c.kind} {c.name} {c.change}" for c in result.failures)
            failed.append(f"{before} -> {after}: {why}")
            say(f"gate  {before} -> {after}: FAILED ({why}) -> {path}")
    finally:
        con.close()
    return written, failed
