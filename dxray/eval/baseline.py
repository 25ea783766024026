"""DiffExplainer vs pixel-space activation maximisation: the same class targets, seeds and
iteration budget, both judged the same way by the zoo's oracle, with real held-out scenes as
the scale's reference."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from dxray.eval.images import oracle_reading, statistics_distance
from dxray.eval.metrics import SUCCESS_PROB, median
from dxray.eval.reads import class_images
from dxray.spec.model import AuditSpec


def _image_metrics(
    classifier, images: torch.Tensor, class_index: torch.Tensor, reading: dict, real
) -> dict[str, float]:
    """Classifier probability, the oracle's `reading` of the images, statistics distance."""
    with torch.no_grad():
        logits = classifier.outputs(images.to(classifier.device, classifier.dtype), []).logits
    prob = logits.float().softmax(1).cpu().gather(1, class_index[:, None])[:, 0]
    return {
        "mean_probability": float(prob.mean()),
        "success_rate": float((prob >= SUCCESS_PROB).float().mean()),
        "oracle_object_recognised": float(reading["object_recognised"].float().mean()),
        "oracle_object_prob": float(reading["object_prob"].mean()),
        "oracle_context_confidence": float(reading["context_confidence"].mean()),
        "statistics_distance": statistics_distance(images, real),
    }


def oracle_planted_rates(world, rows: Sequence[Mapping], reading: dict) -> dict:
    """For each planted tie "class-factor": the share of the class's explanation images in
    which the oracle sees the factor (`reading`: `oracle_reading` of those images), and the
    share among the other classes' images."""
    from dxray.toyworld.data import context_names, cue_names

    contexts, cues = context_names(world), cue_names(world)
    out = {}
    for tie in world.correlations:
        if tie.context is not None:
            seen = reading["context"] == contexts.index(tie.context)
        else:
            seen = reading["cue"] == cues.index(tie.cue)
        mine = torch.tensor([r["class_name"] == tie.class_name for r in rows])
        out[f"{tie.name}:oracle_rate"] = float(seen[mine].float().mean()) if mine.any() else None
        others = ~mine
        out[f"{tie.name}:oracle_other_rate"] = (
            float(seen[others].float().mean()) if others.any() else None
        )
    return out


def compare_baseline(
    spec: AuditSpec, classifier, catalog: str | Path, run_id: str, zoo: str | Path, world, progress
) -> dict[str, dict[str, float]]:
    """DiffExplainer's class images (from the catalog) vs pixel-space activation maximisation
    on the same class targets and seeds, with the engine's iteration budget and stop rule;
    both judged the same way (`classifier`: the spec's, loaded). Also real held-out scenes, as
    the scale's reference."""
    from dxray.explain.baseline import BaselineConfig, activation_maximisation
    from dxray.models.classifier_io import load_classifier
    from dxray.run.targets import objective_for
    from dxray.toyworld.data import sample_specs, scene_labels
    from dxray.toyworld.scenes import render_batch
    from dxray.toyworld.zoo import zoo_part

    rows, diffusion = class_images(catalog, run_id)
    oracle = load_classifier(zoo_part(zoo, "oracle"))
    class_index = torch.tensor([int(r["class_index"]) for r in rows])
    engine = spec.engine
    config = BaselineConfig(
        iterations=engine.iterations,
        stop_prob=engine.stop_prob,
        stop_patience=engine.stop_patience,
    )
    objectives = [objective_for(spec, {**r, "kind": "class"}) for r in rows]
    progress(f"pixel-space baseline: {len(rows)} class targets, {config.iterations} iterations")
    started = time.perf_counter()
    baseline = activation_maximisation(
        classifier, objectives, seeds=[int(r["seed"]) for r in rows], config=config
    )
    seconds = time.perf_counter() - started
    pixel = (baseline.images * 255).round() / 255  # stored as 8-bit, like the diffusion images
    real_specs = sample_specs(world, 400, seed=12345, mode="unbiased")
    real, _, _ = render_batch(world, real_specs)
    held_specs = sample_specs(world, len(rows), seed=54321, mode="unbiased")
    held_out, _, _ = render_batch(world, held_specs)
    held_index = torch.from_numpy(scene_labels(world, held_specs).object).long()
    out = {}
    for method, images, index in (
        ("diffexplainer", diffusion, class_index),
        ("pixel-am", pixel, class_index),
        ("real-scenes", held_out, held_index),
    ):
        reading = oracle_reading(oracle, images, index)
        out[method] = _image_metrics(classifier, images, index, reading, real)
        if method == "diffexplainer":
            out["planted"] = oracle_planted_rates(world, rows, reading)
    out["diffexplainer"]["median_iterations"] = median([float(r["steps"]) for r in rows])
    out["pixel-am"]["median_iterations"] = median([float(s) for s in baseline.steps.tolist()])
    out["pixel-am"]["seconds_per_target"] = seconds / len(rows)
    return out
