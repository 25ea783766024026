"""The release gate's outputs: one screen of text (`render_text`), a JSON document with stable
keys (`to_json`, `to_json_text`; `FORMAT`) and JUnit XML (`to_junit`), all from a `GateResult`
(dxray/catalog/gate_rules.py)."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from typing import Any

from dxray.catalog.gate_rules import FAIL, PASS, SKIP, GateResult
from dxray.catalog.writer import json_safe

FORMAT = "dxray-gate/1"  # the JSON document's `format`: bumped when a key changes meaning
_DETAIL_LINES = 20  # lines of checks the text summary shows; the rest are in --json


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
