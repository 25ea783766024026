"""Neuron level: each audited unit's verdict against the zoo's core/spurious label.

A unit's label comes from an intervention on real scenes (`dxray.toyworld.truth`): its mean
activation on the class's object on neutral backgrounds vs on the planted context or cue
alone. dxray's call is the audit's verdict on the unit's explanation images (by intervention,
`dxray.judge.intervention`, unless the spec's judge.units says presence); the presence judge
asks instead whether the class's object is in them. Seeds of one unit are combined by
`dxray.judge.verdict.aggregate`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

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
