"""A file of weights (a state dict) plus the factory that builds the model they fit.

Safetensors files load as they are. A pickled state dict (.pt, .pth, ...) loads only with a
factory, and then with torch's weights-only unpickler, which builds tensors and no code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from dxray.models.classifier import ClassifierLoadError
from dxray.models.classifier_sources.factories import build_from_factory
from dxray.text import few, first_lines

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


def load_weights(path: Path, options: dict, *, pickled: bool) -> tuple[nn.Module, dict, None]:
    """The spec's factory's model with the weights in `path`; the file states no preprocessing."""
    if "factory" not in options:
        raise ClassifierLoadError(
            f"'{path}' holds only weights: also give the python factory that builds the model, "
            f'e.g. {{"source": "{path}", "factory": "my_package.models:build", '
            '"factory_kwargs": {...}, "input_size": [224, 224], "mean": [...], "std": [...]}'
        )
    model = build_from_factory(options["factory"], options.get("factory_kwargs") or {})
    load_state(model, path, pickled=pickled)
    return model, {}, None


def load_state(model: nn.Module, path: Path, *, pickled: bool) -> None:
    """Load a state dict file into `model`, requiring every key to match."""
    try:
        if pickled:
            # weights_only: a restricted unpickler that builds tensors and containers, no code.
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not (
                isinstance(state, Mapping) and all(isinstance(v, Tensor) for v in state.values())
            ):
                raise ClassifierLoadError(
                    f"'{path}' is not a plain state dict (name -> tensor); save "
                    "model.state_dict() to safetensors instead"
                )
            missing, unexpected = model.load_state_dict(state, strict=False)
        else:
            from safetensors.torch import load_model

            # load_model, unlike load_state_dict, accepts files saved without tied duplicates.
            missing, unexpected = load_model(model, str(path), strict=False)
    except ClassifierLoadError:
        raise
    except (RuntimeError, OSError, ValueError) as err:
        raise ClassifierLoadError(
            f"cannot load the weights '{path}' into {type(model).__name__}: {first_lines(err, 4)}"
        ) from err
    if missing or unexpected:
        raise ClassifierLoadError(
            f"the weights '{path}' do not fit {type(model).__name__} (check factory_kwargs): "
            f"missing {few(sorted(missing))}, unexpected {few(sorted(unexpected))}"
        )
