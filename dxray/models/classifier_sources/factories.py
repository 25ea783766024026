"""Python factories that build a classifier's model by name ("package.module:callable").

A dxray classifier directory or a file of weights holds no code: a factory builds the model and
the weights are loaded into it. A directory may name its own factory only if it is trusted
(`trusted_factory`); any other factory must come from the spec the user wrote.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from torch import nn

from dxray.models.classifier import ClassifierLoadError

# Factories a classifier directory may name itself: code this project owns or vouches for.
# Any other factory must come from the spec (what the user wrote), never from a file inside a
# checkpoint, which anyone who made the checkpoint controls.
TRUSTED_FACTORIES = ("dxray", "torchvision.models", "timm")  # packages, with their modules


def trusted_factory(factory: str) -> bool:
    """Whether a classifier directory may name `factory` on its own (`TRUSTED_FACTORIES`)."""
    module = str(factory).partition(":")[0]
    return any(module == t or module.startswith(t + ".") for t in TRUSTED_FACTORIES)


def build_from_factory(factory: str, kwargs: dict) -> nn.Module:
    """`factory(**kwargs)`, checked to be a torch module; any failure says which factory."""
    fn = import_factory(factory)
    if not isinstance(kwargs, Mapping):
        raise ClassifierLoadError(f"factory_kwargs must be a dict, got {type(kwargs).__name__}")
    try:
        model = fn(**kwargs)
    except Exception as err:  # user code: anything can go wrong, say where it happened
        raise ClassifierLoadError(
            f"factory {factory!r} failed with kwargs {dict(kwargs)}: {type(err).__name__}: {err}"
        ) from err
    if not isinstance(model, nn.Module):
        raise ClassifierLoadError(
            f"factory {factory!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def import_factory(factory: str):
    """The callable that "package.module:callable" names (attributes may be dotted)."""
    module_name, sep, attr = str(factory).partition(":")
    if not (sep and module_name and attr):
        raise ClassifierLoadError(
            f"factory {factory!r} must read 'package.module:callable', e.g. 'my_pkg.models:build'"
        )
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ClassifierLoadError(
            f"cannot import {module_name!r} for factory {factory!r} ({err}); install the package "
            "that defines it or put it on PYTHONPATH"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ClassifierLoadError(f"factory {factory!r}: {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ClassifierLoadError(f"factory {factory!r} is not callable")
    return obj
