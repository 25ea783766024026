"""Which hidden units matter for a class: head weight x mean activation.

Salient ImageNet ranks a class's penultimate units by (the head's weight from the unit to the
class) x (the unit's mean activation on the class's images). The toy world's ground truth and
the audit platform both rank with `rank_units`, so they talk about the same units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor, nn


@dataclass(frozen=True)
class RankedUnit:
    """One of a class's top units: its contribution `score` = `weight` x `activation`."""

    class_name: str
    layer: str
    channel: int
    rank: int  # 1 = largest score
    score: float
    weight: float  # head weight from this unit to the class logit
    activation: float  # mean activation on the class's scenes

    @property
    def unit(self) -> str:
        """The unit as dxray writes it: "layer:channel"."""
        return f"{self.layer}:{self.channel}"


def head_weight(classifier, head: str, layer: str) -> Tensor:
    """The weight [num_classes, channels] of the Linear `head` that reads `layer`'s units."""
    modules = dict(classifier.model.named_modules())
    module = modules.get(head)
    if not isinstance(module, nn.Linear):
        linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
        raise ValueError(
            f"head {head!r} is not a Linear layer of the classifier; its Linear layers: {linears}"
        )
    weight = module.weight.detach().float()
    channels = classifier.unit_channels(layer)
    if weight.shape != (classifier.num_classes, channels):
        raise ValueError(
            f"head {head!r} has weight {list(weight.shape)}, but reading layer {layer!r} "
            f"({channels} units) into {classifier.num_classes} classes needs "
            f"[{classifier.num_classes}, {channels}]: give the layer that feeds the head"
        )
    return weight


def rank_units(
    weight: Tensor, activation: Tensor, k: int, *, class_names: Sequence[str], layer: str
) -> dict[str, list[RankedUnit]]:
    """Rank units per class by `weight[c, j] * activation[c, j]` (both [classes, units]),
    largest first, ties to the lower channel; keep the top `k` of each class."""
    if weight.shape != activation.shape:
        raise ValueError(
            f"weight {list(weight.shape)} and activation {list(activation.shape)} must match"
        )
    k = min(k, weight.shape[1])
    score = (weight * activation).double().numpy()
    ranked: dict[str, list[RankedUnit]] = {}
    for ci, name in enumerate(class_names):
        channels = np.arange(score.shape[1])
        order = np.lexsort((channels, -score[ci]))[:k]
        ranked[name] = [
            RankedUnit(
                class_name=name,
                layer=layer,
                channel=int(j),
                rank=r + 1,
                score=float(score[ci, j]),
                weight=float(weight[ci, j]),
                activation=float(activation[ci, j]),
            )
            for r, j in enumerate(order)
        ]
    return ranked
