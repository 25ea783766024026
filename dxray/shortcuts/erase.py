"""Object erasing: what a classifier sees of an image once every object in it is gone.

An object-free explanation optimises a class through `explain(..., transform=ObjectEraser(...))`:
the classifier only ever sees the rendered image with the objects erased, so the optimisation
cannot reach the class through its object, only through what surrounds it. The masks come
from the segmenter under `no_grad` and are grown, so the optimisation cannot fool the
segmenter (a differentiable presence penalty was fooled: docs/EVALUATION.md); gradients flow
through the pixels that are kept.

How a hole is filled matters. A flat colour keeps the object's silhouette, which a shape
classifier still reads; so the default fill copies the image's own background texture into
the hole from the shift of the image whose pixels there are background ("texture"), with
the mean colour for what no shift covers. "blur" fills by repeated local averaging of the
known pixels (a smooth patch), "mean" with the mean background colour (the intervention
judge's fill).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from dxray.judge.intervention import grown_mask, remove_objects

Fill = Literal["texture", "blur", "mean"]


class ObjectEraser:
    """images [B, 3, H, W] -> the same images with every `queries` object erased.

    `queries` are the segmenter's object queries ("a tench", ...): all the classes', or a
    choice of them (see `dxray.shortcuts` for the cost of each). `last_masks` holds the
    masks of the latest call ([B, H, W] bool), for reading out what was erased."""

    def __init__(
        self,
        segmenter,
        queries: Sequence[str],
        *,
        grow: int = 2,
        fill: Fill = "texture",
        present: float = 0.5,
    ):
        if not queries:
            raise ValueError("give at least one object query to erase")
        if fill not in ("texture", "blur", "mean"):
            raise ValueError(f"fill must be texture, blur or mean, got {fill!r}")
        self.segmenter = segmenter
        self.queries = list(queries)
        self.grow, self.fill, self.present = int(grow), fill, float(present)
        self.last_masks: Tensor | None = None

    def masks(self, images: Tensor) -> Tensor:
        """[B, H, W] bool: where any object is (probability >= `present`), grown."""
        with torch.no_grad():
            x = images.detach().to(self.segmenter.device, self.segmenter.dtype)
            union = self.segmenter.union_mask(x, self.queries).float()
            union = (union >= self.present).float()
        return grown_mask(union, self.grow).to(images.device)

    def __call__(self, images: Tensor) -> Tensor:
        masks = self.masks(images)
        self.last_masks = masks
        return erase(images, masks, self.fill)


def erase(images: Tensor, masks: Tensor, fill: Fill = "texture") -> Tensor:
    """`images` with the `masks` pixels filled (see the module docstring); differentiable in
    the kept pixels."""
    if fill == "mean":
        return remove_objects(images, masks)
    if fill == "blur":
        return _blur_fill(images, masks)
    return _texture_fill(images, masks)


def _blur_fill(images: Tensor, masks: Tensor, rounds: int = 64) -> Tensor:
    """Normalised convolution: each round, hole pixels take the mean of their known (or
    already filled) 3x3 neighbours; after enough rounds every hole pixel has a value."""
    known = (~masks.to(torch.bool)).to(images.dtype)[:, None]
    x = images * known
    weight = known
    kernel = torch.ones(1, 1, 3, 3, dtype=images.dtype, device=images.device)
    for _ in range(rounds):
        total = F.conv2d(x.flatten(0, 1)[:, None], kernel, padding=1).view_as(x)
        count = F.conv2d(weight, kernel, padding=1)
        filled = total / count.clamp_min(1e-6)
        reached = (count > 0).to(images.dtype)
        x = x * weight + filled * reached * (1 - weight)
        weight = torch.maximum(weight, reached)
    return remove_objects(x, weight[:, 0] < 0.5) if bool((weight < 0.5).any()) else x


def _texture_fill(images: Tensor, masks: Tensor) -> Tensor:
    """Fill each hole pixel from the same image shifted by half its size (four shifts, the
    first whose source pixel is background wins), then the mean colour for the rest."""
    holes = masks.to(torch.bool).to(images.device)
    out = images
    todo = holes.clone()
    h, w = images.shape[-2:]
    for dy, dx in ((h // 2, 0), (0, w // 2), (h // 2, w // 2), (-(h // 4), -(w // 4))):
        source = torch.roll(images, shifts=(dy, dx), dims=(-2, -1))
        usable = todo & ~torch.roll(holes, shifts=(dy, dx), dims=(-2, -1))
        take = usable[:, None].to(images.dtype)
        out = out * (1 - take) + source * take
        todo = todo & ~usable
    return remove_objects(out, todo) if bool(todo.any()) else out
