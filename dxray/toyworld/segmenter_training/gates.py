"""Is a toy segmenter good enough for the judge? Mask IoU and presence accuracy on held-out
scenes (`segmenter_gates`); `presence_accuracy` also scores any images, generated ones included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dxray.judge.verdict import object_query
from dxray.models.segmenter import Segmenter
from dxray.toyworld.data import class_names, context_names, cue_names
from dxray.toyworld.gates import Gate, check
from dxray.toyworld.scenes import SceneSpec, render_batch
from dxray.toyworld.segmenter_training.data import KINDS, sample_scenes
from dxray.toyworld.world import World

GATE_SEED = 7_919  # gate scenes come from their own seed stream, never from a training step's


@dataclass(frozen=True)
class PresenceScore:
    """How well presence >= threshold matches the truth over (image, query) pairs."""

    accuracy: float  # over all pairs
    recall: float  # of the present pairs, the fraction called present (nan if none)
    specificity: float  # of the absent pairs, the fraction called absent (nan if none)
    n_present: int
    n_absent: int

    @property
    def balanced(self) -> float:
        """Mean of recall and specificity (either alone if the other is undefined): a segmenter
        that never finds anything cannot pass on the many absent pairs alone."""
        parts = [v for v in (self.recall, self.specificity) if not math.isnan(v)]
        return float(np.mean(parts))


def presence_accuracy(
    segmenter: Segmenter,
    images: Tensor,
    queries: Sequence[str],
    present: Tensor,
    *,
    threshold: float = 0.5,
    batch_size: int = 256,
) -> PresenceScore:
    """Score `segmenter.probe(images, queries) >= threshold` against `present` (bool [B, Q]).

    Works for any images: rendered scenes (see `presence_truth`) or generated ones labelled by
    what they were made to show. `threshold` 0.5 is the judge's default "core" cut-off.
    """
    present = torch.as_tensor(present, dtype=torch.bool).cpu()
    if present.shape != (images.shape[0], len(queries)):
        raise ValueError(
            f"present must be [B, Q] = [{images.shape[0]}, {len(queries)}], "
            f"got {tuple(present.shape)}"
        )
    with torch.no_grad():
        scores = torch.cat(
            [
                segmenter.probe(images[i : i + batch_size], list(queries)).float().cpu()
                for i in range(0, images.shape[0], batch_size)
            ]
        )
    called = scores >= threshold
    right = called == present
    n_present, n_absent = int(present.sum()), int((~present).sum())
    return PresenceScore(
        accuracy=right.float().mean().item(),
        recall=right[present].float().mean().item() if n_present else math.nan,
        specificity=right[~present].float().mean().item() if n_absent else math.nan,
        n_present=n_present,
        n_absent=n_absent,
    )


def presence_truth(world: World, specs: Sequence[SceneSpec], kind: str) -> tuple[list[str], Tensor]:
    """Every query of `kind` the judge or probes would ask, and bool [N, Q] of what is present.

    "object": object_query(class) for each class; "context": each context's name; "cue":
    "a watermark" etc.
    """
    if kind == "object":
        names, held = class_names(world), [s.shape for s in specs]
        queries = [object_query(n) for n in names]
    elif kind == "context":
        names, held = context_names(world), [s.context for s in specs]
        queries = list(names)
    elif kind == "cue":
        names, held = cue_names(world), [s.cue for s in specs]
        queries = [f"{'an' if n[0] in 'aeiou' else 'a'} {n}" for n in names]
    else:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    present = torch.tensor([[h == n for n in names] for h in held], dtype=torch.bool)
    return queries, present.reshape(len(specs), len(names))


def mask_iou(probs: Tensor, truth: Tensor, threshold: float = 0.5) -> Tensor:
    """[N] IoU of `probs >= threshold` with the bool masks `truth` ([N, H, W]); 1 if both empty."""
    pred = probs >= threshold
    truth = truth.to(torch.bool)
    inter = (pred & truth).flatten(1).sum(1).float()
    union = (pred | truth).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def segmenter_gates(
    segmenter: Segmenter,
    world: World,
    *,
    n: int = 300,
    seed: int = GATE_SEED,
    iou_threshold: float = 0.8,
    accuracy_threshold: float = 0.95,
) -> list[Gate]:
    """Check a segmenter on `n` held-out scenes (a fifth context-only, half with a cue).

    Rows, in order:
    - object_iou: mean IoU of the true class's object_query mask (prob >= 0.5) with the object
      mask, over scenes that have an object;
    - context_iou: the same for the context's name and the context mask, over all scenes;
    - object_presence_accuracy: every class's object_query on every scene, present iff it is the
      scene's class (a context-only scene has none); balanced accuracy (see `PresenceScore`);
    - context_presence_accuracy and cue_presence_accuracy: likewise for context names and cue
      queries ("a watermark"); the cue row only if the world has cues.
    """
    specs = sample_scenes(world, n, seed=seed)
    images, masks, _ = render_batch(world, specs)
    rows: list[Gate] = []

    def gate(name: str, value: float, threshold: float) -> None:
        rows.append(check(name, value, ">=", threshold))

    with torch.no_grad():
        has_object = [i for i, s in enumerate(specs) if s.shape is not None]
        objects = [object_query(specs[i].shape) for i in has_object]
        seg = segmenter.segment(images[has_object], objects)
        gate(
            "object_iou",
            mask_iou(seg.masks.cpu(), masks["object"][has_object]).mean(),
            iou_threshold,
        )
        seg = segmenter.segment(images, [s.context for s in specs])
        gate("context_iou", mask_iou(seg.masks.cpu(), masks["context"]).mean(), iou_threshold)
    for kind in KINDS if world.cues else KINDS[:2]:
        queries, present = presence_truth(world, specs, kind)
        score = presence_accuracy(segmenter, images, queries, present)
        gate(f"{kind}_presence_accuracy", score.balanced, accuracy_threshold)
    return rows
