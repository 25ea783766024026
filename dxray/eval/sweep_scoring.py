"""One sweep world scored from its catalog and its truth: the `pairs` and `units` of its
result.json (dxray.eval.sweep; pooled by dxray.eval.sweep_table).

    result = score_world(Path("sweeps/seed-1/world-0"), run_id)   # {"pairs": [...], "units": [...]}
"""

from __future__ import annotations

import math
from pathlib import Path


def score_world(folder: Path, run_id: str) -> dict:
    """The world's pairs and units, scored from its catalog and truth (see the module doc)."""
    from dxray.eval.classes import attach_shortcuts, truth_class_rows
    from dxray.eval.neurons import neuron_rows, unit_verdicts
    from dxray.eval.reads import query, read_run
    from dxray.toyworld.random_worlds import ties_per_class
    from dxray.toyworld.truth_io import read_truth
    from dxray.toyworld.zoo import zoo_world

    world = zoo_world(folder)
    catalog = folder / "catalog"
    class_truth, neuron_truth = (t.to_pylist() for t in read_truth(folder / "truth"))
    audit_rows, _, _ = read_run(catalog, run_id)

    # Pairs: the truth's (class, factor) with the shortcut test's call
    pairs = truth_class_rows(class_truth)
    found = query(catalog, "SELECT * FROM class_shortcuts WHERE run_id = ?", [run_id])
    attach_shortcuts(pairs, found, {t["factor"] for t in class_truth})
    planted_p = {(t["class"], t["factor"]): t["planted_p"] for t in class_truth}
    ties = ties_per_class(world)
    keep = (
        "class_name", "factor_kind", "factor", "planted", "reliance_logit", "relied",
        "with_object_logprob", "shortcut_lift", "shortcut_low", "shortcut_high",
        "shortcut_images", "shortcut_found", "explanation_candidate", "explanation_rate",
        "explanation_pool_rate",
    )  # fmt: skip
    pair_rows = [
        {k: p.get(k) for k in keep}
        | {
            "planted_p": planted_p[(p["class_name"], p["factor"])],
            "ties_on_class": ties[p["class_name"]],
        }
        for p in pairs
    ]

    # Units: the truth's label, the audit's verdict (majority over seeds) and each seed's,
    # and the unit-shortcut test's verdict (one per class and unit)
    units = neuron_rows(neuron_truth, unit_verdicts(audit_rows))
    tested = {
        (r["class_name"], r["unit"]): r
        for r in query(catalog, "SELECT * FROM unit_shortcuts WHERE run_id = ?", [run_id])
    }
    per_seed: dict[tuple[str, str], dict[str, str]] = {}  # seed -> verdict (JSON keys)
    measured: dict[tuple[str, str], list[tuple[float | None, float | None]]] = {}
    for r in audit_rows:
        if r["kind"] == "unit" and r["ok"] and r["class_name"] is not None:
            unit = f"{r['layer']}:{int(r['channel'])}"
            per_seed.setdefault((r["class_name"], unit), {})[str(r["seed"])] = r["verdict"]
            measured.setdefault((r["class_name"], unit), []).append((r["activation"], r["kept"]))
    unit_rows = [
        {
            k: u[k]
            for k in ("class_name", "unit", "selection", "truth", "margin", "seeds", "verdict")
        }
        | {
            "seed_verdicts": per_seed.get((u["class_name"], u["unit"]), {}),
            # the unit on its own explanation image, and the share kept without the objects
            # (means over seeds; None when silent)
            "activation": _mean(a for a, _ in measured.get((u["class_name"], u["unit"]), [])),
            "kept": _mean(k for _, k in measured.get((u["class_name"], u["unit"]), [])),
            "object_response": u["object_response"],
            "factor_response": u["factor_response"],
            "unit_test": (tested.get((u["class_name"], u["unit"])) or {}).get("verdict"),
            "unit_test_margin": (tested.get((u["class_name"], u["unit"])) or {}).get("margin"),
        }
        for u in units
    ]
    return {
        "world": world.name,
        "run_id": run_id,
        "ties": [{"name": c.name, "kind": c.kind, "p": c.p} for c in world.correlations],
        "pairs": pair_rows,
        "units": unit_rows,
    }


def _mean(values) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None
