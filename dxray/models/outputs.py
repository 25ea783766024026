"""What a classifier forward yields: logits and the hidden units asked for.

`Classifier.outputs` builds a `ClassifierOutput`; the explain engine's objectives read it. It
lives with the models so that the models never import the explain engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ClassifierOutput:
    """What a classifier forward yields for the objectives."""

    logits: Tensor  # [B, num_classes]
    units: dict[str, Tensor] = field(default_factory=dict)  # layer -> [B, channels]
    # For layers that end in a rectifier: the same means taken before it (see
    # `dxray.explain.objective.Unit`).
    pre_units: dict[str, Tensor] = field(default_factory=dict)

    def rows(self, index: Tensor) -> ClassifierOutput:
        return ClassifierOutput(
            self.logits[index],
            {k: v[index] for k, v in self.units.items()},
            {k: v[index] for k, v in self.pre_units.items()},
        )
