"""Is the zoo good enough to be ground truth? The classifier's gates, from its measured truth
(dxray/toyworld/truth.py), and the oracle's accuracies.

    gates = classifier_gates(world, classifier, fixed=fixed, oracle=oracle)

- the classifier (and its fixed release) is accurate on unbiased scenes;
- each planted correlation is measurably relied on: its reliance beats the class's largest
  reliance on anything not planted (`reliance_gates`);
- each correlation the fixed release removes is relied on at most half as much as before
  (`fixed_release_gates`);
- the oracle, which judges generated images, is more accurate than what it judges
  (`oracle_accuracy` against `ORACLE_TARGETS`).

A gate is `dxray.toyworld.gates.Gate`; the zoo records them in gates.json (`write_gates`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa
import torch

from dxray.models.classifier import Classifier
from dxray.toyworld.data import cue_names, sample_specs, scene_labels
from dxray.toyworld.gates import Gate, check
from dxray.toyworld.nets import gaussian_blur, oracle_predict
from dxray.toyworld.scenes import render_batch
from dxray.toyworld.truth import accuracy, compute_truth, derive_seed, planted_factors
from dxray.toyworld.world import World


def reliance(class_table: pa.Table, cls: str, kind: str, factor: str) -> float:
    """The measured reliance (logit) of class `cls` on one context or cue."""
    for row in class_table.to_pylist():
        if (row["class"], row["factor_kind"], row["factor"]) == (cls, kind, factor):
            return row["reliance_logit"]
    raise KeyError(f"no truth row for class {cls!r}, {kind} {factor!r}")


def reliance_gates(world: World, class_table: pa.Table, *, prefix: str = "") -> list[Gate]:
    """Per planted correlation: its reliance minus the largest reliance of the same class on
    any unplanted context or cue; the gate holds when that margin is positive."""
    rows = class_table.to_pylist()
    gates = []
    for corr in world.correlations:
        planted = planted_factors(world, corr.class_name)
        mine = reliance(class_table, corr.class_name, corr.kind, corr.context or corr.cue)
        others = [
            r["reliance_logit"]
            for r in rows
            if r["class"] == corr.class_name and (r["factor_kind"], r["factor"]) not in planted
        ]
        gates.append(check(f"{prefix}reliance_margin:{corr.name}", mine - max(others), ">", 0.0))
    return gates


def fixed_release_gates(world: World, truth: pa.Table, fixed_truth: pa.Table) -> list[Gate]:
    """Per correlation the fixed release removes: the fixed checkpoint's reliance on it must be
    below half the original checkpoint's (both class tables measured in the original world)."""
    gates = []
    for corr in world.correlations:
        if corr.name in world.fixed_release_removes:
            factor = corr.context or corr.cue
            before = reliance(truth, corr.class_name, corr.kind, factor)
            after = reliance(fixed_truth, corr.class_name, corr.kind, factor)
            gates.append(check(f"fixed:removed_reliance:{corr.name}", after, "<", before / 2))
    return gates


@torch.no_grad()
def oracle_accuracy(oracle: Classifier, world: World, *, n: int = 2000, seed: int = 0) -> dict:
    """The oracle's accuracies: object / context / cue on unbiased scenes, "none" on
    context-only scenes, cue recall on scenes that all carry a cue, and object / context on
    the unbiased scenes blurred (sigma 1 px), as generated images are."""
    unbiased = sample_specs(world, n, seed=derive_seed(seed, "oracle", "unbiased"), mode="unbiased")
    empty = sample_specs(world, n, seed=derive_seed(seed, "oracle", "empty"), mode="context_only")
    cues = cue_names(world)
    rng = np.random.default_rng(derive_seed(seed, "oracle", "cues"))
    with_cue = [replace(s, cue=cues[rng.integers(len(cues))]) for s in unbiased] if cues else []

    def judge(specs, blur: float = 0.0):
        images, _, _ = render_batch(world, specs)
        if blur > 0:
            images = gaussian_blur(images, blur)
        pred = {k: v.numpy() for k, v in oracle_predict(oracle, images).items()}
        return pred, scene_labels(world, specs)

    result = {}
    pred, truth = judge(unbiased)
    result["object"] = float((pred["object"] == truth.object).mean())
    result["context"] = float((pred["context"] == truth.context).mean())
    result["cue"] = float((pred["cue"] == truth.cue).mean())
    pred, truth = judge(empty)
    result["none"] = float((pred["object"] == -1).mean())
    result["context_empty"] = float((pred["context"] == truth.context).mean())
    if with_cue:
        pred, truth = judge(with_cue)
        result["cue_recall"] = float((pred["cue"] == truth.cue).mean())
    pred, truth = judge(unbiased, blur=1.0)
    result["object_blurred"] = float((pred["object"] == truth.object).mean())
    result["context_blurred"] = float((pred["context"] == truth.context).mean())
    return result


# Targets for the oracle: it judges generated images, so it must be more accurate than what it
# judges. Cue and blurred thresholds are ours; object and context come from the zoo's issue.
ORACLE_TARGETS = {
    "object": 0.97,
    "context": 0.99,
    "cue": 0.97,
    "none": 0.97,
    "cue_recall": 0.95,
    "object_blurred": 0.9,
    "context_blurred": 0.97,
}


def classifier_gates(
    world: World,
    classifier: Classifier,
    *,
    fixed: Classifier | None = None,
    oracle: Classifier | None = None,
    n: int = 2000,
    seed: int = 0,
    truth: pa.Table | None = None,
    fixed_truth: pa.Table | None = None,
    truth_n: int = 500,
    min_accuracy: float = 0.95,
) -> list[Gate]:
    """The zoo's checks: unbiased accuracy of the classifier (and of its fixed release), each
    planted correlation measurably relied on, each correlation the fixed release removes
    relied on at most half as much as before, and the oracle's accuracies.

    `truth` / `fixed_truth` are class tables from `compute_truth` (computed with `truth_n`
    scenes when not given). The fixed release is measured in the original world, so both
    checkpoints answer the same questions.
    """

    def unbiased_accuracy(prefix: str, model) -> Gate:
        return check(
            f"{prefix}unbiased_accuracy", accuracy(model, world, n=n, seed=seed), ">=", min_accuracy
        )

    gates = [unbiased_accuracy("classifier:", classifier)]
    if truth is None:
        truth, _ = compute_truth(world, classifier, n=truth_n, seed=seed)
    gates += reliance_gates(world, truth, prefix="classifier:")

    if fixed is not None:
        gates.append(unbiased_accuracy("fixed:", fixed))
        if fixed_truth is None:
            fixed_truth, _ = compute_truth(world, fixed, n=truth_n, seed=seed)
        gates += reliance_gates(world.fixed(), fixed_truth, prefix="fixed:")
        gates += fixed_release_gates(world, truth, fixed_truth)

    if oracle is not None:
        measured = oracle_accuracy(oracle, world, n=n, seed=seed)
        for key, target in ORACLE_TARGETS.items():
            if key in measured:
                gates.append(check(f"oracle:{key}_accuracy", measured[key], ">=", target))
    return gates


def gates_table(gates: Sequence[Gate]) -> pa.Table:
    """Gates as a table: name, value, threshold, op, passed."""
    return pa.Table.from_pylist([vars(g) for g in gates])
