"""The release gate: may a candidate checkpoint ship, compared with the release before it?

    con = connect("catalogs/toy", read_only=True)
    result = gate_runs(con, baseline="release-41", candidate="release-42")
    result.passed                 # what `dxray gate` exits on: 0 passed, 1 failed
    print(render_text(result))    # one screen
    to_json(result), to_junit(result)

The candidate **fails** when (docs/SCANS.md, "The release gate"):

- it **gains a shortcut finding**: a `class_shortcuts` row with `finding` true (lift >= the
  spec's min lift with its interval above 0) whose (class name, attribute) is not a finding of
  the baseline;
- it **gains a spurious unit**: a `unit_summary` row with verdict "spurious" (the majority of
  its judged seeds; a tie is "uncertain", which never fails) whose (layer, channel, class name)
  is not spurious in the baseline, or was not audited there;
- a shortcut found in both runs **grows**: the candidate's interval starts more than
  `lift_margin` nats above the end of the baseline's (`low_after - high_before > margin`).
  Decided by the intervals, not the point lifts, so noise that the intervals already cover
  never fails a release; only a growth that no reading of the two intervals explains does.

Everything else passes, and says what it is: a shortcut kept, removed, or absent; a unit that
stayed spurious or was resolved. A pair or unit the candidate could not measure (too few usable
images; a unit not audited or not judged) is *skipped*, never counted as a pass in silence.

Bad input raises `GateInputError` (one line; the CLI exits 2): a run that does not exist or is
not finished (`allow_partial` gates what it has), classifiers with different class lists,
shortcut tests with different vocabularies or finding rules, one run with the shortcut test and
the other without it. The queries are dxray/catalog/sql/gate.sql.
"""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb

from dxray.catalog.views import named_queries
from dxray.catalog.writer import json_safe
from dxray.spec.model import GateSpec
from dxray.spec.parse import recorded_spec
from dxray.text import MISSING, few

FORMAT = "dxray-gate/1"  # the JSON document's `format`: bumped when a key changes meaning
PASS, FAIL, SKIP = "pass", "fail", "skip"
SHORTCUT_CHANGES = ("gained", "grew", "kept", "removed", "none", "untested")
UNIT_CHANGES = ("gained", "kept", "resolved", "not_spurious", "not_audited", "not_judged")
_DETAIL_LINES = 20  # lines of checks the text summary shows; the rest are in --json


class GateInputError(ValueError):
    """Two runs the gate cannot compare; the message says why and what to do."""


@dataclass(frozen=True)
class Check:
    """One shortcut pair (class <- attribute) or one unit, judged by the gate."""

    kind: Literal["shortcut", "unit"]
    name: str  # "star <- a watermark", "penultimate:57 (star)"
    status: str  # pass | fail | skip
    change: str  # SHORTCUT_CHANGES or UNIT_CHANGES
    message: str  # one line: why this status
    key: dict[str, Any]  # what matched the runs: class_name + attribute, or layer + channel + class
    baseline: dict[str, Any] | None  # the baseline's numbers; None where it has no such row
    candidate: dict[str, Any] | None
    overlap: bool | None = None  # shortcuts: do the two runs' intervals overlap


@dataclass
class GateResult:
    baseline: dict[str, Any]  # run_id, name, status, classifier, classifier_sha256, created_at
    candidate: dict[str, Any]
    thresholds: GateSpec
    thresholds_from: str  # where the thresholds came from, said in every output
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the gate could not check, and why

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def verdict(self) -> str:
        return PASS if self.passed else FAIL

    def counts(self, kind: str) -> dict[str, int]:
        """Checks of `kind` per change, every change listed."""
        changes = SHORTCUT_CHANGES if kind == "shortcut" else UNIT_CHANGES
        seen = Counter(c.change for c in self.checks if c.kind == kind)
        return {change: seen.get(change, 0) for change in changes}


# ---------------------------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------------------------


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
        checks += _shortcut_checks(
            rows["baseline"]["shortcuts"], rows["candidate"]["shortcuts"], limits, rule
        )
    if limits.units:
        checks += _unit_checks(rows["baseline"]["units"], rows["candidate"]["units"])
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


def _shortcut_checks(
    before: list[dict], after: list[dict], limits: GateSpec, rule: tuple | None
) -> list[Check]:
    min_images = rule[2] if rule else None
    old = {(r["class_name"], r["attribute"]): r for r in before}
    checks = []
    for row in after:
        key = (row["class_name"], row["attribute"])
        base = old.get(key)
        a, b = _numbers(base), _numbers(row)
        found_a, found_b = bool(base and base["finding"]), bool(row["finding"])
        overlap = _overlap(base, row)
        name = f"{row['class_name']} <- {row['attribute']}"
        untested = row["lift"] is None or (min_images is not None and row["images"] < min_images)
        now = f"lift {_interval(row)}"
        was = f"baseline {_interval(base)}"
        if found_b and not found_a:
            status, change = FAIL, "gained"
            message = f"gained: {now}, not a finding in the baseline ({_interval(base)})"
            if base is not None and base["note"]:
                message += f"; the baseline could not measure it: {base['note']}"
            if overlap:
                message += "; the intervals overlap, so more shortcuts.seeds may settle it"
        elif found_b and found_a:
            growth = _growth(base, row)
            if growth is not None and growth > limits.lift_margin:
                status, change = FAIL, "grew"
                message = (
                    f"grew: {_interval(base)} -> {_interval(row)}, higher by at least "
                    f"{growth:.2f} nats beyond both intervals (margin {limits.lift_margin:g})"
                )
            else:
                status, change = PASS, "kept"
                if growth is not None and growth > 0:
                    beyond = f"higher by at least {growth:.2f} nats beyond both intervals"
                elif overlap is False:
                    beyond = "lower, beyond both intervals"
                else:
                    beyond = "the intervals overlap"
                message = (
                    f"kept: {_interval(base)} -> {_interval(row)}, {beyond} "
                    f"(fails above a margin of {limits.lift_margin:g})"
                )
        elif untested:
            status, change = SKIP, "untested"
            why = row["note"] or "no lift"
            message = f"not measured in the candidate ({why}); {was}"
        elif found_a:
            status, change = PASS, "removed"
            message = f"removed: {now}, a finding in the baseline ({_interval(base)})"
        else:
            status, change = PASS, "none"
            message = f"no finding: {now}"
        keys = {"class_index": row["class_index"], "class_name": key[0], "attribute": key[1]}
        checks.append(Check("shortcut", name, status, change, message, keys, a, b, overlap))
    return checks


def _numbers(row: dict | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: row[k] for k in ("kind", "lift", "low", "high", "images", "finding", "note")}


def _interval(row: dict | None) -> str:
    if row is None:
        return "not measured"
    if row["lift"] is None:
        return MISSING
    return f"{row['lift']:.2f} [{_num(row['low'])}, {_num(row['high'])}]"


def _num(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def _growth(before: dict | None, after: dict) -> float | None:
    """How far the candidate's interval starts above the end of the baseline's."""
    if before is None or after["low"] is None or before["high"] is None:
        return None
    return after["low"] - before["high"]


def _overlap(before: dict | None, after: dict) -> bool | None:
    ends = (before or {}).get("low"), (before or {}).get("high"), after["low"], after["high"]
    if None in ends:
        return None
    return ends[0] <= ends[3] and ends[2] <= ends[1]


def _unit_checks(before: list[dict], after: list[dict]) -> list[Check]:
    def key(r: dict) -> tuple:
        return (r["layer"], r["channel"], r["class_name"])

    old, new = {key(r): r for r in before}, {key(r): r for r in after}
    order = sorted(old.keys() | new.keys(), key=lambda k: (k[0], k[1], k[2] or ""))
    checks = []
    for k in order:
        base, row = old.get(k), new.get(k)
        layer, channel, class_name = k
        name = f"{layer}:{channel}" + (f" ({class_name})" if class_name else "")
        was, now = _verdict(base), _verdict(row)
        if row is None:
            status, change = SKIP, "not_audited"
            message = f"not audited in the candidate; baseline {was}"
        elif row["verdict"] == "spurious" and (base is None or base["verdict"] != "spurious"):
            status, change = FAIL, "gained"
            message = f"gained: {now} in the candidate, " + (
                "not audited in the baseline" if base is None else f"{was} in the baseline"
            )
        elif row["verdict"] == "spurious":
            status, change = PASS, "kept"
            message = f"spurious in both: {was} -> {now}"
        elif row["verdict"] is None:
            status, change = SKIP, "not_judged"
            message = f"no seed judged in the candidate (every seed failed); baseline {was}"
        elif base is not None and base["verdict"] == "spurious":
            status, change = PASS, "resolved"
            message = f"resolved: {was} -> {now}"
        else:
            status, change = PASS, "not_spurious"
            message = f"{was} -> {now}" + (
                "; uncertain (no majority) never fails the gate"
                if row["verdict"] == "uncertain"
                else ""
            )
        keys = {"layer": layer, "channel": channel, "class_name": class_name}
        checks.append(Check("unit", name, status, change, message, keys, _unit(base), _unit(row)))
    return checks


def _verdict(row: dict | None) -> str:
    if row is None:
        return "not audited"
    if row["verdict"] is None:
        return "not judged"
    return f"{row['verdict']} ({row['n_spurious']}/{row['judged']} seeds spurious)"


def _unit(row: dict | None) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = ("target_id", "verdict", "seeds", "judged", "n_core", "n_spurious", "n_uncertain")
    return {k: row[k] for k in keys}


# ---------------------------------------------------------------------------------------------
# Outputs: text, JSON, JUnit XML
# ---------------------------------------------------------------------------------------------


def render_text(result: GateResult) -> str:
    """One screen: the verdict, the runs, the thresholds, counts, then the checks that matter
    (failures first; passes with nothing to report, "none" and "not_spurious", are counted)."""
    a, b = result.baseline, result.candidate
    fails = result.failures
    head = (
        f"gate PASSED: {a['run_id']} -> {b['run_id']}"
        if result.passed
        else f"gate FAILED: {len(fails)} of {len(result.checks)} checks fail, "
        f"{a['run_id']} -> {b['run_id']}"
    )
    t = result.thresholds
    lines = [
        head,
        f"  baseline   {a['run_id']} ({a['status']}) {a.get('classifier') or ''}".rstrip(),
        f"  candidate  {b['run_id']} ({b['status']}) {b.get('classifier') or ''}".rstrip(),
        f"  thresholds lift margin {t.lift_margin:g} nats (candidate low - baseline high), "
        f"units {'gated' if t.units else 'not gated'}; from {result.thresholds_from}",
    ]
    for kind, label, each in (("shortcut", "shortcuts", "pairs"), ("unit", "units", "units")):
        n = sum(1 for c in result.checks if c.kind == kind)
        if n:
            counts = ", ".join(
                f"{v} {k.replace('_', ' ')}" for k, v in result.counts(kind).items() if v
            )
            lines.append(f"  {label:<10} {n} {each if n != 1 else each[:-1]}: {counts}")
    # Failures, then what could not be measured, then what went away, then what stayed
    order = {FAIL: 0, SKIP: 1, PASS: 2}
    changes = {"removed": 0, "resolved": 0, "kept": 1}
    shown = sorted(
        (c for c in result.checks if c.change not in ("none", "not_spurious")),
        key=lambda c: (order[c.status], changes.get(c.change, 0)),
    )
    for c in shown[:_DETAIL_LINES]:
        lines.append(f"{c.status.upper():<5} {c.kind} {c.name}: {c.message}")
    if len(shown) > _DETAIL_LINES:
        lines.append(f"... and {len(shown) - _DETAIL_LINES} more checks (--json has every one)")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def to_json(result: GateResult) -> dict[str, Any]:
    """The result as plain JSON data with stable keys (`FORMAT`)."""
    document = {
        "format": FORMAT,
        "verdict": result.verdict,
        "passed": result.passed,
        "baseline": result.baseline,
        "candidate": result.candidate,
        "thresholds": {**dataclasses.asdict(result.thresholds), "from": result.thresholds_from},
        "counts": {
            "checks": len(result.checks),
            "failures": len(result.failures),
            "skipped": sum(1 for c in result.checks if c.status == SKIP),
            "shortcuts": result.counts("shortcut"),
            "units": result.counts("unit"),
        },
        "checks": [dataclasses.asdict(c) for c in result.checks],
        "notes": list(result.notes),
    }
    return json_safe(document)


def to_json_text(result: GateResult) -> str:
    """`to_json` as text: ASCII (other characters as \\u escapes), readable in any locale."""
    return json.dumps(to_json(result), indent=1, allow_nan=False)


def to_junit(result: GateResult) -> str:
    """JUnit XML: one testsuite, one testcase per shortcut pair and per unit; a `failure` for
    each that fails the gate, `skipped` for each the candidate could not measure."""
    a, b = result.baseline["run_id"], result.candidate["run_id"]
    skipped = sum(1 for c in result.checks if c.status == SKIP)
    counts = {
        "tests": str(len(result.checks)),
        "failures": str(len(result.failures)),
        "errors": "0",
        "skipped": str(skipped),
    }
    root = ET.Element("testsuites", name="dxray gate", **counts)
    suite = ET.SubElement(root, "testsuite", name=_xml(f"dxray gate {a} -> {b}"), **counts)
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("baseline", a),
        ("candidate", b),
        ("verdict", result.verdict),
        ("lift_margin", f"{result.thresholds.lift_margin:g}"),
        ("units", str(result.thresholds.units).lower()),
        ("thresholds_from", result.thresholds_from),
    ):
        ET.SubElement(props, "property", name=name, value=_xml(value))
    for c in result.checks:
        group = c.key.get("class_name") or c.key.get("layer") or "-"
        case = ET.SubElement(
            suite, "testcase", classname=_xml(f"dxray.gate.{c.kind}.{group}"), name=_xml(c.name)
        )
        detail = _xml(json.dumps(json_safe({"baseline": c.baseline, "candidate": c.candidate})))
        if c.status == FAIL:
            failure = ET.SubElement(case, "failure", message=_xml(c.message), type=c.change)
            failure.text = detail
        elif c.status == SKIP:
            ET.SubElement(case, "skipped", message=_xml(c.message))
        else:
            ET.SubElement(case, "system-out").text = _xml(c.message)
    ET.indent(root)
    # ASCII, other characters as references (&#9733;): the file reads the same in any locale
    text = ET.tostring(root, encoding="unicode").encode("ascii", "xmlcharrefreplace").decode()
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text


def _xml(text: Any) -> str:
    """Text XML 1.0 can hold: control characters (which ElementTree would write as they are,
    making the file unreadable) become U+FFFD. ElementTree escapes the rest (<, &, quotes)."""
    return "".join(
        ch
        if ch in "\t\n\r"
        or 0x20 <= ord(ch) <= 0xD7FF
        or 0xE000 <= ord(ch) <= 0xFFFD
        or ord(ch) >= 0x10000
        else "\ufffd"
        for ch in str(text)
    )
