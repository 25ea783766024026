"""The release gate's rules: given the rows of two runs, one `Check` per shortcut pair and per
unit, and the `GateResult` they add up to (dxray/catalog/gate.py reads the runs; the text,
JSON and JUnit renderings are gate_render.py). Pure: rows in, checks out.

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
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from dxray.spec.model import GateSpec
from dxray.text import MISSING

PASS, FAIL, SKIP = "pass", "fail", "skip"
SHORTCUT_CHANGES = ("gained", "grew", "kept", "removed", "none", "untested")
UNIT_CHANGES = ("gained", "kept", "resolved", "not_spurious", "not_audited", "not_judged")


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


def shortcut_checks(
    before: list[dict], after: list[dict], limits: GateSpec, rule: tuple | None
) -> list[Check]:
    """One check per `class_shortcuts` row of the candidate (`after`), against the baseline's
    row of the same (class name, attribute). `rule`: the finding rule (min_lift, confidence,
    min_images) the runs share, None when unread."""
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


def unit_checks(before: list[dict], after: list[dict]) -> list[Check]:
    """One check per unit (layer, channel, class name) of either run's `unit_summary`."""

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
