"""Attribute probes: how often an attribute ("a watermark", "water") shows up in explanation images.

A probe is a text query scored on every image by the segmenter's presence. Its rate over the
images of one class, compared with another group of images (other classes, or the training
data's base rate), is a bias statistic: a classifier whose "star" explanations are watermarked
nine times out of ten has learned the watermark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor


class Prober(Protocol):
    """What `run_probes` needs of a segmenter (`dxray.models.segmenter.Segmenter` is one)."""

    def probe(self, images: Tensor, queries: list[str]) -> Tensor: ...


@dataclass
class ProbeResult:
    queries: list[str]
    scores: Tensor  # [B, Q] presence of query q in image b, in [0, 1]

    def __post_init__(self):
        if self.scores.ndim != 2 or self.scores.shape[1] != len(self.queries):
            raise ValueError(
                f"scores must be [B, {len(self.queries)}] (one column per query); "
                f"got {tuple(self.scores.shape)}"
            )

    def rates(self, threshold: float = 0.5) -> dict[str, float]:
        """Fraction of images in which each query is present, by query."""
        return dict(zip(self.queries, probe_rates(self.scores, threshold).tolist(), strict=True))


def run_probes(segmenter: Prober, images: Tensor, queries: list[str]) -> ProbeResult:
    """Score every query on every image ([B, 3, H, W] in [0, 1])."""
    queries = list(queries)
    return ProbeResult(queries=queries, scores=segmenter.probe(images, queries))


def probe_rates(scores: Tensor, threshold: float = 0.5) -> Tensor:
    """[Q] fraction of the B images whose presence for each query is >= `threshold`."""
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise ValueError(f"scores must be [B, Q] with B >= 1; got {tuple(scores.shape)}")
    return (scores >= threshold).float().mean(dim=0)


@dataclass(frozen=True)
class EffectSize:
    """How much more present an attribute is in group a than in group b."""

    mean_difference: float  # mean(a) - mean(b), in presence units
    cohens_d: float  # mean_difference / pooled standard deviation; nan if undefined
    n_a: int
    n_b: int


def effect_size(scores_a: Tensor, scores_b: Tensor) -> EffectSize:
    """Difference in mean presence of one attribute between two groups of images, and Cohen's d.

    d uses the pooled unbiased standard deviation. It is nan with fewer than 3 images in all (no
    spread can be estimated), and +-inf when both groups are constant but differ (0 if equal).
    """
    a = scores_a.detach().double().flatten()
    b = scores_b.detach().double().flatten()
    if a.numel() == 0 or b.numel() == 0:
        raise ValueError(f"both groups need images; got {a.numel()} and {b.numel()}")
    n_a, n_b = a.numel(), b.numel()
    difference = (a.mean() - b.mean()).item()
    dof = n_a + n_b - 2
    if dof == 0:
        return EffectSize(difference, math.nan, n_a, n_b)
    squares = ((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()
    pooled_sd = math.sqrt(squares.item() / dof)
    if pooled_sd == 0.0:
        d = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
    else:
        d = difference / pooled_sd
    return EffectSize(difference, d, n_a, n_b)
