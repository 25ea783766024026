"""The class-shortcut test of a run, scored against the truth from the catalog: its findings
attached to the class rows, the agreement, and the counts and cost of the counterfactual test
and of the object-free explanations' leads (`score_shortcuts`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from dxray.eval.classes import FindingRule, attach_shortcuts, class_agreement, truth_class_rows
from dxray.eval.reads import query, run_row
from dxray.eval.results import DEFAULT, EvalResult
from dxray.spec.parse import recorded_spec


def score_shortcuts(
    result: EvalResult,
    catalog: str | Path,
    run_id: str,
    classes: list[dict],
    class_truth: Sequence[Mapping],
    rule: FindingRule,
    setting: str = DEFAULT,
) -> list[dict]:
    """The class-shortcut test of run `run_id` against the truth: its findings attached to the
    class rows (made from the truth if no explanation was probed), the agreement of the
    "shortcuts" and "explanations" judges ("classes", main audit only) and the counts and cost
    ("shortcuts" and "explanations", as `setting`: found = relied-on pairs found, false =
    findings on pairs not relied on)."""
    found_rows = query(catalog, "SELECT * FROM class_shortcuts WHERE run_id = ?", [run_id])
    if not found_rows:
        return classes
    rows = classes or truth_class_rows(class_truth, rule)
    if not attach_shortcuts(rows, found_rows, {t["factor"] for t in class_truth}):
        return classes
    scored = [r for r in rows if "shortcut_found" in r]
    explored = [r for r in scored if r.get("explanation_candidate") is not None]
    if setting == DEFAULT:
        agreement = class_agreement(scored, judge="shortcuts")
        result.add("classes", DEFAULT, agreement.as_metrics(), agreement.n, judge="shortcuts")
        if explored:
            agreement = class_agreement(explored, judge="explanations")
            result.add(
                "classes", DEFAULT, agreement.as_metrics(), agreement.n, judge="explanations"
            )
    cost = _stage_cost(catalog, run_id, found_rows)
    free, beside = cost["object_free"], cost["with_object"]
    result.add(
        "shortcuts",
        setting,
        {
            "relied": sum(r["relied"] for r in scored),
            "found": sum(r["relied"] and r["shortcut_found"] for r in scored),
            "false": sum(not r["relied"] and r["shortcut_found"] for r in scored),
            "pairs": len(scored),
            "renders": free.get("renders"),
            "kept": free.get("kept"),
            "seconds": free.get("seconds"),
            "with_object_renders": beside.get("renders"),
            "with_object_seconds": beside.get("seconds"),
        },
    )
    if explored:
        pool = cost["pool"]
        lead = [r for r in explored if r["explanation_candidate"]]
        confirmed = [r for r in lead if r["shortcut_found"]]
        result.add(
            "explanations",
            setting,
            {
                "relied": sum(r["relied"] for r in explored),
                "found": sum(r["relied"] for r in lead),
                "false": sum(not r["relied"] for r in lead),
                "confirmed_found": sum(r["relied"] for r in confirmed),
                "confirmed_false": sum(not r["relied"] for r in confirmed),
                "renders": pool["renders"],
                "kept": pool["kept"],
                "seconds": pool["seconds"],
                "drawn_objects": pool["drawn_objects"],
            },
        )
    return rows


def _stage_cost(catalog: str | Path, run_id: str, found_rows: Sequence[Mapping]) -> dict:
    """Renders, usable renders and compute seconds of the run's shortcut stage, per part
    (object_free, with_object, pool): only the images its latest spec asks for (a catalog
    may hold images of earlier settings). Without a readable spec, every image of the run."""

    from dxray.run.shortcut_plans import pool_plan, vocabulary_plan, with_object_plan

    images = query(
        catalog,
        "SELECT render_id, variant, status, seconds FROM shortcut_images WHERE run_id = ?",
        [run_id],
    )
    pool = query(
        catalog,
        "SELECT render_id, 'pool' AS variant, status, seconds, object_presence "
        "FROM shortcut_pool WHERE run_id = ?",
        [run_id],
    )
    wanted = None
    spec = recorded_spec(run_row(catalog, run_id)["spec_yaml"])
    if spec is not None:
        names = {r["class_index"]: r["class_name"] for r in found_rows}
        class_names = [names.get(i, str(i)) for i in range(max(names) + 1)]
        findings = {r["class_index"] for r in found_rows if r["finding"]}
        wanted = {r.key for r in vocabulary_plan(spec)}
        wanted |= {r.key for r in with_object_plan(spec, class_names, findings)}
        wanted |= {j["render_id"] for j in pool_plan(spec)}
    out = {}
    for variant in ("object_free", "with_object", "pool"):
        rows = [
            r for r in images + pool
            if r["variant"] == variant and (wanted is None or r["render_id"] in wanted)
        ]  # fmt: skip
        out[variant] = {
            "renders": len(rows),
            "kept": sum(r["status"] == "kept" for r in rows),
            "seconds": sum(r["seconds"] or 0.0 for r in rows),
        }
    drawn = [r["object_presence"] >= 0.5 for r in pool if r["object_presence"] is not None]
    out["pool"]["drawn_objects"] = sum(drawn) / len(drawn) if drawn else None
    return out
