"""Objectives: what an explanation maximises, one value per batch row.

They compose like lucent's: `ClassLogit(3) + 0.5 * Unit("layer4", 17)`, `-x`, `a - b`. An
objective is called on a `ClassifierOutput` (logits + spatial means of the hidden layers it asks
for; `dxray.models.outputs`) and returns a tensor of shape [B]: higher is better. Each batch row
of an optimisation may have its own objective; the engine evaluates row i's objective and keeps
entry i.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dxray.models.outputs import ClassifierOutput


class Objective:
    """Base class: subclasses implement `__call__` and, if they read hidden layers, `layers`."""

    #: The class whose probability tells whether this objective is met (early stopping), if any.
    target_class: int | None = None

    def __call__(self, out: ClassifierOutput) -> Tensor:
        raise NotImplementedError

    def layers(self) -> set[str]:
        """Hidden layers this objective reads (hooks are placed on them)."""
        return {layer for layer, _ in self.units()}

    def classes(self) -> set[int]:
        """Class indices this objective reads (validated against the classifier)."""
        return set()

    def units(self) -> set[tuple[str, int]]:
        """(layer, channel) pairs this objective reads (validated against the classifier)."""
        return set()

    def __add__(self, other: Objective | float) -> Objective:
        return Sum(self, _lift(other))

    __radd__ = __add__

    def __sub__(self, other: Objective | float) -> Objective:
        return Sum(self, Scaled(_lift(other), -1.0))

    def __rsub__(self, other: Objective | float) -> Objective:
        return Sum(_lift(other), Scaled(self, -1.0))

    def __mul__(self, factor: float) -> Objective:
        return Scaled(self, float(factor))

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return Scaled(self, -1.0)


@dataclass(frozen=True)
class ClassLogit(Objective):
    """The pre-softmax score of class `index` (DiffExplainer's first objective)."""

    index: int

    @property
    def target_class(self) -> int:
        return self.index

    def __call__(self, out: ClassifierOutput) -> Tensor:
        return out.logits[:, self.index]

    def classes(self) -> set[int]:
        return {self.index}

    def __repr__(self) -> str:
        return f"ClassLogit({self.index})"


@dataclass(frozen=True)
class ClassCE(Objective):
    """Minus the cross-entropy toward class `index`, i.e. its log-probability (the paper's
    second objective). Unlike the logit, it also pushes the other classes down."""

    index: int

    @property
    def target_class(self) -> int:
        return self.index

    def __call__(self, out: ClassifierOutput) -> Tensor:
        return F.log_softmax(out.logits.float(), dim=-1)[:, self.index]

    def classes(self) -> set[int]:
        return {self.index}

    def __repr__(self) -> str:
        return f"ClassCE({self.index})"


@dataclass(frozen=True)
class CentredLogit(Objective):
    """Class `index`'s logit minus the mean logit over classes. Unlike the probability it
    never saturates, and unlike the raw logit it ignores what lifts every class at once (a
    bright or blank image). The score of dxray.shortcuts, and the objective of object-free
    explanations."""

    index: int

    @property
    def target_class(self) -> int:
        return self.index

    def __call__(self, out: ClassifierOutput) -> Tensor:
        logits = out.logits.float()
        return logits[:, self.index] - logits.mean(dim=-1)

    def classes(self) -> set[int]:
        return {self.index}

    def __repr__(self) -> str:
        return f"CentredLogit({self.index})"


@dataclass(frozen=True)
class Unit(Objective):
    """The spatial mean activation of one channel of a hidden layer ("layer.path:channel").

    A unit behind a ReLU that is silent on the starting image (activation exactly 0) has no
    gradient, and its explanation would never leave the starting image (measured on the toy
    classifier: half of the audited units stayed at 0 for all 60 iterations). Where the
    classifier reports the layer's pre-rectifier means, a silent unit takes the gradient of
    its pre-activation instead (straight through); the value is always the true activation.
    """

    layer: str
    channel: int

    def __call__(self, out: ClassifierOutput) -> Tensor:
        value = out.units[self.layer][:, self.channel]
        pre = out.pre_units.get(self.layer)
        if pre is None:
            return value
        pre = pre[:, self.channel]
        silent = (value <= 0).to(value.dtype)
        return value + (pre - pre.detach()) * silent

    def units(self) -> set[tuple[str, int]]:
        return {(self.layer, self.channel)}

    def __repr__(self) -> str:
        return f"Unit({self.layer!r}, {self.channel})"


@dataclass(frozen=True)
class Constant(Objective):
    value: float

    def __call__(self, out: ClassifierOutput) -> Tensor:
        return out.logits.new_full((out.logits.shape[0],), self.value)

    def __repr__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class Scaled(Objective):
    inner: Objective
    factor: float

    @property
    def target_class(self) -> int | None:
        # A negated class objective minimises the class: its probability is no stop signal.
        return self.inner.target_class if self.factor > 0 else None

    def __call__(self, out: ClassifierOutput) -> Tensor:
        return self.factor * self.inner(out)

    def classes(self) -> set[int]:
        return self.inner.classes()

    def units(self) -> set[tuple[str, int]]:
        return self.inner.units()

    def __repr__(self) -> str:
        return f"-{self.inner!r}" if self.factor == -1.0 else f"{self.factor:g} * {self.inner!r}"


@dataclass(frozen=True)
class Sum(Objective):
    left: Objective
    right: Objective

    @property
    def target_class(self) -> int | None:
        a, b = self.left.target_class, self.right.target_class
        return a if b is None else b if a is None else (a if a == b else None)

    def __call__(self, out: ClassifierOutput) -> Tensor:
        return self.left(out) + self.right(out)

    def classes(self) -> set[int]:
        return self.left.classes() | self.right.classes()

    def units(self) -> set[tuple[str, int]]:
        return self.left.units() | self.right.units()

    def __repr__(self) -> str:
        return f"({self.left!r} + {self.right!r})"


def _lift(x: Objective | float) -> Objective:
    if isinstance(x, Objective):
        return x
    if isinstance(x, int | float):
        return Constant(float(x))
    raise TypeError(f"cannot combine an objective with {type(x).__name__}")


def evaluate_rows(objectives: list[Objective], out: ClassifierOutput) -> Tensor:
    """Row i's value under objective i: shape [B].

    Each objective sees only its own rows (rows sharing an objective are evaluated together):
    an objective that blows up on another row's output must not send NaN into that row's
    gradient.
    """
    groups: dict[Objective, list[int]] = {}
    for i, objective in enumerate(objectives):
        groups.setdefault(objective, []).append(i)
    values = out.logits.new_empty(len(objectives))
    for objective, rows in groups.items():
        index = torch.tensor(rows, device=out.logits.device)
        values = values.index_put((index,), objective(out.rows(index)).to(values.dtype))
    return values


def target_probabilities(objectives: list[Objective], logits: Tensor) -> Tensor:
    """Probability of each row's target class; NaN for rows whose objective has none."""
    probs = logits.detach().float().softmax(-1)
    out = torch.full((len(objectives),), float("nan"), device=logits.device)
    for i, objective in enumerate(objectives):
        if objective.target_class is not None:
            out[i] = probs[i, objective.target_class]
    return out
