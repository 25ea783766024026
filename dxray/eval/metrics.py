"""Agreement between a ground-truth labelling and a predicted one.

Truth has two labels (a positive, e.g. "spurious", and a negative, e.g. "core"); predictions
may also abstain ("uncertain"). An abstention is never right: `accuracy` counts it as wrong,
and `decided_accuracy` reports the accuracy over the items that got a positive or negative
call, next to `coverage`, the fraction that did. Precision and recall are for the positive
label; undefined ratios (nothing predicted positive, nothing truly positive) are NaN, never a
flattering 0 or 1. When one label is rare (a good classifier has few spurious units), plain
accuracy flatters a judge that always says the common label; `balanced_accuracy`, the mean of
the two labels' recalls, gives every constant judge 0.5.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

SUCCESS_PROB = 0.9  # a class explanation "succeeds" when the classifier gives it p >= this


@dataclass(frozen=True)
class Agreement:
    positive: str
    negative: str
    n: int  # items compared
    accuracy: float  # right calls / n (abstentions count as wrong)
    coverage: float  # items with a positive or negative call / n
    decided_accuracy: float  # right calls / decided items
    balanced_accuracy: float  # mean of the two labels' recalls: 0.5 for any constant judge
    precision: float  # of the positive label
    recall: float
    f1: float
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)  # (truth, call) -> n

    def as_metrics(self) -> dict[str, float]:
        """The scalar metrics by name (for catalog rows and tables)."""
        return {
            "n": float(self.n),
            "accuracy": self.accuracy,
            "coverage": self.coverage,
            "decided_accuracy": self.decided_accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def agreement(
    truth: Sequence[str],
    predicted: Sequence[str],
    *,
    positive: str = "spurious",
    negative: str = "core",
) -> Agreement:
    """Compare `predicted` with `truth`, item by item.

    Truth labels must be `positive` or `negative`; a prediction that is neither is an
    abstention (e.g. "uncertain", or None for an item that got no verdict).
    """
    if len(truth) != len(predicted):
        raise ValueError(f"truth has {len(truth)} labels but predicted has {len(predicted)}")
    bad = sorted({str(t) for t in truth} - {positive, negative})
    if bad:
        raise ValueError(f"truth labels must be {positive!r} or {negative!r}; got {bad}")
    calls = [p if p in (positive, negative) else "uncertain" for p in predicted]
    confusion = Counter(zip(truth, calls, strict=True))
    tp = confusion[(positive, positive)]
    fp = confusion[(negative, positive)]
    fn = confusion[(positive, negative)] + confusion[(positive, "uncertain")]
    right = tp + confusion[(negative, negative)]
    decided = sum(c != "uncertain" for c in calls)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision + recall > 0  # NaN compares False: an undefined part gives NaN below
        else (0.0 if precision == 0 and recall == 0 else math.nan)
    )
    tn = confusion[(negative, negative)]
    negatives = sum(t == negative for t in truth)
    recalls = [r for r in (recall, _ratio(tn, negatives)) if not math.isnan(r)]
    n = len(truth)
    return Agreement(
        positive=positive,
        negative=negative,
        n=n,
        accuracy=_ratio(right, n),
        coverage=_ratio(decided, n),
        decided_accuracy=_ratio(right, decided),
        balanced_accuracy=sum(recalls) / len(recalls) if recalls else math.nan,
        precision=precision,
        recall=recall,
        f1=f1,
        confusion=dict(confusion),
    )


def confusion_rows(result: Agreement) -> list[dict[str, object]]:
    """The confusion table as rows: one per truth label, one column per call."""
    calls = (result.positive, result.negative, "uncertain")
    return [
        {"truth": t, **{c: result.confusion.get((t, c), 0) for c in calls}}
        for t in (result.positive, result.negative)
    ]


def median(values: Sequence[float]) -> float:
    """The median of the finite values; NaN if there are none."""
    finite = sorted(v for v in values if v is not None and math.isfinite(v))
    if not finite:
        return math.nan
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2
