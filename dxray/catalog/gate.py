"""The release gate: may a candidate checkpoint ship, compared with the release before it?

    con = connect("catalogs/toy", read_only=True)
    result = gate_runs(con, baseline="release-41", candidate="release-42")
    result.passed                 # what `dxray gate` exits on: 0 passed, 1 failed
    print(render_text(result))    # one screen (gate_render.py)
    to_json(result), to_junit(result)

The candidate fails when it gains a shortcut finding or a spurious unit, or when a shortcut
found in both runs grows beyond the margin: the rules, pure, are gate_rules.py (and
docs/SCANS.md, "The release gate"); the renderings, gate_render.py. This module reads the two
runs from the catalog and refuses what cannot be compared.

Bad input raises `GateInputError` (one line; the CLI exits 2): a run that does not exist or is
not finished (`allow_partial` gates what it has), classifiers with different class lists,
shortcut tests with different vocabularies or finding rules, one run with the shortcut test and
the other without it. The queries are dxray/catalog/sql/gate.sql.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import duckdb

from dxray.catalog.gate_rules import GateResult, shortcut_checks, unit_checks
from dxray.catalog.views import named_queries
from dxray.spec.model import GateSpec
from dxray.spec.parse import recorded_spec
from dxray.text import few


class GateInputError(ValueError):
    """Two runs the gate cannot compare; the message says why and what to do."""


def gate_runs(
    con: duckdb.DuckDBPyConnection,
    baseline: str,
    candidate: str,
    *,
    thresholds: GateSpec | None = None,
    thresholds_from: str | None = None,
    lift_margin: float | None = None,
    units: bool | None = None,
    allow_partial: bool = False,
) -> GateResult:
    """Gate run `candidate` against run `baseline` on a `connect()`ed catalog.

    Thresholds: `thresholds` (a spec's `gate:` section, said to come from `thresholds_from`),
    else the `gate:` section of the spec the candidate run recorded, else the defaults; then
    `lift_margin` and `units` override single fields (the command line). `allow_partial` gates
    runs that are not finished instead of refusing them. Raises `GateInputError` for bad input.
    """
    # 1. Both runs exist and are finished
    queries = named_queries("gate.sql")
    before, after = (_run(con, queries, run_id) for run_id in (baseline, candidate))
    notes = []
    for run in (before, after):
        if run["status"] != "finished":
            # An error may be a traceback's worth of text: its first line, shortened
            error = (run.get("error") or "").strip().splitlines()[:1]
            why = f" ({error[0][:200]})" if error else ""
            if not allow_partial:
                raise GateInputError(
                    f"run {run['run_id']} is {run['status']}, not finished{why}: finish its "
                    "audit (rerun the same command), or pass --allow-partial to gate what it has"
                )
            notes.append(
                f"run {run['run_id']} is {run['status']}{why}: gated on what it has "
                "(--allow-partial); what it lacks cannot fail the gate"
            )

    # 2. The thresholds, and where they came from
    limits, source = _thresholds(after, thresholds, thresholds_from, lift_margin, units)

    # 3. Read both runs; refuse what cannot be compared
    rows = {
        side: {q: _rows(con, queries[q], run["run_id"]) for q in ("shortcuts", "units", "classes")}
        for side, run in (("baseline", before), ("candidate", after))
    }
    _same_classes(before, after, rows)
    tested = _same_shortcut_test(before, after, rows["baseline"], rows["candidate"], notes)

    # 4. One check per shortcut pair, and per unit
    checks = []
    if tested:
        rule = _finding_rule(after)
        checks += shortcut_checks(
            rows["baseline"]["shortcuts"], rows["candidate"]["shortcuts"], limits, rule
        )
    if limits.units:
        checks += unit_checks(rows["baseline"]["units"], rows["candidate"]["units"])
    else:
        notes.append("units not gated (gate.units is false)")
    if not checks:
        notes.append("nothing to gate: neither run has shortcut test results or units")
    for run in (before, after):
        run.pop("spec_yaml", None)
    return GateResult(before, after, limits, source, checks, notes)


def recorded_thresholds(spec_yaml: str | None) -> GateSpec | None:
    """The `gate:` section of a run's recorded spec (`runs.spec_yaml`); None if unreadable."""
    spec = recorded_spec(spec_yaml)
    return None if spec is None else spec.gate


def _run(con, queries: dict[str, str], run_id: str) -> dict[str, Any]:
    found = _rows(con, queries["run"], run_id)
    if not found:
        known = [r["run_id"] for r in _rows(con, queries["known_runs"], None)]
        listed = f"runs, newest first: {few(known, 8)}" if known else "the catalog has no runs"
        raise GateInputError(f"run {run_id!r} is not in the catalog; {listed}")
    return found[0]


def _rows(con, query: str, run_id: str | None) -> list[dict[str, Any]]:
    params = {"run_id": run_id} if run_id is not None else None
    table = con.sql(query, params=params).to_arrow_table()
    return table.to_pylist()


def _thresholds(
    candidate: dict, given: GateSpec | None, given_from: str | None, margin, units
) -> tuple[GateSpec, str]:
    if given is not None:
        limits, source = given, given_from or "the given spec"
    else:
        recorded = recorded_thresholds(candidate.get("spec_yaml"))
        limits = recorded or GateSpec()
        source = "the candidate run's spec" if recorded is not None else "the defaults"
    overrides = {}
    if margin is not None:
        if isinstance(margin, bool) or not isinstance(margin, int | float):
            raise GateInputError(f"the lift margin is a number of nats >= 0, got {margin!r}")
        if not math.isfinite(margin) or margin < 0:
            raise GateInputError(f"the lift margin is a number of nats >= 0, got {margin}")
        overrides["lift_margin"] = float(margin)
    if units is not None:
        overrides["units"] = bool(units)
    if overrides:
        limits = dataclasses.replace(limits, **overrides)
        source += " and the command line (" + ", ".join(sorted(overrides)) + ")"
    return limits, source


def _same_classes(before: dict, after: dict, rows: dict) -> None:
    """Refuse runs whose classifiers name their classes differently."""

    def names(side: str, with_targets: bool = True) -> dict[int, str]:
        found = {r["class_index"]: r["class_name"] for r in rows[side]["shortcuts"]}
        if with_targets:
            found |= {r["class_index"]: r["class_name"] for r in rows[side]["classes"]}
        return found

    a, b = names("baseline"), names("candidate")
    clashes = [
        f"class {i} is {a[i]!r} in one, {b[i]!r} in the other"
        for i in sorted(a.keys() & b.keys())
        if a[i] != b[i]
    ]
    where_a, where_b = {n: i for i, n in a.items()}, {n: i for i, n in b.items()}
    clashes += [
        f"{n!r} is class {where_a[n]} in one, {where_b[n]} in the other"
        for n in sorted(where_a.keys() & where_b.keys())
        if where_a[n] != where_b[n]
    ]
    # The shortcut test scores every class: with it on both sides, the whole lists must agree.
    full_a, full_b = names("baseline", False), names("candidate", False)
    if full_a and full_b and not clashes and full_a != full_b:
        only_a = [full_a[i] for i in sorted(full_a.keys() - full_b.keys())]
        only_b = [full_b[i] for i in sorted(full_b.keys() - full_a.keys())]
        clashes.append(
            f"{len(full_a)} classes against {len(full_b)} (only in {before['run_id']}: "
            f"{few(only_a)}; only in {after['run_id']}: {few(only_b)})"
        )
    if clashes:
        raise GateInputError(
            f"runs {before['run_id']} and {after['run_id']} audit classifiers with different "
            f"class lists ({'; '.join(clashes[:3])}): a gate compares checkpoints of one model"
        )


def _same_shortcut_test(before: dict, after: dict, a: dict, b: dict, notes: list[str]) -> bool:
    """True when both runs have the shortcut test with one vocabulary and one finding rule;
    False when neither has it; raises when only one has it or they differ."""
    has_a, has_b = bool(a["shortcuts"]), bool(b["shortcuts"])
    if not has_a and not has_b:
        notes.append("neither run has the shortcut test: units only")
        return False
    if has_a != has_b:
        lacking = before if not has_a else after
        raise GateInputError(
            f"run {lacking['run_id']} has no shortcut test results and the other run has, so "
            "the gate cannot tell a shortcut gained from one never measured: set "
            f"shortcuts.enabled in {lacking['run_id']}'s spec and rerun its audit (the test is "
            "added to the finished run; no target is computed again)"
        )
    vocab_a = {(r["attribute"], r["kind"]) for r in a["shortcuts"]}
    vocab_b = {(r["attribute"], r["kind"]) for r in b["shortcuts"]}
    if vocab_a != vocab_b:

        def listed(pairs: set) -> str:
            return few([f"{name} ({kind})" for name, kind in sorted(pairs)])

        raise GateInputError(
            f"the shortcut tests of {before['run_id']} and {after['run_id']} have different "
            f"vocabularies (only in {before['run_id']}: {listed(vocab_a - vocab_b)}; only in "
            f"{after['run_id']}: {listed(vocab_b - vocab_a)}): rerun the baseline's audit "
            "with the candidate's shortcuts.attributes (only the missing images are rendered)"
        )
    rules = [_finding_rule(run) for run in (before, after)]
    if None in rules:
        unread = [
            run["run_id"] for run, rule in zip((before, after), rules, strict=True) if not rule
        ]
        notes.append(
            f"the recorded spec of {', '.join(unread)} does not read: its shortcut finding rule "
            "is taken to be the other run's"
        )
    elif rules[0] != rules[1]:
        raise GateInputError(
            f"the shortcut tests of {before['run_id']} and {after['run_id']} call findings "
            f"differently (min_lift, confidence, min_images: {rules[0]} against {rules[1]}): "
            "rerun one audit with the other's shortcuts settings (it rescores, renders nothing)"
        )
    return True


def _finding_rule(run: dict) -> tuple[float, float, int] | None:
    spec = recorded_spec(run.get("spec_yaml"))
    if spec is None:
        return None
    sc = spec.shortcuts
    return (sc.min_lift, sc.confidence, sc.min_images)
