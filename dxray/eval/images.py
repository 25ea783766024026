"""How recognisable and how natural explanation images are, judged without the audited model.

- `oracle_reading`: the toy world's oracle (a separate network trained on unbiased scenes to
  name each scene's object, context and cue) reads every image: is the target class's object
  there, and how sure is it of the context?
- `scene_statistics` / `statistics_distance`: a small, model-free descriptor of each image
  (per-channel mean and spread, mean horizontal and vertical gradient per channel) and the
  distance between two sets of images: a diagonal Frechet distance in units of the real
  scenes' spread per feature, so 0 means "the same statistics as real scenes" and ~1 per
  feature means "one standard deviation off". Pixel-space activation maximisation tends to
  produce high-frequency, saturated patterns; those move the gradient and spread features
  far from real scenes.
"""

from __future__ import annotations

import torch
from torch import Tensor

STATISTICS = (
    [f"mean_{c}" for c in "rgb"]
    + [f"std_{c}" for c in "rgb"]
    + [f"grad_x_{c}" for c in "rgb"]
    + [f"grad_y_{c}" for c in "rgb"]
)


def _check_images(images: Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        raise ValueError(f"images must be [B>=1, 3, H, W] in [0, 1]; got {tuple(images.shape)}")


def scene_statistics(images: Tensor) -> Tensor:
    """[B, 12] descriptors of images [B, 3, H, W] in [0, 1] (see STATISTICS)."""
    _check_images(images)
    x = images.detach().double()
    grad_x = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(2, 3))
    grad_y = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(2, 3))
    return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3)), grad_x, grad_y], dim=1)


def statistics_distance(images: Tensor, reference: Tensor) -> float:
    """Diagonal Frechet distance between the descriptors of `images` and of `reference`
    (real scenes), each feature scaled by the reference's standard deviation, divided by the
    number of features: the mean squared gap per feature, in reference standard deviations."""
    a, r = scene_statistics(images), scene_statistics(reference)
    if r.shape[0] < 2:
        raise ValueError("the reference needs at least 2 images to have a spread")
    scale = r.std(0).clamp_min(1e-6)
    a, r = a / scale, r / scale
    spread_a = a.std(0) if a.shape[0] > 1 else torch.zeros_like(a[0])
    gap = (a.mean(0) - r.mean(0)) ** 2 + (spread_a - r.std(0)) ** 2
    return float(gap.mean())


@torch.no_grad()
def oracle_reading(oracle, images: Tensor, object_index: Tensor) -> dict[str, Tensor]:
    """What the oracle makes of each image, [B] tensors:
    "object_recognised" (bool: the oracle names the expected object), "object_prob" (its
    probability of the expected object), "context_confidence" (its top context probability),
    "no_object" (bool: the oracle sees no object at all), "context" (the index of the context
    it sees), "cue" (the index of the cue it sees, -1 for none)."""
    from dxray.toyworld.nets import oracle_labels, oracle_logits

    _check_images(images)
    if object_index.shape != (images.shape[0],):
        raise ValueError(f"object_index must be [{images.shape[0]}]; got {object_index.shape}")
    heads = oracle_logits(oracle, images.to(oracle.device, oracle.dtype))
    seen = {k: v.cpu() for k, v in oracle_labels(heads).items()}
    objects = heads["object"].float().softmax(1).cpu()
    return {
        "context": seen["context"],
        "cue": seen["cue"],
        "object_recognised": seen["object"] == object_index,
        "object_prob": objects.gather(1, object_index[:, None])[:, 0],
        "context_confidence": heads["context"].float().softmax(1).amax(1).cpu(),
        "no_object": seen["object"] == -1,
    }
