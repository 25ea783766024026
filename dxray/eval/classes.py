"""Class level: which contexts and cues a class's explanations carry, against the
classifier's measured reliance on them.

dxray's finding for (class, factor) comes from attribute probes only, no labelled data: the
segmenter's presence score of the factor's probe ("water", "a watermark") on the class's
explanation images, compared with the same probe on the other classes' explanations. Every
toy scene has some context, so a context being present says little; being present for this
class and much less for the others is the signal. The finding rule (`FindingRule`): mean
presence >= `presence` (0.75: in three of four images or more) and at least `difference`
(0.5) above the other classes' mean. (Set after a 2-seed trial run on the default world,
where 0.5/0.3 flagged factors seen in one image of two; before the reported runs.)

The truth (`dxray.toyworld.truth`, class table): the factor alone, without the object,
raises the class logit by `reliance_logit` over neutral scenes; the class relies on it when
that is >= `FindingRule.reliance` (nats).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch

from dxray.eval.metrics import Agreement, agreement
from dxray.judge.probes import effect_size

ARTICLES = ("a ", "an ", "the ")


@dataclass(frozen=True)
class FindingRule:
    presence: float = 0.75  # mean probe presence over the class's explanations, at least
    difference: float = 0.5  # ... and this much above the other classes' explanations
    reliance: float = 1.0  # truth: the factor alone lifts the class logit by >= this many nats

    def __post_init__(self):
        if not (0 <= self.presence <= 1 and 0 <= self.difference <= 1):
            raise ValueError(f"presence and difference must be in [0, 1]; got {asdict(self)}")

    def finds(self, presence: float, other: float | None) -> bool:
        """A finding: mean `presence` high enough, and `difference` above the other images'
        mean `other` (None or NaN when there are no other images: presence alone decides)."""
        if presence < self.presence:
            return False
        return other is None or math.isnan(other) or presence - other >= self.difference


def probe_factor(probe: str, factors: Iterable[str]) -> str | None:
    """The world factor a probe query names ("a watermark" -> "watermark"), or None."""
    text = probe.strip().lower()
    for article in ARTICLES:
        if text.startswith(article):
            text = text[len(article) :].strip()
            break
    return text if text in set(factors) else None


def class_rows(
    truth_rows: Sequence[Mapping],
    probe_rows: Iterable[Mapping],
    rule: FindingRule = FindingRule(),
    seeds: Sequence[int] | None = None,
) -> list[dict]:
    """One row per (class, factor) of the truth that a probe measures.

    `probe_rows`: rows of the catalog's `probe_scores` view (kind, class_name, seed, probe,
    presence; rows of unit targets are skipped); `seeds`: only those seeds."""
    factors = {t["factor"] for t in truth_rows}
    scores: dict[tuple[str, str], list[float]] = {}
    probes: dict[str, str] = {}
    for row in probe_rows:
        if row.get("kind", "class") != "class" or (seeds is not None and row["seed"] not in seeds):
            continue
        factor = probe_factor(row["probe"], factors)
        if factor is None or row["presence"] is None:
            continue
        probes[factor] = row["probe"]
        scores.setdefault((row["class_name"], factor), []).append(float(row["presence"]))
    audited = {c for c, _ in scores}
    rows = []
    for t in truth_rows:
        cls, factor = t["class"], t["factor"]
        if cls not in audited or factor not in probes:
            continue
        mine = scores.get((cls, factor), [])
        others = [v for (c, f), vals in scores.items() if f == factor and c != cls for v in vals]
        if not mine:
            continue
        mean = sum(mine) / len(mine)
        other = sum(others) / len(others) if others else math.nan
        d = effect_size(torch.tensor(mine), torch.tensor(others)).cohens_d if others else math.nan
        flagged = rule.finds(mean, other)
        relied = float(t["reliance_logit"]) >= rule.reliance
        rows.append(
            {
                "class_name": cls,
                "factor_kind": t["factor_kind"],
                "factor": factor,
                "probe": probes[factor],
                "planted": bool(t["planted"]),
                "reliance_logit": float(t["reliance_logit"]),
                "with_object_logprob": float(t.get("with_object_logprob", math.nan)),
                "relied": relied,
                "images": len(mine),
                "presence": mean,
                "other_presence": other,
                "difference": mean - other if others else math.nan,
                "cohens_d": d,
                "flagged": flagged,
                "agree": flagged == relied,
            }
        )
    return rows


def attach_shortcuts(
    rows: Sequence[dict], shortcut_rows: Iterable[Mapping], factors: Iterable[str]
) -> int:
    """Add the shortcut test's result (the catalog's class_shortcuts rows: class_name,
    attribute, lift, low, high, images, finding, with_object_lift) to each class row of the
    same (class, factor): `shortcut_lift`, `shortcut_low`, `shortcut_high`, `shortcut_images`,
    `shortcut_found`, `shortcut_with_object`, and the object-free explanations' readout
    `explanation_candidate`, `explanation_rate`, `explanation_pool_rate`. Returns how many
    rows got one."""
    factors = set(factors)
    by_pair = {}
    for s in shortcut_rows:
        factor = probe_factor(s["attribute"], factors)
        if factor is not None:
            by_pair[(s["class_name"], factor)] = s
    attached = 0
    for row in rows:
        s = by_pair.get((row["class_name"], row["factor"]))
        if s is None:
            continue
        attached += 1
        row.update(
            shortcut_lift=s["lift"],
            shortcut_low=s["low"],
            shortcut_high=s["high"],
            shortcut_images=s["images"],
            shortcut_found=bool(s["finding"]),
            shortcut_with_object=s.get("with_object_lift"),
            # the object-free explanations' readout (None when the run had no pool)
            explanation_candidate=s.get("candidate"),
            explanation_rate=s.get("explanation_rate"),
            explanation_pool_rate=s.get("pool_rate"),
        )
    return attached


def truth_class_rows(truth_rows: Sequence[Mapping], rule: FindingRule = FindingRule()):
    """One row per (class, factor) of the truth, with nothing found yet: the rows the shortcut
    test is scored on when no explanation was probed."""
    return [
        {
            "class_name": t["class"],
            "factor_kind": t["factor_kind"],
            "factor": t["factor"],
            "planted": bool(t["planted"]),
            "reliance_logit": float(t["reliance_logit"]),
            "with_object_logprob": float(t.get("with_object_logprob", math.nan)),
            "relied": float(t["reliance_logit"]) >= rule.reliance,
            "flagged": False,
        }
        for t in truth_rows
    ]


def class_agreement(rows: Sequence[Mapping], *, judge: str = "dxray") -> Agreement:
    """Agreement of the findings with the measured reliance. judge="never" is the trivial
    judge that finds no bias anywhere (most (class, factor) pairs have none); judge="units"
    scores `flagged_by_units` (`unit_test_findings`, or `unit_findings` for an audit without
    the unit test); judge="shortcuts" the shortcut test's
    findings (`attach_shortcuts`)."""
    if not rows:
        raise ValueError(
            "no (class, factor) pair was probed: audit the classes with judge.probes naming "
            "the world's contexts and cues (e.g. [water, sand, a watermark])"
        )
    truth = ["relied" if r["relied"] else "none" for r in rows]
    calls = {
        "dxray": ["relied" if r["flagged"] else "none" for r in rows],
        "units": ["relied" if r.get("flagged_by_units") else "none" for r in rows],
        "shortcuts": ["relied" if r.get("shortcut_found") else "none" for r in rows],
        "explanations": ["relied" if r.get("explanation_candidate") else "none" for r in rows],
        "never": ["none"] * len(rows),
    }
    if judge not in calls:
        raise ValueError(f"unknown judge {judge!r}; known: {sorted(calls)}")
    return agreement(truth, calls[judge], positive="relied", negative="none")


def unit_test_findings(
    calls: Mapping[tuple[str, str], Mapping], factors: Iterable[str]
) -> set[tuple[str, str]]:
    """Class-level findings from the unit-shortcut test, as the catalog's unit_summary states
    them: (class, factor) for each unit of the class the test calls spurious, driven by that
    factor's attribute. `calls`: (class name, unit) -> {"verdict", "factor"}
    (`dxray.eval.runner.unit_test_calls`)."""
    factors = set(factors)
    found = set()
    for (cls, _), call in calls.items():
        factor = probe_factor(call.get("factor") or "", factors)
        if call.get("verdict") == "spurious" and factor is not None:
            found.add((cls, factor))
    return found


def unit_findings(
    probe_rows: Iterable[Mapping],
    interventions: Mapping[tuple[str, int], str],
    factors: Iterable[str],
    rule: FindingRule = FindingRule(),
    seeds: Sequence[int] | None = None,
) -> dict[tuple[str, str], dict]:
    """Class-level findings from the class's *spurious units* (Salient ImageNet's route): what
    the images of a class's units that the intervention judge calls spurious show, against
    every other unit image. (class, factor) -> {"flagged", "presence", "other_presence",
    "images"}; classes without a spurious unit image have no entry (nothing found)."""
    factors = set(factors)
    scores: dict[tuple[str, int], dict[str, float]] = {}
    owner: dict[tuple[str, int], str] = {}
    for row in probe_rows:
        if row.get("kind") != "unit" or row["class_name"] is None or row["presence"] is None:
            continue
        if seeds is not None and row["seed"] not in seeds:
            continue
        factor = probe_factor(row["probe"], factors)
        if factor is None:
            continue
        key = (row["target_id"], row["seed"])
        scores.setdefault(key, {})[factor] = float(row["presence"])
        owner[key] = row["class_name"]
    out: dict[tuple[str, str], dict] = {}
    for cls in sorted(set(owner.values())):
        mine = [k for k in scores if owner[k] == cls and interventions.get(k) == "spurious"]
        rest = [k for k in scores if k not in set(mine)]
        if not mine:
            continue
        for factor in sorted(factors):
            a = [scores[k][factor] for k in mine if factor in scores[k]]
            b = [scores[k][factor] for k in rest if factor in scores[k]]
            if not a:
                continue
            mean, other = sum(a) / len(a), (sum(b) / len(b) if b else math.nan)
            out[(cls, factor)] = {
                "flagged": rule.finds(mean, other),
                "presence": mean,
                "other_presence": other,
                "images": len(a),
            }
    return out
