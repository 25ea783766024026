"""Scoring the shortcut test: centred logits, lifts with bootstrap intervals, the finding rule.

Why centred logits: a class probability saturates (beside its object a shortcut adds ~0.02
nats of log-probability, docs/EVALUATION.md) and is coupled to every other class; a raw logit
carries whatever offset the image gives all classes at once (a bright image, a blank one).
The centred logit, z_c = logit_c - mean over classes, removes that common offset and never
saturates.

- **scene** attribute a: lift(c, a) = mean z_c over a's kept images - the mean over every
  scene of its mean z_c (each scene weighted once, however many of its images were kept). So a
  lift says "how much more the class fires on this scene than on the vocabulary's average
  scene", the same comparison the toy world's ground truth makes (factor alone vs the mean
  over every context). A vocabulary in which every scene lifts a class equally shows no lift:
  list scenes that the class should not care about too.
- **overlay** attribute o: lift(c, o) = mean over (scene, seed) pairs of z_c(scene with o) -
  z_c(scene), both images of a pair from the same noise seed.

The 95% interval is a percentile bootstrap (images resampled within each scene; pairs for
overlays), seeded, so the same images always give the same interval.

The finding rule is fixed before measuring (`FindingRule`): a lift of at least 1 nat (the
ground truth's own threshold for "relies on": the factor multiplies the class's odds by e or
more), an interval that excludes 0, and at least 4 images (or pairs) behind it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dxray.shortcuts.vocabulary import Attribute

KEPT = "kept"
RESAMPLES = 1000


@dataclass(frozen=True)
class FindingRule:
    min_lift: float = 1.0  # nats of centred logit: the truth's "relies on" threshold
    confidence: float = 0.95  # of the bootstrap interval, whose lower end must be > 0
    min_images: int = 4  # fewer kept images (pairs) than this: no finding, whatever the lift

    def __post_init__(self):
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.min_images < 1:
            raise ValueError(f"min_images must be >= 1, got {self.min_images}")

    def finds(self, lift: float, low: float, images: int) -> bool:
        ok = images >= self.min_images and math.isfinite(lift) and math.isfinite(low)
        return ok and lift >= self.min_lift and low > 0.0


def centred(logits: Tensor) -> Tensor:
    """Logits [N, C] minus each image's mean over classes."""
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be [N, C] with C >= 2; got {tuple(logits.shape)}")
    logits = logits.double()
    return logits - logits.mean(dim=1, keepdim=True)


@dataclass(frozen=True)
class Estimate:
    """Per class: the lift and its interval ([C] each), and the images (pairs) behind it."""

    lift: Tensor
    low: Tensor
    high: Tensor
    images: int


def scene_lifts(
    z: Mapping[str, Tensor], *, confidence: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> dict[str, Estimate]:
    """Each scene's lift over the mean scene, from centred logits z[scene] = [n_scene, C].
    Scenes without images get NaN lifts and take no part in the baseline."""
    used = {name: values for name, values in z.items() if values.shape[0] > 0}
    if not used:
        return {name: _nan_estimate(values.shape[1]) for name, values in z.items()}
    gen = torch.Generator().manual_seed(seed)
    means = torch.stack([v.mean(0) for v in used.values()])  # [S, C]
    boot = torch.stack([_resampled_means(v, resamples, gen) for v in used.values()], 1)  # [R,S,C]
    lifts = means - means.mean(0)
    boot_lifts = boot - boot.mean(1, keepdim=True)
    low, high = _interval(boot_lifts, confidence)
    out = {}
    for name, values in z.items():
        if name in used:
            s = list(used).index(name)
            out[name] = Estimate(lifts[s], low[s], high[s], values.shape[0])
        else:
            out[name] = _nan_estimate(values.shape[1])
    return out


def paired_lift(
    differences: Tensor,
    *,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
    classes: int | None = None,
) -> Estimate:
    """The mean of paired differences [n, C] (with - without, same seed) and its interval."""
    if differences.shape[0] == 0:
        return _nan_estimate(classes if classes is not None else differences.shape[1])
    gen = torch.Generator().manual_seed(seed)
    boot = _resampled_means(differences, resamples, gen)  # [R, C]
    low, high = _interval(boot, confidence)
    return Estimate(differences.mean(0), low, high, differences.shape[0])


def _resampled_means(values: Tensor, resamples: int, gen: torch.Generator) -> Tensor:
    index = torch.randint(values.shape[0], (resamples, values.shape[0]), generator=gen)
    return values[index].mean(1)


def _interval(boot: Tensor, confidence: float) -> tuple[Tensor, Tensor]:
    tail = (1.0 - confidence) / 2
    q = torch.tensor([tail, 1.0 - tail], dtype=boot.dtype)
    low, high = torch.quantile(boot, q, dim=0)
    return low, high


def _nan_estimate(classes: int) -> Estimate:
    nan = torch.full((classes,), math.nan, dtype=torch.float64)
    return Estimate(nan, nan, nan, 0)


# ---------------------------------------------------------------------------------------------
# From rendered images (the catalog's shortcut_images rows) to lift rows
# ---------------------------------------------------------------------------------------------


def lift_rows(
    images: Sequence[Mapping],
    attributes: Sequence[Attribute],
    num_classes: int,
    rule: FindingRule = FindingRule(),
) -> list[dict]:
    """One row per (class, attribute, method) from image records.

    An image record: variant ("object_free" | "with_object"), scene, overlay (None for the bare
    scene), class_index (with_object: whose object), seed, status ("kept", or why it was
    dropped: "object", "no attribute", "error"), logits ([C] floats; None unless rendered).
    Object-free rows cover every class; with-object rows only the classes rendered with their
    object, and say how much the attribute adds beside it."""
    rows = _method_rows(images, attributes, num_classes, rule, "object_free", None)
    with_object = sorted({r["class_index"] for r in images if r["variant"] == "with_object"})
    for c in with_object:
        rows += _method_rows(images, attributes, num_classes, rule, "with_object", c)
    return rows


def _method_rows(images, attributes, num_classes, rule, variant, class_index) -> list[dict]:
    mine = [
        r for r in images if r["variant"] == variant and (
            class_index is None or r["class_index"] == class_index
        )
    ]  # fmt: skip
    scenes = [a for a in attributes if a.kind == "scene"]
    overlays = [a for a in attributes if a.kind == "overlay"]
    kept = {
        (r["scene"], r["overlay"], int(r["seed"])): torch.tensor(r["logits"], dtype=torch.float64)
        for r in mine
        if r["status"] == KEPT
    }
    z = {key: centred(v[None])[0] for key, v in kept.items()}
    estimates: dict[str, Estimate] = {}
    by_scene = {
        s.name: _stack([v for (scene, ov, _), v in z.items() if scene == s.name and ov is None],
                       num_classes)
        for s in scenes
    }  # fmt: skip
    estimates.update(scene_lifts(by_scene, confidence=rule.confidence))
    for o in overlays:
        pairs = [
            z[(scene, o.name, seed)] - z[(scene, None, seed)]
            for (scene, ov, seed) in z
            if ov == o.name and (scene, None, seed) in z
        ]
        estimates[o.name] = paired_lift(
            _stack(pairs, num_classes), confidence=rule.confidence, classes=num_classes
        )
    classes = range(num_classes) if class_index is None else [class_index]
    rows = []
    for a in attributes:
        est = estimates[a.name]
        counts = _drop_counts(mine, a)
        for c in classes:
            lift, low, high = (float(t[c]) for t in (est.lift, est.low, est.high))
            rows.append(
                {
                    "class_index": c,
                    "attribute": a.name,
                    "kind": a.kind,
                    "method": variant,
                    "lift": _finite(lift),
                    "low": _finite(low),
                    "high": _finite(high),
                    "images": est.images,
                    **counts,
                    "finding": rule.finds(lift, low, est.images),
                    "note": _note(a, est.images, counts, rule),
                }
            )
    return rows


def _stack(values: list[Tensor], classes: int) -> Tensor:
    return torch.stack(values) if values else torch.zeros((0, classes), dtype=torch.float64)


def _drop_counts(images: Sequence[Mapping], attribute: Attribute) -> dict[str, int]:
    """How many of the attribute's images were rendered, and dropped for each reason."""
    if attribute.kind == "scene":
        own = [r for r in images if r["scene"] == attribute.name and r["overlay"] is None]
    else:
        own = [r for r in images if r["overlay"] == attribute.name]
    return {
        "rendered": len(own),
        "dropped_object": sum(r["status"] in ("object", "no object") for r in own),
        "dropped_attribute": sum(r["status"] == "no attribute" for r in own),
        "failed": sum(r["status"] == "error" for r in own),
    }


def _note(attribute: Attribute, images: int, counts: Mapping[str, int], rule: FindingRule) -> str:
    if images >= rule.min_images:
        return ""
    what = "pairs" if attribute.kind == "overlay" else "images"
    reasons = []
    if counts["dropped_object"]:
        reasons.append(f"{counts['dropped_object']} failed the object check")
    if counts["dropped_attribute"]:
        reasons.append(f"in {counts['dropped_attribute']} the segmenter did not find it")
    if counts["failed"]:
        reasons.append(f"{counts['failed']} failed")
    why = "; ".join(reasons) or "none rendered yet"
    return (
        f"{images} usable {what} of {counts['rendered']} rendered ({why}); a finding needs "
        f"{rule.min_images}. Rephrase {attribute.name!r} or render more seeds."
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
