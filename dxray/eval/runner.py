"""`dxray eval`: audit a toy world's classifier (or read an audit) and score it against the
zoo's ground truth. This module runs the audits and writes the results; what it reads from a
catalog is in reads.py, the audits' specs in specs.py, the pixel-space baseline in
baseline.py, and the scoring in neurons.py, classes.py, images.py and metrics.py.

One evaluation, in order:
1. the main audit: every class and every unit the truth labels (the zoo's units.csv), with
   `seeds` noise seeds each;
2. verdict agreement (neuron and class level), with the trivial judges beside dxray's;
3. explanation success (p >= 0.9, iterations and seconds to get there);
4. bias discovery: the planted ties' effect sizes, and the same for the zoo's fixed release
   (an audit of its classes), where the removed tie should vanish;
5. DiffExplainer vs pixel-space activation maximisation on the same class targets, seeds and
   iteration budget (optional: --no-baseline);
6. ablations (optional: --ablations): sampler steps, gradient mode, prompt length (one audit
   each, seed 0, against the main audit's seed 0 as "reference"), seeds per target (subsets
   of the main audit).
Results are rows of three catalog tables (eval_metrics, eval_neurons, eval_classes), keyed by
the main audit's run id.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from dxray.eval.baseline import compare_baseline
from dxray.eval.classes import (
    FindingRule,
    attach_shortcuts,
    class_agreement,
    class_rows,
    truth_class_rows,
    unit_findings,
)
from dxray.eval.metrics import SUCCESS_PROB, Agreement, confusion_rows, median
from dxray.eval.neurons import (
    any_object_verdicts,
    neuron_agreement,
    neuron_rows,
    unit_verdicts,
)
from dxray.eval.reads import decode_png, query, read_run, run_row, stored_images
from dxray.eval.specs import classes_only, eval_spec, object_probes
from dxray.judge.verdict import Thresholds, verdict
from dxray.spec.model import AuditSpec
from dxray.spec.parse import recorded_spec, with_overrides

ABLATIONS: dict[str, dict[str, object]] = {
    "steps=1": {"engine.sampler.steps": 1},
    "steps=2": {"engine.sampler.steps": 2},
    "grad=full": {"engine.sampler.grad_mode": "full"},
    "grad=detached": {"engine.sampler.grad_mode": "detached"},
    "vectors=1": {"engine.n_vectors": 1},
    "vectors=8": {"engine.n_vectors": 8},
}
ABLATION_SEEDS = (0,)  # one seed per ablation audit: six audits cost ~20 CPU minutes


@dataclass
class EvalResult:
    run_id: str
    world: str
    catalog: Path
    metrics: list[dict] = field(default_factory=list)  # section, setting, metric, value, n
    neurons: list[dict] = field(default_factory=list)
    classes: list[dict] = field(default_factory=list)
    fixed_classes: list[dict] = field(default_factory=list)
    confusion: dict[str, list[dict]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, section: str, setting: str, values: Mapping[str, float], n: int | None = None):
        for metric, value in values.items():
            self.metrics.append(
                {
                    "section": section,
                    "setting": setting,
                    "metric": metric,
                    "value": None if value is None else float(value),
                    "n": n,
                }
            )

    def get(self, section: str, setting: str, metric: str) -> float:
        for m in self.metrics:
            if (m["section"], m["setting"], m["metric"]) == (section, setting, metric):
                return math.nan if m["value"] is None else m["value"]
        return math.nan


# ---------------------------------------------------------------------------------------------
# Scoring one audit
# ---------------------------------------------------------------------------------------------


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
) -> tuple[dict[str, Agreement], list[dict], list[dict]]:
    """Agreements by judge ("neurons:dxray": the audit's own unit verdicts, "neurons:presence":
    is the unit's class's object in its images, "neurons:intervention" given `interventions`
    ((target_id, seed) -> verdict, see `intervention_calls`), "neurons:any-object" when
    `object_probes` were probed, "neurons:always-core", "classes:dxray", "classes:never"),
    the neuron rows (with each unit's intervention verdict) and the class rows of one audit."""
    neurons = neuron_rows(neuron_truth, unit_verdicts(audit_rows, seeds))
    classes = class_rows(class_truth, probe_rows, rule, seeds)
    out: dict[str, Agreement] = {}
    if any(r["seeds"] for r in neurons):
        for judge in ("dxray", "always-core"):
            out[f"neurons:{judge}"] = neuron_agreement(neurons, judge=judge)
        if interventions:
            calls = unit_verdicts(audit_rows, seeds, interventions)
            out["neurons:intervention"] = neuron_agreement(neurons, calls=calls)
            for n in neurons:
                n["intervention"] = calls.get((n["class_name"], n["unit"]), {}).get("verdict")
            found = unit_findings(
                probe_rows, interventions, {t["factor"] for t in class_truth}, rule, seeds
            )
            for c in classes:
                hit = found.get((c["class_name"], c["factor"]))
                c["flagged_by_units"] = bool(hit and hit["flagged"])
        # The unit verdict audits gave before they judged units by intervention: is the unit's
        # own class's object present in its image?
        by_presence = [
            {**r, "verdict": verdict(r["presence"], thresholds)}
            for r in audit_rows
            if r["kind"] == "unit" and r["ok"] and r["presence"] is not None
        ]
        calls = unit_verdicts(by_presence, seeds)
        if calls:
            out["neurons:presence"] = neuron_agreement(neurons, calls=calls)
        calls = any_object_verdicts(audit_rows, probe_rows, object_probes, thresholds, seeds)
        if calls:
            out["neurons:any-object"] = neuron_agreement(neurons, calls=calls)
    if classes:
        judges = ("dxray", "units", "never") if interventions else ("dxray", "never")
        for judge in judges:
            out[f"classes:{judge}"] = class_agreement(classes, judge=judge)
    return out, neurons, classes


class Interventions:
    """The intervention judge (`dxray.judge.intervention`) over a run's stored unit images,
    every class's object removed: the classifier and segmenter are loaded once for every run
    judged. Re-judges catalogs written before the audit judged units this way, and checks the
    audit's own calls from its 8-bit images."""

    def __init__(self, spec: AuditSpec, object_queries: Sequence[str]):
        from dxray.models.classifier_io import load_classifier
        from dxray.models.segmenter import load_segmenter

        self.classifier = load_classifier(spec.classifier.source)
        self.segmenter = load_segmenter(spec.segmenter.source)
        self.queries = list(object_queries)

    def __call__(self, catalog: str | Path, run_id: str) -> dict[tuple[str, int], str]:
        """(target_id, seed) -> verdict for every usable unit image of the run."""
        from dxray.judge.intervention import judge_units, object_masks

        rows = stored_images(catalog, run_id, "unit")
        out: dict[tuple[str, int], str] = {}
        for start in range(0, len(rows), 64):
            chunk = rows[start : start + 64]
            images = torch.stack([decode_png(r["png"]) for r in chunk])
            masks = object_masks(self.segmenter, images, self.queries)
            units = [(r["layer"], int(r["channel"])) for r in chunk]
            calls = [j.verdict for j in judge_units(self.classifier, images, masks, units)]
            out.update(
                {(r["target_id"], int(r["seed"])): c for r, c in zip(chunk, calls, strict=True)}
            )
        return out


# ---------------------------------------------------------------------------------------------
# The whole evaluation
# ---------------------------------------------------------------------------------------------


def _audit(spec: AuditSpec, label: str, progress) -> str:
    from dxray.run.pipeline import run_audit

    def tick(done: int, total: int, statuses) -> None:
        progress(f"  {label}: {done}/{total} targets")

    progress(f"audit [{label}]")
    summary = run_audit(spec, progress=tick)
    progress(
        f"  {label}: run {summary.run_id}, {summary.computed} computed in {summary.seconds:.0f} s"
    )
    return summary.run_id


def _truth_rows(zoo: str | Path, part: str) -> tuple[list[dict], list[dict]]:
    from dxray.toyworld.truth import read_truth
    from dxray.toyworld.zoo import zoo_part

    class_table, neuron_table = read_truth(zoo_part(zoo, part))
    return class_table.to_pylist(), neuron_table.to_pylist()


def _run_cost(audit_rows: Sequence[Mapping], seeds: Sequence[int] | None = None) -> dict:
    """Compute seconds per target (the workers' batch time shared among its targets: robust to
    resumes, unlike a run's wall time) and the class targets' median iterations."""
    rows = [r for r in audit_rows if r["ok"] and (seeds is None or r["seed"] in seeds)]
    return {
        "seconds_per_target": median([float(r["seconds"]) for r in rows]),
        "median_class_iterations": median(
            [float(r["steps"]) for r in rows if r["kind"] == "class"]
        ),
    }


def _score_into(
    result: EvalResult,
    setting: str,
    audit_rows,
    probe_rows,
    truth: tuple[list[dict], list[dict]],
    rule: FindingRule,
    seeds: Sequence[int] | None,
    **judging,
) -> tuple[dict[str, Agreement], list[dict], list[dict]]:
    agreements, neurons, classes = score(audit_rows, probe_rows, *truth, rule, seeds, **judging)
    for key, value in agreements.items():
        level, judge = key.split(":")
        if judge == "dxray":
            result.add(level, setting, value.as_metrics(), value.n)
        elif setting == "default":
            result.add(level, judge, value.as_metrics(), value.n)
        elif judge in ("intervention", "units"):
            result.add(f"{level}-{judge}", setting, value.as_metrics(), value.n)
    return agreements, neurons, classes


def evaluate(
    spec: AuditSpec,
    zoo: str | Path,
    *,
    catalog: str | Path,
    seeds: int = 4,
    run_id: str | None = None,
    baseline: bool = True,
    fixed: bool = True,
    ablations: bool = False,
    rule: FindingRule = FindingRule(),
    progress: Callable[[str], None] = print,
) -> EvalResult:
    """The evaluation described in the module docstring. With `run_id`, the main audit is
    read from `catalog` instead of run (it must have audited the truth's units)."""
    from dxray.run.session import ray_session
    from dxray.toyworld.zoo import has_part, zoo_part, zoo_world

    started = time.perf_counter()
    world = zoo_world(zoo)
    main_spec = eval_spec(spec, zoo, seeds=seeds, catalog=catalog)
    # One Ray session for all the audits of the evaluation: the model hosts load once and
    # serve every audit (the fixed release loads only its own classifier). Ray starts only if
    # an audit runs.
    with ray_session(main_spec):
        if run_id is None:
            run_id = _audit(main_spec, f"{world.name}: classes and truth units", progress)
        audit_rows, probe_rows, _ = read_run(catalog, run_id)
        result = EvalResult(run_id=run_id, world=world.name, catalog=Path(catalog))
        truth = _truth_rows(zoo, "truth")

        # 1-2. Agreement, success
        judge_units = Interventions(main_spec, object_probes(spec, zoo))
        judging = {
            "object_probes": object_probes(spec, zoo),
            "thresholds": main_spec.judge.thresholds(),
            "interventions": judge_units(catalog, run_id),
        }
        agreements, result.neurons, result.classes = _score_into(
            result, "default", audit_rows, probe_rows, truth, rule, None, **judging
        )
        for key in ("neurons:dxray", "classes:dxray"):
            if key in agreements:
                result.confusion[key.split(":")[0]] = confusion_rows(agreements[key])
        result.classes = _score_shortcuts(result, catalog, run_id, result.classes, truth[0], rule)
        result.add("success", "default", success_metrics(audit_rows))

        # 3. Bias discovery: the planted ties, in the biased classifier and in the fixed release
        for row in result.classes:
            if row["planted"]:
                result.add("bias", f"{row['class_name']}-{row['factor']}", _bias_values(row))
        if fixed and not has_part(zoo, "classifier-fixed"):
            progress(f"{zoo} has no classifier-fixed: the fixed-release comparison is skipped")
        elif fixed:
            fixed_id = _audit(
                classes_only(main_spec, zoo_part(zoo, "classifier-fixed")),
                "fixed release",
                progress,
            )
            f_audit, f_probes, _ = read_run(catalog, fixed_id)
            f_truth = _truth_rows(zoo, "truth-fixed")
            _, _, fixed_classes = score(f_audit, f_probes, *f_truth, rule)
            result.fixed_classes = _score_shortcuts(
                result, catalog, fixed_id, fixed_classes, f_truth[0], rule, setting="fixed"
            )
            planted = {(r["class_name"], r["factor"]) for r in result.classes if r["planted"]}
            for row in result.fixed_classes:
                if (row["class_name"], row["factor"]) in planted:
                    result.add(
                        "bias-fixed", f"{row['class_name']}-{row['factor']}", _bias_values(row)
                    )

        # 4. Baseline
        if baseline:
            compared = compare_baseline(
                main_spec, judge_units.classifier, catalog, run_id, zoo, world, progress
            )
            for tie, value in compared.pop("planted").items():
                name, metric = tie.split(":")
                result.add("bias", name, {metric: value})
            for method, values in compared.items():
                result.add("baseline", method, values)

        # 5. Ablations: seeds per target from the main audit; the rest one audit each
        if ablations:
            for k in sorted({1, 2, seeds}):
                subset = list(range(k))
                _score_into(
                    result, f"seeds={k}", audit_rows, probe_rows, truth, rule, subset, **judging
                )
                result.add("success", f"seeds={k}", success_metrics(audit_rows, subset))
            reference = list(ABLATION_SEEDS)
            _score_into(
                result, "reference", audit_rows, probe_rows, truth, rule, reference, **judging
            )
            result.add("success", "reference", success_metrics(audit_rows, reference))
            result.add("cost", "reference", _run_cost(audit_rows, reference))
            for name, overrides in ABLATIONS.items():
                variant = with_overrides(main_spec, **overrides, **{"targets.seeds": reference})
                variant_id = _audit(variant, f"ablation {name}", progress)
                v_audit, v_probes, _ = read_run(catalog, variant_id)
                v_judging = {**judging, "interventions": judge_units(catalog, variant_id)}
                _score_into(result, name, v_audit, v_probes, truth, rule, None, **v_judging)
                result.add("success", name, success_metrics(v_audit))
                result.add("cost", name, _run_cost(v_audit))

        result.seconds = time.perf_counter() - started
        return result


def _score_shortcuts(
    result: EvalResult,
    catalog: str | Path,
    run_id: str,
    classes: list[dict],
    class_truth: Sequence[Mapping],
    rule: FindingRule,
    setting: str = "default",
) -> list[dict]:
    """The class-shortcut test of run `run_id` against the truth: its findings attached to the
    class rows (made from the truth if no explanation was probed), the agreement
    ("classes"/"shortcuts", default run only) and the counts and cost ("shortcuts"/`setting`:
    found = relied-on pairs found, false = findings on pairs not relied on)."""
    found_rows = query(catalog, "SELECT * FROM class_shortcuts WHERE run_id = ?", [run_id])
    if not found_rows:
        return classes
    rows = classes or truth_class_rows(class_truth, rule)
    if not attach_shortcuts(rows, found_rows, {t["factor"] for t in class_truth}):
        return classes
    scored = [r for r in rows if "shortcut_found" in r]
    explored = [r for r in scored if r.get("explanation_candidate") is not None]
    if setting == "default":
        agreement = class_agreement(scored, judge="shortcuts")
        result.add("classes", "shortcuts", agreement.as_metrics(), agreement.n)
        if explored:
            agreement = class_agreement(explored, judge="explanations")
            result.add("classes", "explanations", agreement.as_metrics(), agreement.n)
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

    from dxray.run.shortcuts import pool_plan, vocabulary_plan, with_object_plan

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


def _bias_values(row: Mapping) -> dict[str, float]:
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


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def write_eval(result: EvalResult) -> None:
    """The result as rows of eval_metrics, eval_neurons and eval_classes (keyed by run id)."""
    from dxray.catalog.writer import CatalogWriter

    writer = CatalogWriter(result.catalog)
    eval_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    common = {"eval_id": eval_id, "world": result.world}
    writer.write("eval_metrics", [{**common, **m} for m in result.metrics], result.run_id)
    writer.write(
        "eval_neurons",
        [{**common, **{k: v for k, v in r.items()}} for r in result.neurons],
        result.run_id,
    )
    classes = [{**common, "release": "biased", **r} for r in result.classes]
    classes += [{**common, "release": "fixed", **r} for r in result.fixed_classes]
    writer.write("eval_classes", classes, result.run_id)


def result_json(result: EvalResult) -> str:
    """Everything in one JSON document (NaN as null)."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return json.dumps(
        clean(
            {
                "run_id": result.run_id,
                "world": result.world,
                "metrics": result.metrics,
                "neurons": result.neurons,
                "classes": result.classes,
                "fixed_classes": result.fixed_classes,
                "confusion": result.confusion,
                "seconds": result.seconds,
            }
        ),
        indent=1,
    )
