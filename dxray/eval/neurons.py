"""Neuron level: each audited unit's verdict against the zoo's core/spurious label.

A unit's label comes from an intervention on real scenes (`dxray.toyworld.truth`): its mean
activation on the class's object on neutral backgrounds vs on the planted context or cue
alone. dxray's call comes from its explanation images: is the class's object in them (core)
or not (spurious)? Seeds of one unit are combined by `dxray.judge.verdict.aggregate`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dxray.eval.metrics import Agreement, agreement
from dxray.judge.verdict import Thresholds, aggregate, verdict


def unit_key(class_name: str, layer: str, channel: int) -> tuple[str, str]:
    return (class_name, f"{layer}:{int(channel)}")


def unit_verdicts(
    audit_rows: Iterable[Mapping],
    seeds: Sequence[int] | None = None,
    calls: Mapping[tuple[str, int], str] | None = None,
) -> dict[tuple[str, str], dict]:
    """(class, "layer:channel") -> {"verdict", "presence", "seeds"} over the usable unit rows
    of an audit (rows of the catalog's `audit` view); `seeds`: only those seeds; `calls`:
    (target_id, seed) -> verdict from another judge, used instead of the rows' own verdicts
    (rows it has no call for are left out)."""
    grouped: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for row in audit_rows:
        if row["kind"] != "unit" or not row["ok"] or row["class_name"] is None:
            continue
        if seeds is not None and row["seed"] not in seeds:
            continue
        call = row["verdict"] if calls is None else calls.get((row["target_id"], row["seed"]))
        if call is None:
            continue
        key = unit_key(row["class_name"], row["layer"], row["channel"])
        grouped.setdefault(key, []).append((call, row["presence"]))
    return {
        key: {
            "verdict": aggregate([call for call, _ in judged]),
            "presence": sum(p for _, p in judged) / len(judged),
            "seeds": len(judged),
        }
        for key, judged in grouped.items()
    }


def any_object_verdicts(
    audit_rows: Iterable[Mapping],
    probe_rows: Iterable[Mapping],
    object_probes: Iterable[str],
    thresholds: Thresholds = Thresholds(),
    seeds: Sequence[int] | None = None,
) -> dict[tuple[str, str], dict]:
    """Like `unit_verdicts`, but the presence of an image is that of the most present object
    among `object_probes` (every class's object query), not only the unit's own class: a
    unit whose strongest stimulus is another class's object is still an object unit.
    `probe_rows`: rows of the `probe_scores` view (target_id, seed, probe, presence)."""
    wanted = set(object_probes)
    best: dict[tuple[str, int], float] = {}
    for p in probe_rows:
        if p["probe"] in wanted and p["presence"] is not None:
            key = (p["target_id"], p["seed"])
            best[key] = max(best.get(key, 0.0), float(p["presence"]))
    rows = []
    for row in audit_rows:
        presence = best.get((row["target_id"], row["seed"]))
        if row["kind"] == "unit" and row["ok"] and presence is not None:
            rows.append({**row, "presence": presence, "verdict": verdict(presence, thresholds)})
    return unit_verdicts(rows, seeds)


def neuron_rows(
    truth_rows: Iterable[Mapping], calls: Mapping[tuple[str, str], Mapping]
) -> list[dict]:
    """One row per truth unit: its label, margin, and dxray's call (None if not audited)."""
    rows = []
    for t in truth_rows:
        call = calls.get((t["class"], t["unit"]))
        verdict = None if call is None else call["verdict"]
        rows.append(
            {
                "class_name": t["class"],
                "unit": t["unit"],
                "selection": t.get("selection", "top"),
                "truth": t["label"],
                "margin": float(t["margin"]),
                "object_response": float(t["object_response"]),
                "factor_response": float(t["context_response"]),
                "factor": t["factor"],
                "seeds": 0 if call is None else int(call["seeds"]),
                "presence": math.nan if call is None else float(call["presence"]),
                "verdict": verdict,
                "intervention": None,  # filled in when the intervention judge ran
                "agree": verdict == t["label"],
            }
        )
    return rows


def neuron_agreement(
    rows: Sequence[Mapping],
    *,
    judge: str = "dxray",
    calls: Mapping[tuple[str, str], Mapping] | None = None,
) -> Agreement:
    """Agreement over the audited rows of `neuron_rows`. judge="always-core" scores the
    trivial judge that calls every unit core (most units of a good classifier are); with
    `calls` (e.g. `any_object_verdicts`), those calls are scored on the same units."""
    audited = [r for r in rows if r["seeds"] > 0]
    if not audited:
        raise ValueError(
            "no truth unit was audited: run the audit with the zoo's units "
            "(targets.units.csv: <zoo>/truth/units.csv), or let `dxray eval <spec>` do it"
        )
    if calls is not None:
        got = [calls.get((r["class_name"], r["unit"]), {}).get("verdict") for r in audited]
        return agreement([r["truth"] for r in audited], got)
    predicted = {
        "dxray": [r["verdict"] for r in audited],
        "always-core": ["core"] * len(audited),
        "always-spurious": ["spurious"] * len(audited),
    }
    if judge not in predicted:
        raise ValueError(f"unknown judge {judge!r}; known: {sorted(predicted)}")
    return agreement([r["truth"] for r in audited], predicted[judge])


@torch.no_grad()
def object_masks(segmenter, images: Tensor, object_queries: Sequence[str]) -> Tensor:
    """[B, H, W] bool: pixels any of `object_queries` covers (segmenter probability >= 0.5),
    grown by one pixel so that object edges go with the object."""
    masks = segmenter.union_mask(images, list(object_queries)).float().cpu()
    grown = F.max_pool2d(masks[:, None], kernel_size=3, stride=1, padding=1)[:, 0]
    return grown >= 0.5


@torch.no_grad()
def intervention_verdicts(
    classifier,
    images: Tensor,
    masks: Tensor,
    units: Sequence[tuple[str, int]],
    *,
    keep: float = 0.5,
    floor: float = 1e-3,
) -> list[str]:
    """A unit's verdict from its own explanation image, by intervention: remove the objects
    (`masks` pixels filled with the mean colour of the rest) and measure the unit again. If at
    least `keep` of its activation survives, the background drives it ("spurious"); if not,
    the object does ("core"); "uncertain" when the unit is silent on its own image (below
    `floor`) or the image has no background left. The same question the ground truth asks of
    real scenes, asked of generated ones: no labels, only the segmenter and the classifier."""
    if images.shape[0] != masks.shape[0] or len(units) != images.shape[0]:
        raise ValueError("images, masks and units must have one entry per image")
    background = (~masks).float()[:, None]
    weight = background.sum(dim=(2, 3)).clamp_min(1.0)
    mean = (images * background).sum(dim=(2, 3)) / weight  # [B, 3]
    removed = images * background + mean[:, :, None, None] * (1 - background)
    layers = sorted({layer for layer, _ in units})
    full = classifier.outputs(images.to(classifier.device, classifier.dtype), layers).units
    cut = classifier.outputs(removed.to(classifier.device, classifier.dtype), layers).units
    calls = []
    for i, (layer, channel) in enumerate(units):
        before = float(full[layer][i, channel])
        after = float(cut[layer][i, channel])
        if before <= floor or bool(masks[i].all()):
            calls.append("uncertain")
        else:
            calls.append("spurious" if after >= keep * before else "core")
    return calls
