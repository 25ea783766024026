"""The evaluation's own output: its tables (`sections`), a text table for the terminal
(`format_text`) and one headline line (`headline`). All render from the rows of the catalog's
eval tables (metrics, neurons, classes), so numbers rebuilt later from the catalog are the same.
The HTML page's evaluation section (dxray/report/evaluation.py) renders these same tables;
`format_value` is the number format both use."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from dxray.text import MISSING, text_table

PERCENT = {"accuracy", "balanced_accuracy", "coverage", "decided_accuracy", "precision", "recall", "f1",
           "success_rate", "oracle_object_recognised"}  # fmt: skip


def _index(metrics: Sequence[Mapping]) -> dict[tuple[str, str, str], float]:
    return {
        (m["section"], m["setting"], m["metric"]): (math.nan if m["value"] is None else m["value"])
        for m in metrics
    }


def format_value(value, metric: str = "") -> str:
    """A metric value as text: percentages for the PERCENT metrics, `MISSING` for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if metric in PERCENT:
        return f"{100 * value:.0f}%"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _settings(metrics: Sequence[Mapping], section: str) -> list[str]:
    seen: list[str] = []
    for m in metrics:
        if m["section"] == section and m["setting"] not in seen:
            seen.append(m["setting"])
    return seen


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return text_table(header, rows)


LEVEL = {"neurons": "neuron", "classes": "class-bias"}
AGREEMENT = ("n", "balanced_accuracy", "accuracy", "coverage", "precision", "recall")


def _neuron_confusion(rows: Sequence[Mapping], column: str, judge: str):
    table = []
    for truth in ("spurious", "core"):
        calls = [r[column] for r in rows if r["truth"] == truth]
        counts = [str(sum(c == v for c in calls)) for v in ("spurious", "core", "uncertain")]
        table.append([f"truth {truth}", *counts])
    title = f"Confusion, neurons (rows: truth, columns: {judge})"
    return (title, ["", "spurious", "core", "uncertain"], table, "")


def sections(metrics: Sequence[Mapping], neurons: Sequence[Mapping], classes: Sequence[Mapping]):
    """(title, header, rows, note) of each part of the evaluation present in `metrics`.
    `classes`: the class rows of both releases (`release` "biased" or "fixed")."""
    m = _index(metrics)
    fixed_classes = [r for r in classes if r.get("release") == "fixed"]
    classes = [r for r in classes if r.get("release", "biased") == "biased"]
    out = []

    # 1. Agreement
    rows = []
    neuron_judges = ("intervention", "presence", "any-object", "always-core")
    class_judges = ("shortcuts", "explanations", "units", "never")
    for level, others in (("neurons", neuron_judges), ("classes", class_judges)):
        for judge in ("dxray", *others):
            section, setting = level, ("default" if judge == "dxray" else judge)
            if (section, setting, "n") in m:
                rows.append(
                    [level, judge]
                    + [
                        format_value(
                            int(m[(section, setting, k)])
                            if k == "n"
                            else m.get((section, setting, k)),
                            k,
                        )
                        for k in AGREEMENT
                    ]
                )
    if rows:
        out.append(
            (
                "Verdict agreement with the zoo's ground truth (positive: spurious unit / relied-on factor)",
                ["level", "judge", *AGREEMENT],
                rows,
                "accuracy counts 'uncertain' as wrong; coverage = share with a core/spurious call",
            )
        )
    ranks = _settings(metrics, "labels-rank")
    if ranks:
        out.append(
            (
                "Agreement with the human labels, by the feature's rank for its class",
                ["subset", *AGREEMENT],
                [
                    [rank]
                    + [
                        format_value(
                            int(m[("labels-rank", rank, k)])
                            if k == "n"
                            else m.get(("labels-rank", rank, k)),
                            k,
                        )
                        for k in AGREEMENT
                    ]
                    for rank in ranks
                ],  # fmt: skip
                "unanimous: the pairs on which every worker gave the same side",
            )
        )
    audited = [r for r in neurons if r["seeds"]]
    for column, judge in (("verdict", "dxray"), ("intervention", "intervention judge")):
        judged = [r for r in audited if r.get(column)]
        if judged:
            out.append(_neuron_confusion(judged, column, judge))
    if classes:
        table = []
        for relied in (True, False):
            flags = [r["flagged"] for r in classes if r["relied"] == relied]
            table.append([f"truth {'relied' if relied else 'none'}",
                          str(sum(flags)), str(len(flags) - sum(flags))])  # fmt: skip
        out.append(("Confusion, classes x factors (rows: truth, columns: dxray)",
                    ["", "found", "not found"], table, ""))  # fmt: skip

    # 2. Success
    if ("success", "default", "targets") in m:
        keys = (
            "targets",
            "success_rate",
            "median_iterations",
            "median_seconds",
            "mean_probability",
        )
        out.append(
            (
                "Explanation success (class targets; final image, p >= 0.9)",
                list(keys),
                [[format_value(m.get(("success", "default", k)), k) for k in keys]],
                "iterations and seconds: medians over the targets that reach p >= 0.9",
            )
        )

    # 3. Bias discovery
    rows = []
    for setting in _settings(metrics, "bias"):
        if ("bias", setting, "presence") not in m:
            continue  # only the oracle's rates: the tie's class was not probed
        fixed = ("bias-fixed", setting, "difference") in m
        oracle = m.get(("bias", setting, "oracle_rate"))
        rows.append(
            [
                setting,
                MISSING
                if oracle is None
                else f"{format_value(oracle)} vs {format_value(m.get(('bias', setting, 'oracle_other_rate')))}",
                format_value(m[("bias", setting, "reliance_logit")]),
                format_value(m.get(("bias", setting, "with_object_logprob"))),
                f"{format_value(m[('bias', setting, 'presence')])} vs {format_value(m[('bias', setting, 'other_presence')])}",
                format_value(m[("bias", setting, "cohens_d")]),
                "yes" if m[("bias", setting, "flagged")] else "no",
                "yes" if m.get(("bias", setting, "flagged_by_units")) else "no",
                format_value(m[("bias-fixed", setting, "reliance_logit")]) if fixed else MISSING,
                format_value(m[("bias-fixed", setting, "cohens_d")]) if fixed else MISSING,
                ("yes" if m[("bias-fixed", setting, "flagged")] else "no") if fixed else MISSING,
            ]
        )
    if rows:
        out.append(
            (
                "Bias discovery: planted ties, found by attribute probes on explanations (no labels)",
                [
                    "tie",
                    "oracle sees it (class vs others)",
                    "reliance",
                    "beside object",
                    "probe presence (class vs others)",
                    "d",
                    "found",
                    "found via units",
                    "fixed: reliance",
                    "fixed: d",
                    "fixed: found",
                ],  # fmt: skip
                rows,
                "oracle: share of explanation images where the independent oracle sees the factor;"
                " reliance: logit lift of the factor alone (measured); beside object: what it adds"
                " to the class's log-probability next to the class's object (measured); d: Cohen's"
                " d of the probe",
            )
        )

    # 3b. The class-shortcut test
    scored = [r for r in classes if r.get("shortcut_found") is not None]
    if scored:
        table = []
        for relied in (True, False):
            flags = [bool(r["shortcut_found"]) for r in scored if r["relied"] == relied]
            table.append([f"truth {'relied' if relied else 'none'}",
                          str(sum(flags)), str(len(flags) - sum(flags))])  # fmt: skip
        out.append(("Confusion, classes x factors (rows: truth, columns: shortcut test)",
                    ["", "found", "not found"], table, ""))  # fmt: skip
        fixed = {
            (r["class_name"], r["factor"]): r
            for r in fixed_classes
            if r.get("shortcut_found") is not None
        }
        shown = [r for r in scored if r["relied"] or r["planted"] or r["shortcut_found"]]
        rows = []
        for r in sorted(shown, key=lambda r: (-r["reliance_logit"], r["class_name"])):
            f = fixed.get((r["class_name"], r["factor"]))
            rows.append(
                [
                    f"{r['class_name']}-{r['factor']}",
                    "yes" if r["planted"] else "no",
                    format_value(r["reliance_logit"]),
                    _interval(r),
                    str(r.get("shortcut_images")),
                    "yes" if r["shortcut_found"] else "no",
                    format_value(r.get("shortcut_with_object")),
                    _lead(r),
                    format_value(f["reliance_logit"]) if f else MISSING,
                    _interval(f) if f else MISSING,
                    ("yes" if f["shortcut_found"] else "no") if f else MISSING,
                ]
            )
        out.append(
            (
                "Class shortcuts: the counterfactual test (object-free renders, centred logits)",
                [
                    "class-factor",
                    "planted",
                    "reliance",
                    "lift [95% CI]",
                    "images",
                    "found",
                    "beside object",
                    "explanations (vs pool)",
                    "fixed: reliance",
                    "fixed: lift",
                    "fixed: found",
                ],  # fmt: skip
                rows,
                "relied-on, planted and found pairs; reliance: the truth's logit lift of the"
                " factor alone; lift: the test's, over the vocabulary's mean scene (overlays:"
                " paired); found: lift >= 1 nat with the interval above 0; beside object: the"
                " with-object lift (centred logit); explanations: the factor's rate in the"
                " class's object-free explanation images vs the pool's, * = singled out",
            )
        )
        keys = ("found", "relied", "false", "pairs", "renders", "kept", "seconds")
        cost = [
            [f"{s}: counterfactual"] + [format_value(m.get(("shortcuts", s, k)), k) for k in keys]
            for s in _settings(metrics, "shortcuts")
        ]
        cost += [
            [f"{s}: explanations"]
            + [format_value(m.get(("explanations", s, k)), k) for k in ("found", "relied", "false")]
            + [MISSING]
            + [
                format_value(m.get(("explanations", s, k)), k)
                for k in ("renders", "kept", "seconds")
            ]
            for s in _settings(metrics, "explanations")
        ]
        out.append(
            (
                "Class shortcuts: found, false findings and cost",
                ["release: method", *keys],
                cost,
                "counterfactual: the vocabulary's object-free renders (renders, kept, CPU"
                " seconds); explanations: candidates singled out by the object-free explanations"
                " (the pool's renders, those with no object left, seconds)",
            )
        )

    # 4. Baseline
    methods = _settings(metrics, "baseline")
    if methods:
        keys = ("mean_probability", "success_rate", "oracle_object_recognised",
                "oracle_context_confidence", "statistics_distance", "median_iterations")  # fmt: skip
        out.append(
            (
                "DiffExplainer vs pixel-space activation maximisation (same class targets, seeds, budget)",
                ["method", *keys],
                [
                    [method] + [format_value(m.get(("baseline", method, k)), k) for k in keys]
                    for method in methods
                ],
                "statistics_distance: scene statistics vs real scenes, in real-scene std units (0 = real)",
            )
        )

    # 5. Ablations
    settings = [s for s in _settings(metrics, "cost")] + [
        s for s in _settings(metrics, "neurons") if s.startswith("seeds=")
    ]
    if settings:
        rows = []
        for s in settings:
            rows.append(
                [
                    s,
                    format_value(m.get(("neurons", s, "balanced_accuracy")), "accuracy"),
                    format_value(
                        m.get(("neurons-intervention", s, "balanced_accuracy")), "accuracy"
                    ),
                    format_value(m.get(("classes", s, "balanced_accuracy")), "accuracy"),
                    format_value(m.get(("classes-units", s, "balanced_accuracy")), "accuracy"),
                    format_value(m.get(("success", s, "success_rate")), "success_rate"),
                    format_value(m.get(("cost", s, "seconds_per_target"))),
                    format_value(m.get(("cost", s, "median_class_iterations"))),
                ]
            )
        out.append(
            (
                "Ablations (seed 0 only, unless seeds=k; 'reference': the default setting, seed 0)",
                [
                    "setting",
                    "neuron bal. acc",
                    "... intervention",
                    "class bal. acc",
                    "... via units",
                    "success",
                    "s/target",
                    "class iters",
                ],  # fmt: skip
                rows,
                "seeds=k: the main audit's first k seeds; s/target: median compute seconds per target",
            )
        )
    return out


def _lead(row: Mapping) -> str:
    rate = row.get("explanation_rate")
    if rate is None:
        return MISSING
    star = "*" if row.get("explanation_candidate") else ""
    return f"{format_value(rate)} vs {format_value(row.get('explanation_pool_rate'))}{star}"


def _interval(row: Mapping) -> str:
    lift = row.get("shortcut_lift")
    if lift is None:
        return MISSING
    return f"{format_value(lift)} [{format_value(row.get('shortcut_low'))}, {format_value(row.get('shortcut_high'))}]"


def headline(metrics: Sequence[Mapping], world: str) -> str:
    """One line of the figures that matter."""
    m = _index(metrics)
    parts = [f"world {world}"]
    for level, trivial in (("neurons", "always-core"), ("classes", "never")):
        if level == "classes" and ("classes", "units", "accuracy") in m:
            parts.append(
                "class-bias agreement via spurious units "
                f"{format_value(m[('classes', 'units', 'accuracy')], 'accuracy')} (balanced "
                f"{format_value(m[('classes', 'units', 'balanced_accuracy')], 'accuracy')})"
            )
        if (level, "default", "accuracy") in m:
            parts.append(
                f"{LEVEL[level]} agreement {format_value(m[(level, 'default', 'accuracy')], 'accuracy')}"
                f" (balanced {format_value(m[(level, 'default', 'balanced_accuracy')], 'accuracy')};"
                f" {trivial}: {format_value(m.get((level, trivial, 'accuracy')), 'accuracy')}, balanced"
                f" {format_value(m.get((level, trivial, 'balanced_accuracy')), 'accuracy')})"
            )
    if ("neurons", "intervention", "accuracy") in m:
        parts.append(
            "intervention judge "
            f"{format_value(m[('neurons', 'intervention', 'accuracy')], 'accuracy')} (balanced "
            f"{format_value(m[('neurons', 'intervention', 'balanced_accuracy')], 'accuracy')})"
        )
    if ("success", "default", "success_rate") in m:
        parts.append(
            f"p>=0.9 in {format_value(m[('success', 'default', 'success_rate')], 'success_rate')}"
            f" of class targets (median {format_value(m.get(('success', 'default', 'median_iterations')))} it)"
        )
    ties = [s for s in _settings(metrics, "bias") if ("bias", s, "flagged") in m]
    found = [s for s in ties if m[("bias", s, "flagged")]]
    via_units = [s for s in ties if m.get(("bias", s, "flagged_by_units"))]
    total = len(ties)
    if total:
        parts.append(
            f"planted ties found {len(found)}/{total} from class explanations,"
            f" {len(via_units)}/{total} from spurious units"
        )
    if ("shortcuts", "default", "found") in m:
        part = (
            f"class shortcuts found {int(m[('shortcuts', 'default', 'found')])}/"
            f"{int(m[('shortcuts', 'default', 'relied')])}, false "
            f"{int(m[('shortcuts', 'default', 'false')])}"
        )
        if ("shortcuts", "fixed", "found") in m:
            part += (
                f" (fixed release: found {int(m[('shortcuts', 'fixed', 'found')])}/"
                f"{int(m[('shortcuts', 'fixed', 'relied')])}, false "
                f"{int(m[('shortcuts', 'fixed', 'false')])})"
            )
        parts.append(part)
    if ("explanations", "default", "found") in m:
        e = {k: int(m[("explanations", "default", k)]) for k in
             ("found", "relied", "false", "confirmed_found", "confirmed_false")}  # fmt: skip
        parts.append(
            f"object-free explanations single out {e['found']}/{e['relied']} (false leads"
            f" {e['false']}; confirmed by the test {e['confirmed_found']}/{e['relied']}, false"
            f" {e['confirmed_false']})"
        )
    if ("baseline", "diffexplainer", "oracle_object_recognised") in m:
        parts.append(
            "oracle sees the object in "
            f"{format_value(m[('baseline', 'diffexplainer', 'oracle_object_recognised')], 'success_rate')}"
            " of DiffExplainer images vs "
            f"{format_value(m.get(('baseline', 'pixel-am', 'oracle_object_recognised')), 'success_rate')}"
            " of pixel-AM"
        )
    return "HEADLINE: " + "; ".join(parts)


def format_text(
    metrics: Sequence[Mapping], neurons: Sequence[Mapping], classes: Sequence[Mapping], world: str
) -> str:
    lines: list[str] = []
    for title, header, rows, note in sections(metrics, neurons, classes):
        lines += ["", title, *("  " + r for r in _table(header, rows))]
        if note:
            lines.append(f"  ({note})")
    lines += ["", headline(metrics, world)]
    return "\n".join(lines)
