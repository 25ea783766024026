"""A quality gate of the toy zoo: `value op threshold`, and whether it holds.

Shared by the classifier and oracle gates (truth.py), the segmenter's (train_segmenter.py)
and the zoo's table (zoo.py, which adds the group).
"""

from __future__ import annotations

from dataclasses import dataclass

OPS = (">=", ">", "<", "info")


@dataclass(frozen=True)
class Gate:
    name: str
    value: float
    threshold: float
    op: str  # ">=", ">", "<", or "info": a measurement shown beside the gates, always passing
    passed: bool


def check(name: str, value: float, op: str, threshold: float) -> Gate:
    """The gate `value op threshold`."""
    value, threshold = float(value), float(threshold)
    holds = {">=": value >= threshold, ">": value > threshold, "<": value < threshold, "info": True}
    if op not in holds:
        raise ValueError(f"op must be one of {OPS}; got {op!r}")
    return Gate(name, value, threshold, op, bool(holds[op]))
