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

# Factories a classifier directory may name itself: model constructors this project owns or
# vouches for, named exactly. Any other factory must come from the spec (what the user wrote),
# never from a file inside a checkpoint, which anyone who made the checkpoint controls. A whole
# package is never trusted: `dxray` holds functions that write files, and timm has
# `load_checkpoint`, which unpickles.
TRUSTED_MODULES = ("dxray.toyworld.nets", "dxray.models.resnet")  # their public callables
TRUSTED_FACTORIES = (*TRUSTED_MODULES, "torchvision.models:<a model builder>",
                     "timm:create_model")  # fmt: skip


def trusted_factory(factory: str) -> bool:
    """Whether a classifier directory may name `factory` on its own: a public callable of
    dxray's toy nets or ResNets, a model of `torchvision.models.list_models()`, or
    `timm:create_model`."""
    module, _, name = str(factory).partition(":")
    if not name.isidentifier() or name.startswith("_"):
        return False
    if module in TRUSTED_MODULES:
        return True
    if module == "timm":
        return name == "create_model"
    if module == "torchvision.models":
        try:
            from torchvision.models import list_models
        except ImportError:  # not importable here: its namespace holds builders and enums only
            return name.islower()
        return name in list_models() or name == "get_model"
    return False


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
