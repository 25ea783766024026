"""The unit-shortcut test: is a class's unit driven more by an attribute without any object than
by the class's own object?

    rows = unit_rows(renders, units, attributes, findings, rule)

A unit audited for class c (one of c's top units, or listed for c) is read on the images the
class-shortcut test already renders (dxray.shortcuts.render): its channel mean on each
attribute's object-free images, and on c's object drawn on the vocabulary's scenes.

- factor response: the unit's mean on the object-free images of each *factor* (c's findings,
  the attributes c relies on without its object; if c has none, every attribute), and the
  factor that drives it most;
- object response: its mean on c's with-object images (the object on a scene, no overlay),
  leaving out the scenes that are c's findings (they would add the factor to the object);
- margin = factor response - object response, with a percentile bootstrap interval (images
  resampled within each side, seeded).

Verdict: **spurious** when the interval lies above 0 (the factor alone drives the unit more
than the object does), **core** when it lies below 0, **uncertain** otherwise, or when either
side has fewer than `min_images` images. This asks the toy ground truth's own question of a
unit (dxray.toyworld.truth: object alone vs planted factor alone, margin > 0) on rendered
images, as the class-shortcut test asks the truth's class question; the cut is the truth's
(0), with the interval asked to exclude it (rule of 2026-12-05, chosen before measuring).

Unlike the intervention judge (dxray.judge.intervention), which asks "what drives this unit
most, and is it an object?", it asks "for this class, does its object or a factor without it
drive the unit?": a unit that another class's object drives strongly, but that this class's
object leaves silent while water wakes it, is this class's spurious unit (docs/EVALUATION.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from dxray.shortcuts.score import KEPT, RESAMPLES
from dxray.shortcuts.vocabulary import Attribute


@dataclass(frozen=True)
class UnitRule:
    confidence: float = 0.95  # of the margin's bootstrap interval
    min_images: int = 4  # usable images on each side

    def verdict(self, low: float, high: float, images: tuple[int, int]) -> str:
        if min(images) < self.min_images or not (math.isfinite(low) and math.isfinite(high)):
            return "uncertain"
        if low > 0:
            return "spurious"
        if high < 0:
            return "core"
        return "uncertain"


@dataclass(frozen=True)
class UnitTarget:
    class_index: int
    layer: str
    channel: int

    @property
    def unit(self) -> str:
        return f"{self.layer}:{self.channel}"


def unit_rows(
    renders: Sequence[Mapping],
    units: Sequence[UnitTarget],
    attributes: Sequence[Attribute],
    findings: Mapping[int, Sequence[str]],
    rule: UnitRule = UnitRule(),
    *,
    seed: int = 0,
    object_seeds: int | None = None,
) -> list[dict]:
    """One row per unit: its factor and object responses, the margin and its interval, the
    verdict. `renders`: the test's rendered rows (variant, scene, overlay, class_index,
    status, `unit_means`: layer -> channel means); `findings`: class -> the attributes the
    class-shortcut test found for it. `object_seeds`: read only the with-object images of
    seeds below it (every class the same number, whatever else was rendered for findings)."""
    kept = [r for r in renders if r["status"] == KEPT and r.get("unit_means")]
    if object_seeds is not None:
        kept = [r for r in kept if r["variant"] == "object_free" or r["seed"] < object_seeds]
    by_attribute: dict[str, list[Mapping]] = {a.name: [] for a in attributes}
    objects: dict[int, list[Mapping]] = {}
    for r in kept:
        if r["variant"] == "object_free":
            name = r["overlay"] or r["scene"]
            if name in by_attribute:
                by_attribute[name].append(r)
        elif r["overlay"] is None and r["class_index"] is not None:
            objects.setdefault(int(r["class_index"]), []).append(r)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for target in units:
        found = [a for a in findings.get(target.class_index, ()) if a in by_attribute]
        factors = found or [a.name for a in attributes]
        responses = {a: _values(by_attribute[a], target) for a in factors}
        responses = {a: v for a, v in responses.items() if len(v)}
        scenes = set(found)
        own = objects.get(target.class_index, [])
        object_values = _values([r for r in own if r["scene"] not in scenes] or own, target)
        row = {
            "class_index": target.class_index,
            "unit": target.unit,
            "layer": target.layer,
            "channel": target.channel,
            "factors_from": "findings" if found else "vocabulary",
        }
        if not responses or not len(object_values):
            missing = "object-free images" if not responses else "images of the class's object"
            rows.append({**row, "verdict": "uncertain", "note": f"no usable {missing}"})
            continue
        factor = max(responses, key=lambda a: (float(responses[a].mean()), a))
        values = responses[factor]
        margin = float(values.mean() - object_values.mean())
        low, high = _interval(values, object_values, rule.confidence, generator)
        images = (len(values), len(object_values))
        rows.append(
            {
                **row,
                "factor": factor,
                "factor_response": float(values.mean()),
                "object_response": float(object_values.mean()),
                "margin": margin,
                "low": low,
                "high": high,
                "factor_images": images[0],
                "object_images": images[1],
                "verdict": rule.verdict(low, high, images),
                "note": None if min(images) >= rule.min_images else "too few usable images",
            }
        )
    return rows


def _values(rows: Sequence[Mapping], target: UnitTarget) -> torch.Tensor:
    """The unit's channel mean on each row that has its layer."""
    out = []
    for r in rows:
        means = dict(r["unit_means"]).get(target.layer)
        if means is not None and target.channel < len(means):
            out.append(float(means[target.channel]))
    return torch.tensor(out, dtype=torch.float64)


def _interval(
    a: torch.Tensor, b: torch.Tensor, confidence: float, generator
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) - mean(b), each side resampled on its own."""
    ia = torch.randint(len(a), (RESAMPLES, len(a)), generator=generator)
    ib = torch.randint(len(b), (RESAMPLES, len(b)), generator=generator)
    diffs = a[ia].mean(1) - b[ib].mean(1)
    tail = (1 - confidence) / 2
    q = torch.quantile(diffs, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(q[0]), float(q[1])
