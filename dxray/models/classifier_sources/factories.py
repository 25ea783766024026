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


# Keyword arguments a folder-named factory may be given. They come from the checkpoint's
# classifier.json, which whoever made the checkpoint wrote, so they may only shape the
# network, never make the factory load a file or download: timm's create_model takes
# `checkpoint_path` (read with pickle) and `pretrained`/`pretrained_cfg` (downloads, files);
# torchvision's builders take `weights`. dxray's own constructors take shapes only.
SHAPE_KWARGS = {
    "timm:create_model": frozenset(
        {"model_name", "num_classes", "in_chans", "global_pool", "drop_rate",
         "drop_path_rate", "img_size", "features_only", "out_indices"}
    ),
    "torchvision.models": frozenset(
        {"num_classes", "aux_logits", "transform_input", "init_weights", "dropout",
         "width_per_group", "groups", "stochastic_depth_prob"}
    ),
}  # fmt: skip
_PLAIN = (str, int, float, bool, type(None))


def check_folder_kwargs(factory: str, kwargs: Mapping) -> None:
    """Refuse `kwargs` that a checkpoint folder may not pass to its trusted `factory`: names
    outside the factory's shape arguments, values that are not plain numbers, strings or flat
    lists of them, and timm model names that point at a hub or a file."""
    module, _, _ = str(factory).partition(":")
    allowed = SHAPE_KWARGS.get(factory, SHAPE_KWARGS.get(module))
    for key, value in kwargs.items():
        if allowed is not None and key not in allowed:
            raise ClassifierLoadError(
                f"factory_kwargs {key!r} from a checkpoint folder is refused for {factory!r}: a "
                f"folder may pass only {', '.join(sorted(allowed))} (never what loads a file "
                "or downloads); put it in the spec if you mean it"
            )
        flat = value if isinstance(value, list | tuple) else [value]
        if not all(isinstance(v, _PLAIN) for v in flat):
            raise ClassifierLoadError(
                f"factory_kwargs {key!r} from a checkpoint folder must be a number, a string or "
                f"a flat list of them, got {type(value).__name__}"
            )
    name = kwargs.get("model_name")
    if factory == "timm:create_model" and isinstance(name, str) and ":" in name:
        raise ClassifierLoadError(
            f"model_name {name!r} from a checkpoint folder points at a hub or a file "
            "(timm's 'hf-hub:' / 'local-dir:'): name the architecture only"
        )


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
