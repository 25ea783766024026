"""The segmenter's training data: scenes (`sample_scenes`), and the (scene, query, mask) pairs
asked of them (`sample_batch`): positives name what a scene holds, negatives what it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from dxray.judge.verdict import object_query
from dxray.toyworld.data import class_names, colour_names, context_names, cue_names, sample_specs
from dxray.toyworld.scenes import SceneSpec, render_batch
from dxray.toyworld.segmenter_training.config import ToySegmenterConfig
from dxray.toyworld.world import World

KINDS = ("object", "context", "cue")


def sample_scenes(
    world: World,
    n: int,
    *,
    seed: int,
    context_only_fraction: float = 0.2,
    cue_fraction: float = 0.5,
) -> list[SceneSpec]:
    """`n` scene specs: unbiased objects plus context-only scenes, a cue on `cue_fraction`."""
    rng = np.random.default_rng(seed)
    with_object = sample_specs(world, n, seed=int(rng.integers(2**31)), mode="unbiased")
    without = sample_specs(world, n, seed=int(rng.integers(2**31)), mode="context_only")
    cues = cue_names(world)
    specs = []
    for i in range(n):
        spec = without[i] if rng.random() < context_only_fraction else with_object[i]
        cue = None
        if cues and rng.random() < cue_fraction:
            cue = cues[rng.integers(len(cues))]
        specs.append(replace(spec, cue=cue))
    return specs


@dataclass
class SegmenterBatch:
    """Training pairs: `queries[p]` asked of `images[scene_index[p]]`, answer `targets[p]`."""

    images: Tensor  # [N, 3, H, W] in [0, 1]
    specs: list[SceneSpec]  # the N scenes
    scene_index: Tensor  # int64 [P]
    queries: list[str]  # P queries
    kinds: list[str]  # P of "object" / "context" / "cue"
    positive: Tensor  # bool [P]: the query names something in the scene
    targets: Tensor  # float32 [P, H, W]: the named thing's mask, all zero for a negative


def sample_batch(
    world: World, n_scenes: int, *, seed: int, config: ToySegmenterConfig
) -> SegmenterBatch:
    """Render `n_scenes` scenes and ask one object, one context and (if the world has cues) one
    cue query of each; each query is a negative with probability `config.negative_fraction`,
    unless the scene makes that impossible (a context-only scene has no object to find).
    Then `config.extra_object_negatives` more object queries a scene, each naming a different
    class the scene lacks (fewer if the world has fewer)."""
    specs = sample_scenes(
        world,
        n_scenes,
        seed=seed,
        context_only_fraction=config.context_only_fraction,
        cue_fraction=config.cue_fraction,
    )
    images, masks, _ = render_batch(world, specs)
    rng = np.random.default_rng([seed, 1])
    kinds = KINDS if world.cues else KINDS[:2]
    scene_index, queries, pair_kinds, positive, targets = [], [], [], [], []

    def add(i: int, kind: str, query: str, is_positive: bool) -> None:
        scene_index.append(i)
        queries.append(query)
        pair_kinds.append(kind)
        positive.append(is_positive)
        mask = masks[kind][i] if is_positive else torch.zeros_like(masks[kind][i])
        targets.append(mask.float())

    classes = class_names(world)
    for i, spec in enumerate(specs):
        for kind in kinds:
            query, is_positive, name = _pair(world, spec, kind, rng, config.negative_fraction)
            add(i, kind, query, is_positive)
            if kind == "object" and config.extra_object_negatives:
                absent = [c for c in classes if c not in (spec.shape, name)]
                for j in rng.permutation(len(absent))[: config.extra_object_negatives]:
                    add(i, "object", _object_text(absent[j], None, world, rng), False)
    return SegmenterBatch(
        images=images,
        specs=specs,
        scene_index=torch.tensor(scene_index, dtype=torch.int64),
        queries=queries,
        kinds=pair_kinds,
        positive=torch.tensor(positive, dtype=torch.bool),
        targets=torch.stack(targets),
    )


def _pair(
    world: World, spec: SceneSpec, kind: str, rng: np.random.Generator, negative_fraction: float
) -> tuple[str, bool, str]:
    """One query of `kind` about `spec`, whether it names something present, and the name."""
    present = {"object": spec.shape, "context": spec.context, "cue": spec.cue}[kind]
    names = {"object": class_names, "context": context_names, "cue": cue_names}[kind](world)
    absent = [n for n in names if n != present]
    want_negative = rng.random() < negative_fraction
    negative = present is None or (want_negative and bool(absent))
    name = absent[rng.integers(len(absent))] if negative else present
    if kind == "object":
        colour = spec.colour if spec.colour and not negative else None
        return _object_text(name, colour, world, rng), not negative, name
    if kind == "context":
        templates = [name]
    else:
        article = "an" if name[0] in "aeiou" else "a"
        templates = [f"{article} {name}", name]
    return templates[rng.integers(len(templates))], not negative, name


def _object_text(name: str, colour: str | None, world: World, rng: np.random.Generator) -> str:
    """A query naming object class `name`. The judge asks object_query(class) = "a circle"; the
    variants keep the text encoder from hanging on one template. Without a `colour` (the scene's,
    for a positive) a random one: for a negative only the shape matters."""
    colour = colour or colour_names(world)[rng.integers(len(world.colours))]
    article = "an" if colour[0] in "aeiou" else "a"
    templates = [object_query(name), object_query(name), name, f"{article} {colour} {name}"]
    return templates[rng.integers(len(templates))]
