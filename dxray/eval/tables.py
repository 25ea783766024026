"""The evaluation's tables: one function per table, each a `Table` (title, header, rows of
text, note) or None when the evaluation has nothing for it, and `evaluation_tables`, all of
them in the order they print. They render from the rows of the catalog's eval tables (metrics,
neurons, classes; dxray/eval/results.py names the metrics, the judge by name), so numbers
rebuilt later from the catalog print the same. The terminal's text and the headline are
dxray/eval/printout.py; the HTML page's evaluation section (dxray/report/evaluation.py) lays
out these same tables. `format_value` is the number format all of them use."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from dxray.eval.results import DEFAULT, DXRAY, JUDGES, Metrics
from dxray.text import MISSING

PERCENT = {"accuracy", "balanced_accuracy", "coverage", "decided_accuracy", "precision", "recall", "f1",
           "success_rate", "oracle_object_recognised"}  # fmt: skip
AGREEMENT = ("n", "balanced_accuracy", "accuracy", "coverage", "precision", "recall")


class Table(NamedTuple):
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""  # printed under the table, in parentheses


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


def _yes(flag) -> str:
    return "yes" if flag else "no"


def _agreement_cells(m: Metrics, section: str, setting: str, judge: str | None = None) -> list:
    """The AGREEMENT columns of one judge's (or one subset's) agreement."""
    return [
        format_value(
            int(m.get(section, setting, k, judge=judge))
            if k == "n"
            else m.get(section, setting, k, judge=judge),
            k,
        )
        for k in AGREEMENT
    ]


# ---------------------------------------------------------------------------------------------
# The tables, in the order they print: each None when the evaluation has nothing for it
# ---------------------------------------------------------------------------------------------


def agreement_table(m: Metrics) -> Table | None:
    """Every judge's verdicts against the zoo's truth, per level (the main audit), in the order
    `JUDGES` lists them."""
    rows = [
        [level, judge, *_agreement_cells(m, level, DEFAULT, judge)]
        for level, judges in JUDGES.items()
        for judge in judges
        if m.has(level, DEFAULT, "n", judge=judge)
    ]
    if not rows:
        return None
    return Table(
        "Verdict agreement with the zoo's ground truth (positive: spurious unit / relied-on factor)",
        ["level", "judge", *AGREEMENT],
        rows,
        "accuracy counts 'uncertain' as wrong; coverage = share with a core/spurious call",
    )


def labels_table(m: Metrics) -> Table | None:
    """`dxray score`: the agreement with the human labels, per subset of the labelled units."""
    subsets = m.settings("labels-rank")
    if not subsets:
        return None
    return Table(
        "Agreement with the human labels, by the feature's rank for its class",
        ["subset", *AGREEMENT],
        [[subset, *_agreement_cells(m, "labels-rank", subset)] for subset in subsets],
        "unanimous: the pairs on which every worker gave the same side",
    )


NEURON_CALLS = {DXRAY: ("verdict", "dxray"), "intervention": ("intervention", "intervention judge")}


def neuron_confusion_table(neurons: Sequence[Mapping], judge: str) -> Table | None:
    """The audited units' truth against `judge`'s calls (`NEURON_CALLS`: its column, its name)."""
    column, name = NEURON_CALLS[judge]
    judged = [r for r in neurons if r["seeds"] and r.get(column)]
    if not judged:
        return None
    rows = []
    for truth in ("spurious", "core"):
        calls = [r[column] for r in judged if r["truth"] == truth]
        counts = [str(sum(c == v for c in calls)) for v in ("spurious", "core", "uncertain")]
        rows.append([f"truth {truth}", *counts])
    title = f"Confusion, neurons (rows: truth, columns: {name})"
    return Table(title, ["", "spurious", "core", "uncertain"], rows, "")


CLASS_CALLS = {DXRAY: ("flagged", "dxray"), "shortcuts": ("shortcut_found", "shortcut test")}


def class_confusion_table(classes: Sequence[Mapping], judge: str) -> Table | None:
    """The (class, factor) pairs' truth (relied on or not) against `judge`'s calls
    (`CLASS_CALLS`: its column, its name), over the pairs it called."""
    column, name = CLASS_CALLS[judge]
    called = [r for r in classes if r.get(column) is not None]
    if not called:
        return None
    rows = []
    for relied in (True, False):
        flags = [bool(r[column]) for r in called if r["relied"] == relied]
        rows.append([f"truth {'relied' if relied else 'none'}",
                     str(sum(flags)), str(len(flags) - sum(flags))])  # fmt: skip
    title = f"Confusion, classes x factors (rows: truth, columns: {name})"
    return Table(title, ["", "found", "not found"], rows, "")


def success_table(m: Metrics) -> Table | None:
    """How often a class explanation reaches p >= 0.9, and at what cost."""
    if not m.has("success", DEFAULT, "targets"):
        return None
    keys = ("targets", "success_rate", "median_iterations", "median_seconds", "mean_probability")
    return Table(
        "Explanation success (class targets; final image, p >= 0.9)",
        list(keys),
        [[format_value(m.get("success", DEFAULT, k), k) for k in keys]],
        "iterations and seconds: medians over the targets that reach p >= 0.9",
    )


def bias_table(m: Metrics) -> Table | None:
    """The planted ties as the attribute probes find them, in both releases."""
    rows = []
    for tie in m.settings("bias"):
        if not m.has("bias", tie, "presence"):
            continue  # only the oracle's rates: the tie's class was not probed
        found, fixed = _tie(m, "bias", tie), _tie(m, "bias-fixed", tie)
        oracle = found["oracle_rate"]
        rows.append(
            [
                tie,
                MISSING
                if oracle is None
                else f"{format_value(oracle)} vs {format_value(found['oracle_other_rate'])}",
                format_value(found["reliance_logit"]),
                format_value(found["with_object_logprob"]),
                f"{format_value(found['presence'])} vs {format_value(found['other_presence'])}",
                format_value(found["cohens_d"]),
                _yes(found["flagged"]),
                _yes(found["flagged_by_units"]),
                *(
                    [
                        format_value(fixed["reliance_logit"]),
                        format_value(fixed["cohens_d"]),
                        _yes(fixed["flagged"]),
                    ]
                    if m.has("bias-fixed", tie, "difference")
                    else [MISSING] * 3
                ),
            ]
        )
    if not rows:
        return None
    return Table(
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


TIE_METRICS = ("oracle_rate", "oracle_other_rate", "reliance_logit", "with_object_logprob",
               "presence", "other_presence", "cohens_d", "flagged", "flagged_by_units")  # fmt: skip


def _tie(m: Metrics, section: str, tie: str) -> dict[str, float | None]:
    """The bias table's metrics of one tie ("bias" or "bias-fixed"): None where not stored."""
    return {k: m.get(section, tie, k) for k in TIE_METRICS}


def shortcut_table(classes: Sequence[Mapping], fixed_classes: Sequence[Mapping]) -> Table | None:
    """The class-shortcut test's call on every pair relied on, planted or found, beside the
    truth and the fixed release's call."""
    scored = [r for r in classes if r.get("shortcut_found") is not None]
    if not scored:
        return None
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
                _yes(r["planted"]),
                format_value(r["reliance_logit"]),
                _interval(r),
                str(r.get("shortcut_images")),
                _yes(r["shortcut_found"]),
                format_value(r.get("shortcut_with_object")),
                _lead(r),
                format_value(f["reliance_logit"]) if f else MISSING,
                _interval(f) if f else MISSING,
                _yes(f["shortcut_found"]) if f else MISSING,
            ]
        )
    return Table(
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


def shortcut_cost_table(m: Metrics) -> Table:
    """Per release, the pairs each method finds, its false findings and what it cost."""
    keys = ("found", "relied", "false", "pairs", "renders", "kept", "seconds")
    rows = [
        [f"{s}: counterfactual"] + [format_value(m.get("shortcuts", s, k), k) for k in keys]
        for s in m.settings("shortcuts")
    ]
    rows += [
        [f"{s}: explanations"]
        + [format_value(m.get("explanations", s, k), k) for k in ("found", "relied", "false")]
        + [MISSING]
        + [format_value(m.get("explanations", s, k), k) for k in ("renders", "kept", "seconds")]
        for s in m.settings("explanations")
    ]
    return Table(
        "Class shortcuts: found, false findings and cost",
        ["release: method", *keys],
        rows,
        "counterfactual: the vocabulary's object-free renders (renders, kept, CPU"
        " seconds); explanations: candidates singled out by the object-free explanations"
        " (the pool's renders, those with no object left, seconds)",
    )


def baseline_table(m: Metrics) -> Table | None:
    """DiffExplainer against pixel-space activation maximisation (and real scenes)."""
    methods = m.settings("baseline")
    if not methods:
        return None
    keys = ("mean_probability", "success_rate", "oracle_object_recognised",
            "oracle_context_confidence", "statistics_distance", "median_iterations")  # fmt: skip
    return Table(
        "DiffExplainer vs pixel-space activation maximisation (same class targets, seeds, budget)",
        ["method", *keys],
        [
            [method] + [format_value(m.get("baseline", method, k), k) for k in keys]
            for method in methods
        ],  # fmt: skip
        "statistics_distance: scene statistics vs real scenes, in real-scene std units (0 = real)",
    )


# The ablations' agreement columns: dxray's and the judge scored beside it, per level
ABLATION_JUDGES = (("neurons", DXRAY), ("neurons", "intervention"), ("classes", DXRAY),
                   ("classes", "units"))  # fmt: skip


def ablation_table(m: Metrics) -> Table | None:
    """The ablations' audits (and subsets of the main audit's seeds), side by side."""
    settings = m.settings("cost")
    settings += [s for s in m.settings("neurons", judge=DXRAY) if s.startswith("seeds=")]
    if not settings:
        return None
    rows = [
        [
            s,
            *(
                format_value(m.get(level, s, "balanced_accuracy", judge=judge), "accuracy")
                for level, judge in ABLATION_JUDGES
            ),
            format_value(m.get("success", s, "success_rate"), "success_rate"),
            format_value(m.get("cost", s, "seconds_per_target")),
            format_value(m.get("cost", s, "median_class_iterations")),
        ]
        for s in settings
    ]
    return Table(
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


def evaluation_tables(
    metrics: Sequence[Mapping], neurons: Sequence[Mapping], classes: Sequence[Mapping]
) -> list[Table]:
    """Every table of the evaluation that `metrics` and the rows hold, in the order they print.
    `classes`: the class rows of both releases (`release` "biased" or "fixed")."""
    m = Metrics(metrics)
    fixed = [r for r in classes if r.get("release") == "fixed"]
    classes = [r for r in classes if r.get("release", "biased") == "biased"]
    # 1. Agreement
    tables = [
        agreement_table(m),
        labels_table(m),
        neuron_confusion_table(neurons, DXRAY),
        neuron_confusion_table(neurons, "intervention"),
        class_confusion_table(classes, DXRAY),
        # 2. Success
        success_table(m),
        # 3. Bias discovery
        bias_table(m),
    ]
    # 3b. The class-shortcut test
    shortcuts = shortcut_table(classes, fixed)
    if shortcuts is not None:
        tables += [class_confusion_table(classes, "shortcuts"), shortcuts, shortcut_cost_table(m)]
    # 4. Baseline, 5. Ablations
    tables += [baseline_table(m), ablation_table(m)]
    return [t for t in tables if t is not None]
