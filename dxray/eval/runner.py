"""`dxray eval`: audit a toy world's classifier (or read an audit) and score it against the
zoo's ground truth. This module runs the audits and files the scores into an `EvalResult`
(results.py, which also writes it); what it reads from a catalog is in reads.py, the audits'
specs in specs.py, the pixel-space baseline in baseline.py, the scoring of one audit in
scoring.py (over neurons.py, classes.py and metrics.py) and of its shortcut test in
shortcut_scoring.py.

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

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from dxray.eval.baseline import compare_baseline
from dxray.eval.classes import FindingRule
from dxray.eval.metrics import confusion_rows
from dxray.eval.reads import decode_png, read_run, stored_images
from dxray.eval.results import DEFAULT, DXRAY, EvalResult
from dxray.eval.scoring import bias_values, run_cost, score, score_into, success_metrics
from dxray.eval.shortcut_scoring import score_shortcuts
from dxray.eval.specs import classes_only, eval_spec, object_probes
from dxray.spec.model import AuditSpec
from dxray.spec.parse import with_overrides

ABLATIONS: dict[str, dict[str, object]] = {
    "steps=1": {"engine.sampler.steps": 1},
    "steps=2": {"engine.sampler.steps": 2},
    "grad=full": {"engine.sampler.grad_mode": "full"},
    "grad=detached": {"engine.sampler.grad_mode": "detached"},
    "vectors=1": {"engine.n_vectors": 1},
    "vectors=8": {"engine.n_vectors": 8},
}
ABLATION_SEEDS = (0,)  # one seed per ablation audit: six audits cost ~20 CPU minutes


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


def _audit(spec: AuditSpec, label: str, progress, resume: str = "check") -> str:
    from dxray.run.pipeline import run_audit

    def tick(done: int, total: int, statuses) -> None:
        progress(f"  {label}: {done}/{total} targets")

    progress(f"audit [{label}]")
    summary = run_audit(spec, progress=tick, resume=resume)
    progress(
        f"  {label}: run {summary.run_id}, {summary.computed} computed in {summary.seconds:.0f} s"
    )
    return summary.run_id


def _truth_rows(zoo: str | Path, part: str) -> tuple[list[dict], list[dict]]:
    from dxray.toyworld.truth_io import read_truth
    from dxray.toyworld.zoo import zoo_part

    class_table, neuron_table = read_truth(zoo_part(zoo, part))
    return class_table.to_pylist(), neuron_table.to_pylist()


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
    resume: str = "check",
) -> EvalResult:
    """The evaluation described in the module docstring. With `run_id`, the main audit is
    read from `catalog` instead of run (it must have audited the truth's units). `resume`:
    what each audit does with an earlier run of its id (`dxray.run.provenance`)."""
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
            run_id = _audit(main_spec, f"{world.name}: classes and truth units", progress, resume)
        audit_rows, probe_rows, _ = read_run(catalog, run_id)
        result = EvalResult(run_id=run_id, world=world.name, catalog=Path(catalog))
        truth = _truth_rows(zoo, "truth")

        # 1-2. Agreement, success
        judge_units = Interventions(main_spec, object_probes(spec, zoo))
        judging = {
            "object_probes": object_probes(spec, zoo),
            "thresholds": main_spec.judge.thresholds(),
            "interventions": judge_units(catalog, run_id),
            "unit_test": unit_test_calls(catalog, run_id),
        }
        agreements, result.neurons, result.classes = score_into(
            result, DEFAULT, audit_rows, probe_rows, truth, rule, None, **judging
        )
        for level in ("neurons", "classes"):
            if (level, DXRAY) in agreements:
                result.confusion[level] = confusion_rows(agreements[level, DXRAY])
        result.classes = score_shortcuts(result, catalog, run_id, result.classes, truth[0], rule)
        result.add("success", DEFAULT, success_metrics(audit_rows))

        # 3. Bias discovery: the planted ties, in the biased classifier and in the fixed release
        for row in result.classes:
            if row["planted"]:
                result.add("bias", f"{row['class_name']}-{row['factor']}", bias_values(row))
        if fixed and not has_part(zoo, "classifier-fixed"):
            progress(f"{zoo} has no classifier-fixed: the fixed-release comparison is skipped")
        elif fixed:
            fixed_id = _audit(
                classes_only(main_spec, zoo_part(zoo, "classifier-fixed")),
                "fixed release",
                progress,
                resume,
            )
            f_audit, f_probes, _ = read_run(catalog, fixed_id)
            f_truth = _truth_rows(zoo, "truth-fixed")
            _, _, fixed_classes = score(f_audit, f_probes, *f_truth, rule)
            result.fixed_classes = score_shortcuts(
                result, catalog, fixed_id, fixed_classes, f_truth[0], rule, setting="fixed"
            )
            planted = {(r["class_name"], r["factor"]) for r in result.classes if r["planted"]}
            for row in result.fixed_classes:
                if (row["class_name"], row["factor"]) in planted:
                    result.add(
                        "bias-fixed", f"{row['class_name']}-{row['factor']}", bias_values(row)
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
                score_into(
                    result, f"seeds={k}", audit_rows, probe_rows, truth, rule, subset, **judging
                )
                result.add("success", f"seeds={k}", success_metrics(audit_rows, subset))
            reference = list(ABLATION_SEEDS)
            score_into(
                result, "reference", audit_rows, probe_rows, truth, rule, reference, **judging
            )
            result.add("success", "reference", success_metrics(audit_rows, reference))
            result.add("cost", "reference", run_cost(audit_rows, reference))
            for name, overrides in ABLATIONS.items():
                variant = with_overrides(main_spec, **overrides, **{"targets.seeds": reference})
                variant_id = _audit(variant, f"ablation {name}", progress, resume)
                v_audit, v_probes, _ = read_run(catalog, variant_id)
                v_judging = {
                    **judging,
                    "interventions": judge_units(catalog, variant_id),
                    "unit_test": unit_test_calls(catalog, variant_id),
                }
                score_into(result, name, v_audit, v_probes, truth, rule, None, **v_judging)
                result.add("success", name, success_metrics(v_audit))
                result.add("cost", name, run_cost(v_audit))

        result.seconds = time.perf_counter() - started
        return result


def unit_test_calls(catalog, run_id: str) -> dict[tuple[str, str], dict]:
    """The unit-shortcut test's verdicts of a run, by (class name, unit), as
    `neuron_agreement`'s calls (none when the run has no unit test)."""
    from dxray.eval.reads import query

    rows = query(
        catalog,
        "SELECT class_name, unit, verdict, factor FROM unit_shortcuts WHERE run_id = ?",
        [run_id],
    )
    return {
        (r["class_name"], r["unit"]): {"verdict": r["verdict"], "factor": r["factor"]} for r in rows
    }
