"""Scoring one audit against the truth: verdict agreement by judge (neuron and class level),
explanation success, compute cost, and the planted ties' values for the bias table. Pure
computation over an audit's rows and the truth's; `score_into` files the numbers into an
`EvalResult` (dxray/eval/results.py names them). The class-shortcut test, scored from the
catalog, is shortcut_scoring.py; the evaluation that runs the audits, runner.py."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from dxray.eval.classes import (
    FindingRule,
    class_agreement,
    class_rows,
    unit_findings,
    unit_test_findings,
)
from dxray.eval.metrics import SUCCESS_PROB, Agreement, median
from dxray.eval.neurons import any_object_verdicts, neuron_agreement, neuron_rows, unit_verdicts
from dxray.eval.results import DEFAULT, DXRAY, EvalResult
from dxray.judge.verdict import Thresholds, verdict

# The judges an ablation is scored with beside dxray's own (the trivial ones and the older
# presence judges are scored on the main audit only)
ABLATION_JUDGES = ("intervention", "units")


def success_metrics(audit_rows: Sequence[Mapping], seeds: Sequence[int] | None = None) -> dict:
    """Class targets: fraction whose final image reaches p >= 0.9; median iterations and
    seconds of those that do; mean seconds per target overall."""
    rows = [r for r in audit_rows if r["kind"] == "class" and (seeds is None or r["seed"] in seeds)]
    if not rows:
        return {}
    hit = [r for r in rows if r["ok"] and (r["probability"] or 0.0) >= SUCCESS_PROB]
    return {
        "targets": float(len(rows)),
        "success_rate": len(hit) / len(rows),
        "median_iterations": median([float(r["steps"]) for r in hit]),
        "median_seconds": median([float(r["seconds"]) for r in hit]),
        "mean_probability": sum((r["probability"] or 0.0) for r in rows) / len(rows),
    }


def score(
    audit_rows: Sequence[Mapping],
    probe_rows: Sequence[Mapping],
    class_truth: Sequence[Mapping],
    neuron_truth: Sequence[Mapping],
    rule: FindingRule = FindingRule(),
    seeds: Sequence[int] | None = None,
    object_probes: Sequence[str] = (),
    thresholds: Thresholds = Thresholds(),
    interventions: Mapping[tuple[str, int], str] | None = None,
    unit_test: Mapping[tuple[str, str], Mapping] | None = None,
) -> tuple[dict[tuple[str, str], Agreement], list[dict], list[dict]]:
    """Agreements by (level, judge): ("neurons", "dxray"): the unit verdicts the audit shows
    (the unit_summary view's: the unit-shortcut test's where `unit_test` ((class name, unit)
    -> {"verdict": ...}, `dxray.eval.runner.unit_test_calls`) has one, else the majority of
    the audit's per-seed verdicts); ("neurons", "unit test") given `unit_test`, whose
    spurious units (and the attributes that drive them) also make the class rows'
    `flagged_by_units` (else the intervention's spurious units' images do: `unit_findings`);
    ("neurons", "presence"): is the unit's class's object in its images; ("neurons",
    "intervention") given `interventions` ((target_id, seed) -> verdict, see
    `dxray.eval.runner.Interventions`); ("neurons", "any-object") when `object_probes` were
    probed; ("neurons", "always-core"); ("classes", "dxray"), ("classes", "units") given
    `interventions`, ("classes", "never"). Also the neuron rows (with each unit's intervention
    verdict) and the class rows of one audit."""
    neurons = neuron_rows(neuron_truth, unit_verdicts(audit_rows, seeds))
    classes = class_rows(class_truth, probe_rows, rule, seeds)
    out: dict[tuple[str, str], Agreement] = {}
    if unit_test and any(r["seeds"] for r in neurons):
        out["neurons", "unit test"] = neuron_agreement(neurons, calls=unit_test)
        for n in neurons:  # coalesce(unit test, majority), as unit_summary decides
            call = (unit_test.get((n["class_name"], n["unit"])) or {}).get("verdict")
            if n["seeds"] and call is not None:
                n["verdict"] = call
    if any(r["seeds"] for r in neurons):
        for judge in (DXRAY, "always-core"):
            out["neurons", judge] = neuron_agreement(neurons, judge=judge)
        if interventions:
            calls = unit_verdicts(audit_rows, seeds, interventions)
            out["neurons", "intervention"] = neuron_agreement(neurons, calls=calls)
            for n in neurons:
                n["intervention"] = calls.get((n["class_name"], n["unit"]), {}).get("verdict")
            factors = {t["factor"] for t in class_truth}
            found = unit_findings(probe_rows, interventions, factors, rule, seeds)
            tested = unit_test_findings(unit_test, factors) if unit_test else None
            for c in classes:  # the spurious units the catalog shows, as for "dxray" above
                key = (c["class_name"], c["factor"])
                hit = found.get(key)
                c["flagged_by_units"] = (
                    key in tested if tested is not None else bool(hit and hit["flagged"])
                )
        # The unit verdict audits gave before they judged units by intervention: is the unit's
        # own class's object present in its image?
        by_presence = [
            {**r, "verdict": verdict(r["presence"], thresholds)}
            for r in audit_rows
            if r["kind"] == "unit" and r["ok"] and r["presence"] is not None
        ]
        calls = unit_verdicts(by_presence, seeds)
        if calls:
            out["neurons", "presence"] = neuron_agreement(neurons, calls=calls)
        calls = any_object_verdicts(audit_rows, probe_rows, object_probes, thresholds, seeds)
        if calls:
            out["neurons", "any-object"] = neuron_agreement(neurons, calls=calls)
    if classes:
        judges = (DXRAY, "units", "never") if interventions else (DXRAY, "never")
        for judge in judges:
            out["classes", judge] = class_agreement(classes, judge=judge)
    return out, neurons, classes


def run_cost(audit_rows: Sequence[Mapping], seeds: Sequence[int] | None = None) -> dict:
    """Compute seconds per target (the workers' batch time shared among its targets: robust to
    resumes, unlike a run's wall time) and the class targets' median iterations."""
    rows = [r for r in audit_rows if r["ok"] and (seeds is None or r["seed"] in seeds)]
    return {
        "seconds_per_target": median([float(r["seconds"]) for r in rows]),
        "median_class_iterations": median(
            [float(r["steps"]) for r in rows if r["kind"] == "class"]
        ),
    }


def score_into(
    result: EvalResult,
    setting: str,
    audit_rows,
    probe_rows,
    truth: tuple[list[dict], list[dict]],
    rule: FindingRule,
    seeds: Sequence[int] | None,
    **judging,
) -> tuple[dict[tuple[str, str], Agreement], list[dict], list[dict]]:
    """`score` one audit (or the `seeds` subset of it) and add its agreements to `result` as
    `setting`'s: every judge's for the main audit ("default"), dxray's and `ABLATION_JUDGES`'
    for any other."""
    agreements, neurons, classes = score(audit_rows, probe_rows, *truth, rule, seeds, **judging)
    for (level, judge), value in agreements.items():
        if judge == DXRAY or setting == DEFAULT or judge in ABLATION_JUDGES:
            result.add(level, setting, value.as_metrics(), value.n, judge=judge)
    return agreements, neurons, classes


def bias_values(row: Mapping) -> dict[str, float]:
    """A planted tie's numbers, from its class row: the bias table's "bias" and "bias-fixed"
    metrics."""
    return {
        "presence": row["presence"],
        "other_presence": row["other_presence"],
        "difference": row["difference"],
        "cohens_d": row["cohens_d"],
        "flagged": float(row["flagged"]),
        "flagged_by_units": float(bool(row.get("flagged_by_units"))),
        "reliance_logit": row["reliance_logit"],
        "with_object_logprob": row.get("with_object_logprob", math.nan),
        "shortcut_lift": row.get("shortcut_lift"),
        "shortcut_low": row.get("shortcut_low"),
        "shortcut_found": None if "shortcut_found" not in row else float(row["shortcut_found"]),
        "shortcut_with_object": row.get("shortcut_with_object"),
        "explanation_rate": row.get("explanation_rate"),
        "explanation_candidate": (
            None
            if row.get("explanation_candidate") is None
            else float(row["explanation_candidate"])
        ),
    }
