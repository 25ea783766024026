"""A pretrained timm classifier, "timm:<name>" (the optional timm extra).

Its preprocessing comes from timm's data config; its class names from timm's ImageNet info when
the head is an ImageNet one (otherwise class_0, class_1, ...).
"""

from __future__ import annotations

import difflib

from torch import nn

from dxray.models.classifier import ClassifierLoadError
from dxray.text import first_line


def load_timm(name: str) -> tuple[nn.Module, dict, list | None]:
    """timm's model `name` with its pretrained weights."""
    try:
        import timm
        from timm.data import resolve_data_config
    except ImportError:
        raise ClassifierLoadError(
            f"'timm:{name}' needs the optional timm extra: pip install 'dxray[timm]'"
        ) from None
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise ClassifierLoadError(
            f"timm has no model {name!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
        )
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as err:  # hub and download failures come in many types
        raise ClassifierLoadError(
            f"could not get the pretrained weights of timm:{name}: {first_line(err)}. Offline? "
            "Fetch them on a connected machine (they land in the Hugging Face cache) and copy "
            "that cache here."
        ) from err
    config = resolve_data_config({}, model=model)
    known = {
        "input_size": tuple(config["input_size"][-2:]),
        "mean": tuple(config["mean"]),
        "std": tuple(config["std"]),
    }
    class_names = None
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(model)
        if subset:
            class_names = list(ImageNetInfo(subset).label_descriptions())
    except (ImportError, OSError, ValueError, KeyError):
        pass  # older timm, or not an ImageNet head: fall back to class_0, class_1, ...
    return model, known, class_names
