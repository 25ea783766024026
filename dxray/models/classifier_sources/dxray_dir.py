"""A dxray classifier directory: classifier.json + model.safetensors.

`dxray.models.classifier_io.save_classifier` writes one (the toy zoo's format); the json names
the factory that builds the model, its kwargs, the preprocessing and the class names.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from dxray.models.classifier import PREPROCESSING_KEYS, ClassifierLoadError
from dxray.models.classifier_sources.factories import (
    build_from_factory,
    check_folder_kwargs,
    trusted_factory,
)
from dxray.models.classifier_sources.weights import load_state

FORMAT = "dxray-classifier/1"
CONFIG_FILE = "classifier.json"
WEIGHTS_FILE = "model.safetensors"


def load_dxray_dir(
    path: Path, factory: str | None = None, factory_kwargs: dict | None = None
) -> tuple[nn.Module, dict, list | None]:
    """A dxray classifier directory. `factory` (from the spec) overrides the directory's own,
    which is used only if it is trusted (`trusted_factory`)."""
    config_file = path / CONFIG_FILE
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise ClassifierLoadError(f"cannot read '{config_file}': {err}") from None
    if config.get("format") != FORMAT:
        raise ClassifierLoadError(
            f"'{config_file}' has format {config.get('format')!r}; this dxray reads {FORMAT!r}"
        )
    missing = [key for key in ("factory", *PREPROCESSING_KEYS, "class_names") if key not in config]
    if missing:
        raise ClassifierLoadError(
            f"'{config_file}' lacks {missing}; rewrite it with save_classifier"
        )
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise ClassifierLoadError(f"classifier directory '{path}' lacks its weights {WEIGHTS_FILE}")
    if factory is None and not trusted_factory(config["factory"]):
        raise ClassifierLoadError(
            f"'{config_file}' names the factory {config['factory']!r}: a checkpoint folder may "
            "not choose the code that builds it (trusted: dxray's own models, torchvision and "
            "timm constructors). If you trust that code, name it in the spec yourself: "
            f"classifier: {{source: {{source: {path}, factory: {config['factory']}}}}}"
        )
    kwargs = factory_kwargs if factory_kwargs is not None else config.get("factory_kwargs") or {}
    if factory_kwargs is None:  # the folder's own: data that may not turn into a file load
        if not isinstance(kwargs, dict):
            raise ClassifierLoadError(f"'{config_file}': factory_kwargs must be a mapping")
        check_folder_kwargs(factory or config["factory"], kwargs)
    model = build_from_factory(factory or config["factory"], kwargs)
    load_state(model, weights, pickled=False)
    known = {key: config[key] for key in PREPROCESSING_KEYS}
    if config.get("outputs") is not None:
        known["outputs"] = config["outputs"]
    return model, known, list(config["class_names"])
