"""Ground truth for the toy world: what a trained classifier really relies on, by intervention.

The toy world lets us render any scene we like, so reliance is measured, not assumed:

- **Class level** (`class_table`): for each class and each context / cue, how strongly the class
  fires on scenes that carry that context or cue but *no object*, minus a neutral baseline (the
  mean over the context-only scenes of every context, without a cue). A planted shortcut
  (circle-water) shows up as the largest reliance of its class. Beside it, the factor's lift
  *with* the object present (`with_object_*`): a shortcut the classifier uses only when the
  object is missing lifts nothing there, and an explanation that maximises the class's
  probability has no reason to paint it.
- **Neuron level** (`neuron_table`): units of the penultimate layer, reached by two selections:
  - "top": each class's top-k units as the audit ranks them (`top_units`: head weight x mean
    activation on unbiased scenes of the class);
  - "factor": for each class with planted factors and each planted factor, the top-k units by
    head weight x mean activation on that factor's object-free scenes: the units that carry
    the shortcut into the class logit (`factor_units`). A well-trained classifier's "top"
    units are mostly object units, so without these the table would have few spurious rows.
  A unit reached by both selections for one class is listed once, as "top". Every unit is
  labelled by the same intervention: its mean activation on the object alone (the class's
  object on contexts not planted for it, no cue) vs on the planted context / cue alone (no
  object; of several planted factors, the one that drives the unit most). margin = factor
  response - object response; margin > 0 -> "spurious", else "core". For a class with no
  planted factor, the context / cue that drives the unit most stands in for it.

    class_table, neuron_table = compute_truth(world, load_classifier("zoo/classifier"), n=500, seed=0)

Scenes are drawn from seeds derived from `seed`, so the tables are a pure function of
(world, classifier, n, seed, k). The tables' schemas are `CLASS_TRUTH_SCHEMA` and
`NEURON_TRUTH_SCHEMA`. This module measures, in torch, and reads or writes no file: storing the
tables (Parquet, and the units.csv an audit spec reads) is truth_io.py; the zoo's gates on
them, truth_gates.py.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from dxray.models.classifier import Classifier
from dxray.models.units import RankedUnit, head_weight, rank_units
from dxray.toyworld.data import (
    class_names,
    context_names,
    cue_names,
    sample_specs,
    scene_labels,
)
from dxray.toyworld.scenes import SceneSpec, render_batch
from dxray.toyworld.world import World

CLASS_TRUTH_SCHEMA = pa.schema(
    [
        ("class", pa.string()),
        ("factor_kind", pa.string()),  # "context" or "cue"
        ("factor", pa.string()),  # context or cue name
        ("planted", pa.bool_()),  # the world plants this factor for this class
        ("planted_p", pa.float64()),  # its p in the biased data; 0.0 when not planted
        ("mean_logit", pa.float64()),  # on scenes with the factor and no object
        ("mean_prob", pa.float64()),
        ("baseline_logit", pa.float64()),  # on context-only scenes of every context, no cue
        ("baseline_prob", pa.float64()),
        ("reliance_logit", pa.float64()),  # mean_logit - baseline_logit: the measured reliance
        ("reliance_prob", pa.float64()),
        ("rank", pa.int32()),  # 1 = the factor this class relies on most (by reliance_logit)
        ("n_scenes", pa.int32()),
        # The same factor with the class's object present: mean over the object's scenes that
        # carry the factor, minus the same objects on every context without a cue. What an
        # explanation that maximises the class can gain by painting the factor beside the object.
        ("with_object_logit", pa.float64()),
        ("with_object_logprob", pa.float64()),  # in log-probability: what a ce objective sees
    ]
)

NEURON_TRUTH_SCHEMA = pa.schema(
    [
        ("class", pa.string()),
        ("unit", pa.string()),  # "layer:channel", as dxray addresses hidden units
        # "top": a top-k unit of the class; "factor": a top-k unit for one planted factor
        ("selection", pa.string()),
        # within its selection (per factor for "factor"): 1 = the largest score. A "factor"
        # unit also among the class's top units is listed as "top", so its ranks can skip.
        ("rank", pa.int32()),
        # head weight x mean activation on the selection's scenes: unbiased scenes of the class
        # ("top") or the factor's object-free scenes ("factor")
        ("score", pa.float64()),
        ("object_response", pa.float64()),  # mean activation: object on neutral contexts
        ("context_response", pa.float64()),  # mean activation: `factor` alone, no object
        ("factor_kind", pa.string()),
        ("factor", pa.string()),
        ("margin", pa.float64()),  # context_response - object_response
        ("label", pa.string()),  # "spurious" if margin > 0 else "core"
    ]
)


# ---------------------------------------------------------------------------------------------
# Scenes and forwards
# ---------------------------------------------------------------------------------------------


def derive_seed(seed: int, *keys: str | int) -> int:
    """A seed for one named stream of scenes; stable across processes (no Python `hash`)."""
    words = [seed] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


@torch.no_grad()
def _forward(
    classifier: Classifier,
    world: World,
    specs: Sequence[SceneSpec],
    layers: Sequence[str] = (),
    *,
    chunk: int = 500,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Render `specs` and run the classifier in chunks: logits [N, K] and units [N, C] by layer."""
    logits, units = [], {layer: [] for layer in layers}
    for i in range(0, len(specs), chunk):
        images, _, _ = render_batch(world, specs[i : i + chunk])
        out = classifier.outputs(images, layers)
        logits.append(out.logits.float())
        for layer in layers:
            units[layer].append(out.units[layer].float())
    return torch.cat(logits), {k: torch.cat(v) for k, v in units.items()}


@torch.no_grad()
def accuracy(
    classifier: Classifier, world: World, *, n: int = 2000, seed: int = 0, mode="unbiased"
) -> float:
    """Top-1 object accuracy on `n` scenes of `mode` (default: every factor independent)."""
    specs = sample_specs(world, n, seed=derive_seed(seed, "accuracy", mode), mode=mode)
    logits, _ = _forward(classifier, world, specs)
    labels = torch.from_numpy(scene_labels(world, specs).object)
    return float((logits.argmax(1) == labels).float().mean())


def _factors(world: World) -> list[tuple[str, str]]:
    return [("context", c) for c in context_names(world)] + [("cue", q) for q in cue_names(world)]


def _factor_scenes(world: World, n: int, seed: int) -> dict[tuple[str, str], list[SceneSpec]]:
    """Object-free scenes per factor: ("context", c) -> n scenes of context c without a cue;
    ("cue", q) -> the scenes of every context, each with cue q added (a paired comparison)."""
    base = sample_specs(world, n, seed=derive_seed(seed, "factor-scenes"), mode="context_only")
    base = [replace(s, cue=None) for s in base]
    by_context = {c: [replace(s, context=c) for s in base] for c in context_names(world)}
    scenes: dict[tuple[str, str], list[SceneSpec]] = {
        ("context", c): specs for c, specs in by_context.items()
    }
    pooled = [s for specs in by_context.values() for s in specs]
    for q in cue_names(world):
        scenes[("cue", q)] = [replace(s, cue=q) for s in pooled]
    return scenes


def planted_factors(world: World, cls: str) -> dict[tuple[str, str], float]:
    """(kind, name) -> p of the correlations the world plants for class `cls`."""
    return {(c.kind, c.context or c.cue): c.p for c in world.correlations if c.class_name == cls}


def _object_on_neutral(world: World, cls: str, n: int, seed: int) -> list[SceneSpec]:
    """`n` scenes of class `cls`, on contexts not planted for it (in turn), without a cue."""
    planted = {name for kind, name in planted_factors(world, cls) if kind == "context"}
    neutral = [c for c in context_names(world) if c not in planted]
    specs = sample_specs(
        world, n, seed=derive_seed(seed, "object-on-neutral", cls), mode="unbiased", classes=[cls]
    )
    return [replace(s, context=neutral[i % len(neutral)], cue=None) for i, s in enumerate(specs)]


def _with_object_lifts(
    world: World, classifier: Classifier, cls: str, ci: int, n: int, seed: int
) -> dict[tuple[str, str], tuple[float, float]]:
    """(kind, factor) -> (logit, log-probability) lift of class `ci` when its object carries the
    factor. The same `n // contexts` objects are put on every context (no cue) for the
    baseline and the context rows, and on every context with the cue for a cue row."""
    contexts = context_names(world)
    specs = sample_specs(
        world,
        max(1, n // len(contexts)),
        seed=derive_seed(seed, "with-object", cls),
        mode="unbiased",
        classes=[cls],
    )
    on = {c: [replace(s, context=c, cue=None) for s in specs] for c in contexts}
    scored = {("context", c): _forward(classifier, world, on[c])[0] for c in contexts}
    pooled = [s for c in contexts for s in on[c]]
    for q in cue_names(world):
        scored[("cue", q)] = _forward(classifier, world, [replace(s, cue=q) for s in pooled])[0]
    base = torch.cat([scored[("context", c)] for c in contexts])

    def mean(logits: Tensor) -> tuple[float, float]:
        return float(logits[:, ci].mean()), float(logits.log_softmax(1)[:, ci].mean())

    base_logit, base_logprob = mean(base)
    lifts = {}
    for key, logits in scored.items():
        logit, logprob = mean(logits)
        lifts[key] = (logit - base_logit, logprob - base_logprob)
    return lifts


# ---------------------------------------------------------------------------------------------
# Unit ranking: the same ranking the audit uses to pick a class's top neurons
# ---------------------------------------------------------------------------------------------


def top_units(
    classifier: Classifier,
    world: World,
    k: int = 5,
    *,
    layer: str = "penultimate",
    head: str = "head",
    n: int = 200,
    seed: int = 0,
) -> dict[str, list[RankedUnit]]:
    """Each class's top-`k` units of `layer`, ranked by (the `head` weight to the class) x (the
    unit's mean activation on `n` unbiased scenes of that class). `layer` must be what `head`
    reads (for a torchvision ResNet: layer="avgpool", head="fc")."""
    if k < 1 or n < 1:
        raise ValueError(f"k and n must be >= 1, got k={k}, n={n}")
    weight = head_weight(classifier, head, layer)
    names = class_names(world)
    if list(classifier.class_names) != names:
        raise ValueError(
            f"the classifier's classes {classifier.class_names} are not world {world.name!r}'s "
            f"{names}"
        )
    activation = torch.stack(
        [
            _forward(
                classifier,
                world,
                sample_specs(
                    world, n, seed=derive_seed(seed, "top-units", c), mode="unbiased", classes=[c]
                ),
                [layer],
            )[1][layer].mean(0)
            for c in names
        ]
    )
    return rank_units(weight, activation, k, class_names=names, layer=layer)


def factor_units(
    weight: Tensor,
    factor_activation: Mapping[tuple[str, str], Tensor],
    world: World,
    k: int = 5,
    *,
    layer: str = "penultimate",
) -> dict[str, dict[tuple[str, str], list[RankedUnit]]]:
    """For each class with planted factors: per planted factor (kind, name), the top-`k` units
    by `weight[class]` x the unit's mean activation on the factor's object-free scenes
    (`factor_activation[(kind, name)]`, [C]). These units carry the shortcut into the class
    logit. `weight` is the head weight [classes, C] in the world's class order."""
    names = class_names(world)
    if weight.shape[0] != len(names):
        raise ValueError(
            f"head weight {list(weight.shape)} has {weight.shape[0]} rows; world "
            f"{world.name!r} has {len(names)} classes"
        )
    out: dict[str, dict[tuple[str, str], list[RankedUnit]]] = {}
    for cls in names:
        for key in planted_factors(world, cls):
            # Rank one class's row: the other rows are never read, so they can be anything.
            activation = factor_activation[key].expand_as(weight)
            ranked = rank_units(weight, activation, k, class_names=names, layer=layer)
            out.setdefault(cls, {})[key] = ranked[cls]
    return out


# ---------------------------------------------------------------------------------------------
# Ground truth tables
# ---------------------------------------------------------------------------------------------


def compute_truth(
    world: World,
    classifier: Classifier,
    *,
    n: int = 500,
    seed: int = 0,
    k: int = 5,
    layer: str = "penultimate",
    head: str = "head",
) -> tuple[pa.Table, pa.Table]:
    """Class-level and neuron-level ground truth of `classifier` in `world` (see the module
    docstring); `n` scenes per context, per class and per unit measurement."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    classes = class_names(world)

    # 1. Object-free scenes per factor; one forward gives logits and units for both tables
    scenes = _factor_scenes(world, n, seed)
    logits, units, probs = {}, {}, {}
    for key, specs in scenes.items():
        out_logits, out_units = _forward(classifier, world, specs, [layer])
        logits[key], units[key] = out_logits, out_units[layer]
        probs[key] = out_logits.softmax(1)
    no_cue = [("context", c) for c in context_names(world)]
    base_logit = torch.cat([logits[key] for key in no_cue]).mean(0)
    base_prob = torch.cat([probs[key] for key in no_cue]).mean(0)

    # 2. Class level: factor response minus the neutral baseline, per class; and the factor's
    #    lift beside the class's own object
    class_rows = []
    for ci, cls in enumerate(classes):
        planted = planted_factors(world, cls)
        lifts = _with_object_lifts(world, classifier, cls, ci, n, seed)
        rows = []
        for kind, name in _factors(world):
            mean_logit = float(logits[(kind, name)][:, ci].mean())
            mean_prob = float(probs[(kind, name)][:, ci].mean())
            rows.append(
                {
                    "class": cls,
                    "factor_kind": kind,
                    "factor": name,
                    "planted": (kind, name) in planted,
                    "planted_p": float(planted.get((kind, name), 0.0)),
                    "mean_logit": mean_logit,
                    "mean_prob": mean_prob,
                    "baseline_logit": float(base_logit[ci]),
                    "baseline_prob": float(base_prob[ci]),
                    "reliance_logit": mean_logit - float(base_logit[ci]),
                    "reliance_prob": mean_prob - float(base_prob[ci]),
                    "n_scenes": len(scenes[(kind, name)]),
                    "with_object_logit": lifts[(kind, name)][0],
                    "with_object_logprob": lifts[(kind, name)][1],
                }
            )
        order = sorted(range(len(rows)), key=lambda i: -rows[i]["reliance_logit"])
        for r, i in enumerate(order):
            rows[i]["rank"] = r + 1
        class_rows += rows

    # 3. Neuron level: each class's top units, then its planted factors' units, each on the
    #    object alone vs on the planted factor alone
    ranked = top_units(classifier, world, k, layer=layer, head=head, n=n, seed=seed)
    by_factor = factor_units(
        head_weight(classifier, head, layer),
        {key: acts.mean(0) for key, acts in units.items()},
        world,
        k,
        layer=layer,
    )
    neuron_rows = []
    for cls in classes:
        _, obj_units = _forward(classifier, world, _object_on_neutral(world, cls, n, seed), [layer])
        object_mean = obj_units[layer].mean(0)
        candidates = list(planted_factors(world, cls)) or _factors(world)
        factor_means = torch.stack([units[key].mean(0) for key in candidates])  # [F, C]
        selected = [("top", unit) for unit in ranked[cls]]
        selected += [("factor", u) for units_ in by_factor.get(cls, {}).values() for u in units_]
        seen: set[str] = set()
        for selection, unit in selected:
            if unit.unit in seen:  # reached twice for this class: listed once, first selection
                continue
            seen.add(unit.unit)
            j = unit.channel
            best = int(factor_means[:, j].argmax())
            object_response = float(object_mean[j])
            context_response = float(factor_means[best, j])
            margin = context_response - object_response
            neuron_rows.append(
                {
                    "class": cls,
                    "unit": unit.unit,
                    "selection": selection,
                    "rank": unit.rank,
                    "score": unit.score,
                    "object_response": object_response,
                    "context_response": context_response,
                    "factor_kind": candidates[best][0],
                    "factor": candidates[best][1],
                    "margin": margin,
                    "label": "spurious" if margin > 0 else "core",
                }
            )

    return (
        pa.Table.from_pylist(class_rows, schema=CLASS_TRUTH_SCHEMA),
        pa.Table.from_pylist(neuron_rows, schema=NEURON_TRUTH_SCHEMA),
    )
