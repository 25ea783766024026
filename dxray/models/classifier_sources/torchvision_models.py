"""A pretrained torchvision classifier, "torchvision:<name>" (the optional torchvision extra).

Its preprocessing and class names come from the weights' metadata.
"""

from __future__ import annotations

import difflib

from torch import nn

from dxray.models.classifier import (
    DEFAULT_INPUT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassifierLoadError,
)
from dxray.text import first_line


def load_torchvision(name: str) -> tuple[nn.Module, dict, list | None]:
    """torchvision's model `name` with its default pretrained weights."""
    try:
        import torchvision.models as tvm
    except ImportError:
        raise ClassifierLoadError(
            f"'torchvision:{name}' needs the optional torchvision extra: "
            "pip install 'dxray[torchvision]'"
        ) from None
    try:
        weights = tvm.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        close = difflib.get_close_matches(name, tvm.list_models(module=tvm), n=5)
        raise ClassifierLoadError(
            f"torchvision has no classification model {name!r}"
            + (f"; did you mean {', '.join(close)}?" if close else "")
        ) from None
    try:
        model = tvm.get_model(name, weights=weights)
    except Exception as err:  # download failures arrive as URLError, RuntimeError, ...
        raise ClassifierLoadError(
            f"could not get the pretrained weights of torchvision:{name}: {first_line(err)}. "
            "Offline? Fetch them on a connected machine (they land in ~/.cache/torch/hub) and "
            "copy that cache here."
        ) from err
    transforms = weights.transforms()
    crop = list(getattr(transforms, "crop_size", None) or DEFAULT_INPUT_SIZE)
    known = {
        "input_size": (crop[0], crop[-1]),
        "mean": tuple(getattr(transforms, "mean", IMAGENET_MEAN)),
        "std": tuple(getattr(transforms, "std", IMAGENET_STD)),
    }
    return model, known, list(weights.meta.get("categories") or []) or None
