"""Core or spurious for a hidden unit, by intervention on its own explanation image.

A unit's explanation image maximises the unit. Whether the object or the background drives it
is asked the way the toy world's ground truth asks it of real scenes: remove the objects (their
pixels filled with the mean colour of the rest of the image) and measure the unit again.

- at least `keep` (0.5) of its activation survives -> the background drives it: "spurious";
- less survives -> the object does: "core";
- "uncertain" when the unit is silent on its own image (nothing to compare) or the masks cover
  the whole image (no background left to keep).

Which objects are removed is the caller's choice: the unit's own class's object, or every
class's (a class's top units are often another class's detectors; removing only the own
class's object would keep that other object and call the unit spurious). The presence verdict
(`dxray.judge.verdict`) remains the judge of class targets: for them, "is the class's object
there" is the question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dxray.judge.verdict import Verdict


@dataclass(frozen=True)
class UnitJudgement:
    verdict: Verdict
    kept: float | None  # share of the activation that survives the removal; None if silent
    before: float | None = None  # the unit's activation on its explanation image
    after: float | None = None  # ... and once the objects are removed


@torch.no_grad()
def object_masks(segmenter, images: Tensor, queries: Sequence[str], grow: int = 1) -> Tensor:
    """[B, H, W] bool: pixels any of `queries` covers (see `grown_mask`)."""
    return grown_mask(segmenter.union_mask(images, list(queries)), grow)


def grown_mask(probabilities: Tensor, grow: int = 1) -> Tensor:
    """[B, H, W] bool from per-pixel object probabilities: >= 0.5, grown by `grow` pixels so
    that object edges go with the object."""
    masks = probabilities.float().cpu()
    if grow > 0:
        k = 2 * grow + 1
        masks = F.max_pool2d(masks[:, None], kernel_size=k, stride=1, padding=grow)[:, 0]
    return masks >= 0.5


def remove_objects(images: Tensor, masks: Tensor) -> Tensor:
    """`images` [B, 3, H, W] with the `masks` pixels filled by the mean colour of the rest."""
    background = (~masks.to(torch.bool)).to(images.dtype)[:, None].to(images.device)
    weight = background.sum(dim=(2, 3)).clamp_min(1.0)
    mean = (images * background).sum(dim=(2, 3)) / weight  # [B, 3]
    return images * background + mean[:, :, None, None] * (1 - background)


@torch.no_grad()
def judge_units(
    classifier,
    images: Tensor,
    masks: Tensor,
    units: Sequence[tuple[str, int]],
    *,
    keep: float = 0.5,
    floor: float = 1e-3,
) -> list[UnitJudgement]:
    """One judgement per image: `units[i]` ("layer", channel) measured on `images[i]` before
    and after its `masks[i]` objects are removed (see the module docstring)."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    if images.shape[0] != masks.shape[0] or len(units) != images.shape[0]:
        raise ValueError("images, masks and units must have one entry per image")
    layers = sorted({layer for layer, _ in units})
    x = images.to(classifier.device, classifier.dtype)
    full = classifier.outputs(x, layers).units
    cut = classifier.outputs(remove_objects(x, masks), layers).units
    out = []
    for i, (layer, channel) in enumerate(units):
        before = float(full[layer][i, channel])
        after = float(cut[layer][i, channel])
        if before <= floor:
            out.append(UnitJudgement("uncertain", None, before, after))
        elif bool(masks[i].all()):
            out.append(UnitJudgement("uncertain", after / before, before, after))
        else:
            kept = after / before
            verdict = "spurious" if kept >= keep else "core"
            out.append(UnitJudgement(verdict, kept, before, after))
    return out
