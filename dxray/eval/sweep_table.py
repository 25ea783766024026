"""The sweep's table: the worlds' results (`sweep.py`'s result.json) pooled into the claims
docs/EVALUATION.md makes. Pure computation; its text and scatter are dxray.eval.sweep_text's.

    table = pool_sweep(read_sweep("sweeps", seed=1))
    print(format_sweep(table))          # ends with "SWEEP: 8 worlds; class shortcuts found ..."
    write_scatter(table, "docs/sweep-calibration.png")

Definitions (fixed before the sweep ran, docs/EVALUATION.md "The sweep"): a (class, factor)
pair is *relied on* when the truth's reliance is >= `RELIED` nats, *unrelated* below
`UNRELATED`, and "between" otherwise (reported apart: neither a miss nor a false finding).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from dxray.catalog.writer import json_safe
from dxray.eval.metrics import agreement

RELIED = 1.0  # nats: the truth's "relies on" (`FindingRule.reliance`)
UNRELATED = 0.5  # nats: below it, a finding is false
RELIANCE_BINS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)  # lower edges of the detection curve's bins
BOOTSTRAP = 2000
GOALS = {  # issue #20's goals, chosen before measuring
    "worlds": 8,
    "class_recall": 0.95,
    "class_false_total": 1,
    "spearman": 0.9,
    "units_balanced": 0.95,
    "units_spurious": 20,
    "explanations_recall": 0.8,
    "false_leads_per_world": 1.0,
}


@dataclass
class SweepTable:
    worlds: list[str] = field(default_factory=list)
    classes: dict = field(default_factory=dict)  # the counterfactual test's counts
    curve: list[dict] = field(default_factory=list)  # detection by truth reliance
    breakdown: list[dict] = field(default_factory=list)  # relied-on ties found, by group
    calibration: dict = field(default_factory=dict)  # lift vs reliance
    explanations: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)  # the intervention judge (the verdicts table)
    unit_test: dict = field(default_factory=dict)  # the unit-shortcut test (unit_shortcuts)
    stability: list[dict] = field(default_factory=list)
    per_world: list[dict] = field(default_factory=list)
    goals: list[dict] = field(default_factory=list)
    points: list[dict] = field(default_factory=list)  # the scatter's (reliance, lift, ...)

    def to_json(self) -> str:
        return json.dumps(json_safe(asdict(self)), indent=1)


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    n = len(x)
    if n < 2 or n != len(y):
        return math.nan
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(ranks(x), ranks(y))


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def unit_scores(truth: Sequence[str], calls: Sequence[str | None]) -> dict[str, float]:
    a = agreement(truth, [c or "uncertain" for c in calls])
    return {
        "accuracy": a.accuracy,
        "balanced_accuracy": a.balanced_accuracy,
        "recall": a.recall,
        "precision": a.precision,
    }


def bootstrap_units(
    truth: Sequence[str], calls: Sequence[str | None], *, resamples: int = BOOTSTRAP, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of `unit_scores`, resampling units with replacement."""
    rng = random.Random(seed)
    n = len(truth)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        t = [truth[i] for i in idx]
        if len(set(t)) < 2:
            continue
        for k, v in unit_scores(t, [calls[i] for i in idx]).items():
            if not math.isnan(v):
                draws.setdefault(k, []).append(v)
    return {
        k: (_percentile(sorted(v), 0.025), _percentile(sorted(v), 0.975)) for k, v in draws.items()
    }


def verdict_changes(reference: Sequence[Mapping], rerun: Sequence[Mapping]) -> dict:
    """Two runs of one audit (rows of the catalog's `audit` view), compared per (target, seed):
    unit verdicts that changed, how far the share of activation kept moved, class targets
    whose success (p >= 0.9 on the final image) changed."""
    from dxray.eval.metrics import SUCCESS_PROB

    def by_key(rows):
        return {(r["target_id"], int(r["seed"])): r for r in rows if r["ok"]}

    a, b = by_key(reference), by_key(rerun)
    common = sorted(set(a) & set(b))
    units = [k for k in common if a[k]["kind"] == "unit"]
    classes = [k for k in common if a[k]["kind"] == "class"]
    changes = [
        {"target": k[0], "seed": k[1], "from": a[k]["verdict"], "to": b[k]["verdict"],
         "kept_from": a[k].get("kept"), "kept_to": b[k].get("kept"),
         "activation_from": a[k].get("activation"), "activation_to": b[k].get("activation")}
        for k in units if a[k]["verdict"] != b[k]["verdict"]
    ]  # fmt: skip
    moved = sorted(
        abs(a[k]["kept"] - b[k]["kept"])
        for k in units
        if a[k].get("kept") is not None and b[k].get("kept") is not None
    )
    succeeded = [(a[k]["probability"] or 0) >= SUCCESS_PROB for k in classes]
    succeeded_b = [(b[k]["probability"] or 0) >= SUCCESS_PROB for k in classes]
    return {
        "units": len(units),
        "unit_changes": len(changes),
        "kept_change_median": moved[len(moved) // 2] if moved else math.nan,
        "kept_change_max": moved[-1] if moved else math.nan,
        "classes": len(classes),
        "class_success_changes": sum(x != y for x, y in zip(succeeded, succeeded_b, strict=True)),
        "changes": changes,
    }


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------


def _band(reliance: float) -> str:
    return "relied" if reliance >= RELIED else "unrelated" if reliance < UNRELATED else "between"


def _bin_label(i: int) -> str:
    lo = RELIANCE_BINS[i]
    hi = RELIANCE_BINS[i + 1] if i + 1 < len(RELIANCE_BINS) else None
    return (f"< {RELIANCE_BINS[1]:g}" if i == 0 else
            f"{lo:g}-{hi:g}" if hi is not None else f">= {lo:g}")  # fmt: skip


def _bin(reliance: float) -> int:
    return max(i for i, lo in enumerate(RELIANCE_BINS) if i == 0 or reliance >= lo)


def _count(rows: Sequence[Mapping], key: str) -> dict[str, int]:
    bands = {b: [r for r in rows if _band(r["reliance_logit"]) == b] for b in
             ("relied", "between", "unrelated")}  # fmt: skip
    return {
        "relied": len(bands["relied"]),
        "found": sum(bool(r.get(key)) for r in bands["relied"]),
        "between": len(bands["between"]),
        "between_flagged": sum(bool(r.get(key)) for r in bands["between"]),
        "unrelated": len(bands["unrelated"]),
        "false": sum(bool(r.get(key)) for r in bands["unrelated"]),
    }


def pool_sweep(results: Sequence[Mapping], reruns: Sequence[Mapping] = ()) -> SweepTable:
    """The pooled table of the worlds' results (and of `reruns`, see `verdict_changes`)."""
    table = SweepTable(worlds=[r["world"] for r in results])
    pairs = [{**p, "world": r["world"]} for r in results for p in r["pairs"]]
    tested = [p for p in pairs if p.get("shortcut_found") is not None]

    # 1. The counterfactual test: recall, false findings, the curve, where it falls short
    table.classes = _count(tested, "shortcut_found")
    for i in range(len(RELIANCE_BINS)):
        inside = [p for p in tested if _bin(p["reliance_logit"]) == i]
        found = sum(bool(p["shortcut_found"]) for p in inside)
        table.curve.append(
            {"reliance": _bin_label(i), "pairs": len(inside), "found": found,
             "rate": found / len(inside) if inside else math.nan}
        )  # fmt: skip
    relied = [p for p in tested if p["reliance_logit"] >= RELIED]
    groups = {
        "scene ties": lambda p: p["factor_kind"] == "context" and p["planted"],
        "cue ties": lambda p: p["factor_kind"] == "cue" and p["planted"],
        "unplanted": lambda p: not p["planted"],
        "class with 1 tie": lambda p: p["planted"] and p["ties_on_class"] == 1,
        "class with 2 ties": lambda p: p["planted"] and p["ties_on_class"] == 2,
        "planted p < 0.7": lambda p: p["planted"] and p["planted_p"] < 0.7,
        "planted p 0.7-0.85": lambda p: p["planted"] and 0.7 <= p["planted_p"] < 0.85,
        "planted p >= 0.85": lambda p: p["planted"] and p["planted_p"] >= 0.85,
    }
    planted = [p for p in tested if p["planted"]]
    for name, test in groups.items():
        mine = [p for p in relied if test(p)]
        row = {"group": name, "relied": len(mine),
               "found": sum(bool(p["shortcut_found"]) for p in mine)}  # fmt: skip
        explored = [p for p in mine if p.get("explanation_candidate") is not None]
        row["singled_out"] = sum(bool(p["explanation_candidate"]) for p in explored)
        row["planted"] = sum(test(p) for p in planted) if name != "unplanted" else None
        table.breakdown.append(row)

    # 2. Calibration: the test's lift against the truth's reliance, over every pair
    scored = [p for p in tested if p.get("shortcut_lift") is not None]
    x = [p["reliance_logit"] for p in scored]
    y = [p["shortcut_lift"] for p in scored]
    errors = [abs(a - b) for a, b in zip(x, y, strict=True)]
    relied_errors = [e for e, a in zip(errors, x, strict=True) if a >= RELIED]
    table.calibration = {
        "pairs": len(scored),
        "spearman": spearman(x, y),
        "pearson": pearson(x, y),
        "mae": sum(errors) / len(errors) if errors else math.nan,
        "mae_relied": sum(relied_errors) / len(relied_errors) if relied_errors else math.nan,
        "max_error": max(errors) if errors else math.nan,
    }
    table.calibration["by_kind"] = [
        {"pairs": kind, "n": len(mine), "spearman": spearman(
            [p["reliance_logit"] for p in mine], [p["shortcut_lift"] for p in mine]),
         "mae": sum(abs(p["shortcut_lift"] - p["reliance_logit"]) for p in mine) / len(mine),
         "mean_lift_minus_reliance": sum(p["shortcut_lift"] - p["reliance_logit"]
                                         for p in mine) / len(mine)}
        for kind, test in (("scene", lambda p: p["factor_kind"] == "context"),
                           ("cue", lambda p: p["factor_kind"] == "cue"),
                           ("scene, relied", lambda p: p["factor_kind"] == "context"
                            and p["reliance_logit"] >= RELIED),
                           ("cue, relied", lambda p: p["factor_kind"] == "cue"
                            and p["reliance_logit"] >= RELIED))
        for mine in [[p for p in scored if test(p)]]
        if mine
    ]  # fmt: skip
    table.points = [
        {"world": p["world"], "pair": f"{p['class_name']}-{p['factor']}",
         "kind": p["factor_kind"], "reliance": p["reliance_logit"], "lift": p["shortcut_lift"],
         "found": bool(p["shortcut_found"])}
        for p in scored
    ]  # fmt: skip

    # 3. The object-free explanations alone
    explored = [p for p in pairs if p.get("explanation_candidate") is not None]
    table.explanations = _count(explored, "explanation_candidate")
    n_worlds = len({p["world"] for p in explored}) or 1
    table.explanations["false_per_world"] = table.explanations["false"] / n_worlds

    # 4. Units, pooled: the intervention judge's verdicts and the unit-shortcut test's
    units = [{**u, "world": r["world"]} for r in results for u in r["units"] if u["seeds"]]
    table.units = unit_summary(units, "verdict")
    tested = [u for u in units if u.get("unit_test") is not None]
    if tested:
        table.unit_test = unit_summary(tested, "unit_test")

    # 5. Per world
    for r in results:
        ps = [p for p in r["pairs"] if p.get("shortcut_found") is not None]
        c = _count(ps, "shortcut_found")
        e = _count([p for p in ps if p.get("explanation_candidate") is not None],
                   "explanation_candidate")  # fmt: skip
        us = [u for u in r["units"] if u["seeds"]]
        spur = [u for u in us if u["truth"] == "spurious"]
        table.per_world.append(
            {"world": r["world"], "ties": len(r["ties"]), "relied": c["relied"],
             "found": c["found"], "false": c["false"], "between": c["between"],
             "between_flagged": c["between_flagged"], "singled_out": e["found"],
             "false_leads": e["false"], "units": len(us), "spurious": len(spur),
             "spurious_found": sum(u["verdict"] == "spurious" for u in spur),
             "unit_test_found": sum(u.get("unit_test") == "spurious" for u in spur)
             if any(u.get("unit_test") for u in us) else None,
             "core_called_spurious": sum(u["verdict"] == "spurious" for u in us
                                         if u["truth"] == "core")}
        )  # fmt: skip

    table.stability = [{k: v for k, v in r.items() if k != "changes"} for r in reruns]
    table.goals = _goals(table)
    return table


def unit_summary(units: Sequence[Mapping], key: str) -> dict:
    """Pooled scores of the units' calls in `key` against their truth, with bootstrap
    intervals, and the counts per selection."""
    truth = [u["truth"] for u in units]
    calls = [u[key] for u in units]
    out = {"units": len(units), "spurious": truth.count("spurious"),
           "uncertain": sum(c not in ("core", "spurious") for c in calls)}  # fmt: skip
    if len(set(truth)) == 2:
        out |= unit_scores(truth, calls)
        out["intervals"] = bootstrap_units(truth, calls)
    if key == "verdict":
        out["errors"] = unit_errors(units)
    out["by_selection"] = [
        {"selection": sel, "units": len(mine),
         "spurious": sum(u["truth"] == "spurious" for u in mine),
         "spurious_called_spurious": sum(u["truth"] == "spurious" and u[key] == "spurious"
                                         for u in mine),
         "core_called_spurious": sum(u["truth"] == "core" and u[key] == "spurious"
                                     for u in mine),
         "uncertain": sum(u[key] not in ("core", "spurious") for u in mine)}
        for sel in sorted({u.get("selection", "top") for u in units})
        for mine in [[u for u in units if u.get("selection", "top") == sel]]
    ]  # fmt: skip
    return out


SILENT = 1e-3  # the intervention judge's floor (`judge_units`): at or below, it abstains


def unit_errors(units: Sequence[Mapping]) -> list[dict]:
    """Where unit verdicts go wrong, measured: per (truth, verdict) the units, how many were
    silent on their own explanation image (activation <= `SILENT`: the judge abstains), and
    the median ratio of the explanation's activation to the unit's truth response to what
    should drive it (its planted factor for a spurious unit, its class's object for a core
    one): far above 1, the explanation found a stronger stimulus than the truth measured; far
    below, it did not reach it."""
    rows = []
    for truth in ("spurious", "core"):
        for verdict in ("spurious", "core", "uncertain"):
            mine = [u for u in units if u["truth"] == truth and
                    (u["verdict"] if u["verdict"] in ("spurious", "core") else "uncertain")
                    == verdict]  # fmt: skip
            if not mine:
                continue
            key = "factor_response" if truth == "spurious" else "object_response"
            ratios = sorted(
                u["activation"] / u[key]
                for u in mine
                if u.get("activation") is not None and u.get(key) and u[key] > SILENT
            )
            kept = sorted(u["kept"] for u in mine if u.get("kept") is not None)
            rows.append(
                {"truth": truth, "verdict": verdict, "units": len(mine),
                 "silent": sum((u.get("activation") or 0.0) <= SILENT for u in mine),
                 "activation_vs_truth_median": ratios[len(ratios) // 2] if ratios else math.nan,
                 "kept_median": kept[len(kept) // 2] if kept else math.nan}
            )  # fmt: skip
    return rows


def _goals(t: SweepTable) -> list[dict]:
    c, e = t.classes, t.explanations
    u = t.unit_test or t.units  # the unit-shortcut test where the worlds have it

    def ratio(a, b):
        return a / b if b else math.nan

    rows = [
        ("worlds", f">= {GOALS['worlds']}", len(t.worlds), len(t.worlds) >= GOALS["worlds"]),
        ("relied-on ties found", f">= {GOALS['class_recall']:.0%}",
         ratio(c["found"], c["relied"]), ratio(c["found"], c["relied"]) >= GOALS["class_recall"]),
        ("false findings, total", f"<= {GOALS['class_false_total']}", c["false"],
         c["false"] <= GOALS["class_false_total"]),
        ("spearman lift vs reliance", f">= {GOALS['spearman']}", t.calibration["spearman"],
         t.calibration["spearman"] >= GOALS["spearman"]),
        ("units balanced accuracy", f">= {GOALS['units_balanced']:.0%}",
         u.get("balanced_accuracy", math.nan),
         u.get("balanced_accuracy", math.nan) >= GOALS["units_balanced"]),
        ("truly spurious units", f">= {GOALS['units_spurious']}", u["spurious"],
         u["spurious"] >= GOALS["units_spurious"]),
        ("explanations single out", f">= {GOALS['explanations_recall']:.0%}",
         ratio(e["found"], e["relied"]),
         ratio(e["found"], e["relied"]) >= GOALS["explanations_recall"]),
        ("false leads per world", f"<= {GOALS['false_leads_per_world']:g}",
         e["false_per_world"], e["false_per_world"] <= GOALS["false_leads_per_world"]),
    ]  # fmt: skip
    return [{"goal": g, "target": tg, "got": got, "met": bool(met)} for g, tg, got, met in rows]
