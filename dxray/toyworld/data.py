"""Sampling scene specs: the classifier's biased training distribution and its unbiased twin.

    specs = sample_specs(world, 2000, seed=0, mode="biased")
    labels = scene_labels(world, specs)          # object / context / cue indices for the oracle
    images, masks, captions = render_batch(world, specs)

Modes:
- "biased": the classifier's training data. For a class with a planted context correlation
  (context x, p), the context is x with probability p, else uniform over the other contexts;
  a planted cue correlation (cue k, p) makes the cue k with probability p. Everything else is
  uniform, and cues appear at their base rates.
- "unbiased": every factor independent and uniform; cues at their base rates.
- "fixed": "biased" minus the correlations that the world's fixed release removes.
- "context_only": no object; context uniform, cues at their base rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dxray.toyworld.scenes import SceneSpec
from dxray.toyworld.world import World, _suggest

Mode = Literal["biased", "unbiased", "fixed", "context_only"]
MODES: tuple[str, ...] = ("biased", "unbiased", "fixed", "context_only")
ROUND_SHAPES = ("circle", "ring")  # rotation changes nothing; keep 0 so specs stay readable


def class_names(world: World) -> list[str]:
    return [c.name for c in world.classes]


def context_names(world: World) -> list[str]:
    return [c.name for c in world.contexts]


def cue_names(world: World) -> list[str]:
    return [c.name for c in world.cues]


def colour_names(world: World) -> list[str]:
    return list(world.colours)


def context_probs(world: World, mode: Mode = "biased") -> np.ndarray:
    """P(context | class) under `mode`: float64 [n_classes, n_contexts], rows sum to 1."""
    _check_mode(mode)
    n_ctx = len(world.contexts)
    probs = np.full((len(world.classes), n_ctx), 1.0 / n_ctx)
    if mode in ("biased", "fixed"):
        ctx_index = {n: i for i, n in enumerate(context_names(world))}
        for ci, cls in enumerate(class_names(world)):
            for corr in _planted(world, mode):
                if corr.class_name == cls and corr.kind == "context":
                    probs[ci] = (1.0 - corr.p) / (n_ctx - 1)
                    probs[ci, ctx_index[corr.context]] = corr.p
    return probs


def cue_probs(world: World, mode: Mode = "biased") -> np.ndarray:
    """P(cue | class) under `mode`: float64 [n_classes, n_cues + 1]; the last column = no cue.

    A planted cue gets its p; the other cues keep their base rates, scaled down only if they
    no longer fit beside the planted ones.
    """
    _check_mode(mode)
    base = np.array([c.base_rate for c in world.cues], dtype=np.float64)
    rows = []
    for cls in class_names(world):
        rates = base.copy()
        planted = np.zeros(len(base), dtype=bool)
        if mode in ("biased", "fixed"):
            for corr in _planted(world, mode):
                if corr.class_name == cls and corr.kind == "cue":
                    k = cue_names(world).index(corr.cue)
                    rates[k], planted[k] = corr.p, True
        room = 1.0 - rates[planted].sum()
        others = rates[~planted].sum()
        if others > room:
            rates[~planted] *= room / others
        rows.append(np.append(rates, max(0.0, 1.0 - rates.sum())))
    return np.array(rows).reshape(len(world.classes), len(world.cues) + 1)


def sample_specs(
    world: World,
    n: int,
    *,
    seed: int,
    mode: Mode = "biased",
    classes: Sequence[str] | None = None,
) -> list[SceneSpec]:
    """Sample `n` scene specs; fully determined by (world, n, seed, mode, classes).

    `classes` restricts the objects to those classes (e.g. only circles), keeping each class's
    conditional distribution of context and cue.
    """
    _check_mode(mode)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    all_classes = class_names(world)
    if classes is None:
        allowed = np.arange(len(all_classes))
    else:
        for c in classes:
            if c not in all_classes:
                raise ValueError(
                    f"unknown class {c!r}; world {world.name!r} has {all_classes}"
                    + _suggest(c, all_classes)
                )
        allowed = np.array([all_classes.index(c) for c in classes])
    rng = np.random.default_rng(seed)
    contexts, cues, colours = context_names(world), cue_names(world), colour_names(world)

    # One vectorised draw per factor, always all of them, so a spec's factors do not shift
    # when another factor's distribution changes (e.g. "biased" vs "fixed" share objects).
    cls = allowed[rng.integers(len(allowed), size=n)]
    ctx_u, cue_u = rng.random(n), rng.random(n)
    colour = rng.integers(len(colours), size=n)
    lo, hi = world.layout.size
    size = rng.uniform(lo, hi, size=n)
    offset = rng.uniform(-world.layout.jitter, world.layout.jitter, size=(n, 2))
    rotation = rng.uniform(0.0, 360.0, size=n)
    scene_seed = rng.integers(0, 2**31 - 1, size=n)

    if mode == "context_only":
        ctx_p = np.full((n, len(contexts)), 1.0 / len(contexts))
        cue_p = np.broadcast_to(cue_probs(world, "unbiased")[0], (n, len(cues) + 1))
    else:
        ctx_p = context_probs(world, mode)[cls]
        cue_p = cue_probs(world, mode)[cls]
    ctx = _categorical(ctx_p, ctx_u)
    cue = _categorical(cue_p, cue_u)  # index len(cues) = no cue

    specs = []
    for i in range(n):
        has_object = mode != "context_only"
        name = all_classes[cls[i]] if has_object else None
        rotate = (
            world.layout.rotate
            and has_object
            and world.class_by_name[name].shape not in ROUND_SHAPES
        )
        specs.append(
            SceneSpec(
                shape=name,
                colour=colours[colour[i]] if has_object else None,
                size=round(float(size[i]), 4) if has_object else 0.0,
                position=(
                    (round(0.5 + float(offset[i, 0]), 4), round(0.5 + float(offset[i, 1]), 4))
                    if has_object
                    else (0.5, 0.5)
                ),
                rotation=round(float(rotation[i]), 2) if rotate else 0.0,
                context=contexts[ctx[i]],
                cue=cues[cue[i]] if cue[i] < len(cues) else None,
                seed=int(scene_seed[i]),
            )
        )
    return specs


@dataclass
class SceneLabels:
    """What an oracle predicts for each scene; indices follow class/context/cue_names."""

    object: np.ndarray  # int64 [N], class index, -1 for a context-only scene
    context: np.ndarray  # int64 [N]
    cue: np.ndarray  # int64 [N], cue index, -1 for no cue
    cue_present: np.ndarray  # bool [N]


def scene_labels(world: World, specs: Sequence[SceneSpec]) -> SceneLabels:
    """Label arrays for a list of specs."""
    cls = {n: i for i, n in enumerate(class_names(world))}
    ctx = {n: i for i, n in enumerate(context_names(world))}
    cue = {n: i for i, n in enumerate(cue_names(world))}
    obj = np.array([-1 if s.shape is None else cls[s.shape] for s in specs], dtype=np.int64)
    context = np.array([ctx[s.context] for s in specs], dtype=np.int64)
    cues = np.array([-1 if s.cue is None else cue[s.cue] for s in specs], dtype=np.int64)
    return SceneLabels(obj, context, cues, cues >= 0)


def _planted(world: World, mode: Mode):
    return world.fixed().correlations if mode == "fixed" else world.correlations


def _categorical(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw per row: the first index whose cumulative probability exceeds u."""
    cdf = np.cumsum(probs, axis=1)
    idx = (u[:, None] >= cdf).sum(axis=1)
    return np.minimum(idx, probs.shape[1] - 1)  # guard against float round-off at the top


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}" + _suggest(mode, MODES))
