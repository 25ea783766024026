"""What `dxray eval` and `dxray score` print: every table of the evaluation as text
(`format_text`), then one line of the figures that matter (`headline`), which the HTML page's
evaluation section shows too. The tables themselves are dxray/eval/tables.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dxray.eval.results import DEFAULT, Metrics
from dxray.eval.tables import evaluation_tables, format_value
from dxray.text import text_table

LEVEL = {"neurons": "neuron", "classes": "class-bias"}  # the headline's words for a level


def headline(metrics: Sequence[Mapping], world: str) -> str:
    """One line of the figures that matter."""
    m = Metrics(metrics)

    def percent(section: str, metric: str, setting: str = DEFAULT, judge=None) -> str:
        return format_value(m.get(section, setting, metric, judge=judge), "accuracy")

    def count(section: str, metric: str, setting: str = DEFAULT) -> int:
        return int(m.get(section, setting, metric))

    parts = [f"world {world}"]
    for level, trivial in (("neurons", "always-core"), ("classes", "never")):
        if level == "classes" and m.has("classes", DEFAULT, "accuracy", judge="units"):
            parts.append(
                "class-bias agreement via spurious units "
                f"{percent('classes', 'accuracy', judge='units')} (balanced "
                f"{percent('classes', 'balanced_accuracy', judge='units')})"
            )
        if m.has(level, DEFAULT, "accuracy"):
            parts.append(
                f"{LEVEL[level]} agreement {percent(level, 'accuracy')}"
                f" (balanced {percent(level, 'balanced_accuracy')};"
                f" {trivial}: {percent(level, 'accuracy', judge=trivial)}, balanced"
                f" {percent(level, 'balanced_accuracy', judge=trivial)})"
            )
    if m.has("neurons", DEFAULT, "accuracy", judge="unit test"):
        parts.append(
            "unit test "
            f"{percent('neurons', 'accuracy', judge='unit test')} (balanced "
            f"{percent('neurons', 'balanced_accuracy', judge='unit test')})"
        )
    if m.has("neurons", DEFAULT, "accuracy", judge="intervention"):
        parts.append(
            "intervention judge "
            f"{percent('neurons', 'accuracy', judge='intervention')} (balanced "
            f"{percent('neurons', 'balanced_accuracy', judge='intervention')})"
        )
    if m.has("success", DEFAULT, "success_rate"):
        parts.append(
            f"p>=0.9 in {format_value(m.get('success', DEFAULT, 'success_rate'), 'success_rate')}"
            f" of class targets (median {format_value(m.get('success', DEFAULT, 'median_iterations'))} it)"
        )
    ties = [s for s in m.settings("bias") if m.has("bias", s, "flagged")]
    found = [s for s in ties if m.get("bias", s, "flagged")]
    via_units = [s for s in ties if m.get("bias", s, "flagged_by_units")]
    if ties:
        parts.append(
            f"planted ties found {len(found)}/{len(ties)} from class explanations,"
            f" {len(via_units)}/{len(ties)} from spurious units"
        )
    if m.has("shortcuts", DEFAULT, "found"):
        part = (
            f"class shortcuts found {count('shortcuts', 'found')}/"
            f"{count('shortcuts', 'relied')}, false {count('shortcuts', 'false')}"
        )
        if m.has("shortcuts", "fixed", "found"):
            part += (
                f" (fixed release: found {count('shortcuts', 'found', 'fixed')}/"
                f"{count('shortcuts', 'relied', 'fixed')}, false "
                f"{count('shortcuts', 'false', 'fixed')})"
            )
        parts.append(part)
    if m.has("explanations", DEFAULT, "found"):
        e = {k: count("explanations", k) for k in
             ("found", "relied", "false", "confirmed_found", "confirmed_false")}  # fmt: skip
        parts.append(
            f"object-free explanations single out {e['found']}/{e['relied']} (false leads"
            f" {e['false']}; confirmed by the test {e['confirmed_found']}/{e['relied']}, false"
            f" {e['confirmed_false']})"
        )
    if m.has("baseline", "diffexplainer", "oracle_object_recognised"):
        seen = {
            method: format_value(
                m.get("baseline", method, "oracle_object_recognised"), "success_rate"
            )
            for method in ("diffexplainer", "pixel-am")
        }
        parts.append(
            f"oracle sees the object in {seen['diffexplainer']} of DiffExplainer images vs "
            f"{seen['pixel-am']} of pixel-AM"
        )
    return "HEADLINE: " + "; ".join(parts)


def format_text(
    metrics: Sequence[Mapping], neurons: Sequence[Mapping], classes: Sequence[Mapping], world: str
) -> str:
    """The tables and the headline, as `dxray eval` and `dxray score` print them."""
    lines: list[str] = []
    for title, header, rows, note in evaluation_tables(metrics, neurons, classes):
        lines += ["", title, *("  " + r for r in text_table(header, rows))]
        if note:
            lines.append(f"  ({note})")
    lines += ["", headline(metrics, world)]
    return "\n".join(lines)
