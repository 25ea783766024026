"""Loading and saving classifiers: `load_classifier` and `save_classifier`.

`load_classifier` understands these sources (a string, or a dict {"source": ..., options}):

- a dxray classifier directory: classifier.json + model.safetensors, written by `save_classifier`
  (the toy zoo's format);
- a Hugging Face image-classification model: a `save_pretrained` directory (config.json), a hub
  id "org/name" or "hf:<hub id or dir>";
- "torchvision:<name>" and "timm:<name>", pretrained, with the optional extras installed;
- a TorchScript archive (.pt, .pth, .ts, .torchscript);
- a state dict (.safetensors) plus the python factory that builds the model
  ({"source": "w.safetensors", "factory": "pkg.module:build", "factory_kwargs": {...}}).

Pickled checkpoints are refused: unpickling can run arbitrary code. Each kind of source has its
module in `dxray.models.classifier_sources`; this module reads the spec, picks the source's
module, applies the spec's overrides and returns a frozen `Classifier`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from dxray.models.classifier import (
    DEFAULT_INPUT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREPROCESSING_KEYS,
    Classifier,
    ClassifierLoadError,
    Preprocessing,
    output_logits,
)
from dxray.models.classifier_sources.dxray_dir import (
    CONFIG_FILE,
    FORMAT,
    WEIGHTS_FILE,
    load_dxray_dir,
)
from dxray.models.classifier_sources.factories import import_factory
from dxray.models.classifier_sources.hf import load_hf
from dxray.models.classifier_sources.timm_models import load_timm
from dxray.models.classifier_sources.torchscript import (
    TORCHSCRIPT_SUFFIXES,
    is_torchscript,
    load_torchscript,
)
from dxray.models.classifier_sources.torchvision_models import load_torchvision
from dxray.models.classifier_sources.weights import PICKLE_SUFFIXES, load_weights
from dxray.models.sources import is_hub_id
from dxray.text import first_line

SPEC_KEYS = ("source", "factory", "factory_kwargs", "input_size", "mean", "std", "class_names",
             "outputs")  # fmt: skip


def save_classifier(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    factory: str,
    factory_kwargs: dict,
    preprocessing: Preprocessing,
    class_names: list[str],
    outputs: tuple[int, int] | None = None,
) -> Path:
    """Write `model` as a dxray classifier directory (classifier.json + model.safetensors);
    `load_classifier(path)` rebuilds it with `factory(**factory_kwargs)` and loads the weights.
    `outputs`: the model's outputs [start, stop) that are the classes
    (`Classifier.output_slice`)."""
    from safetensors.torch import save_model

    # Fail now rather than when someone tries to load the directory.
    import_factory(factory)
    config = {
        "format": FORMAT,
        "factory": factory,
        "factory_kwargs": factory_kwargs,
        "input_size": list(preprocessing.input_size),
        "mean": list(preprocessing.mean),
        "std": list(preprocessing.std),
        "class_names": list(class_names),
    }
    if outputs is not None:
        config["outputs"] = [int(outputs[0]), int(outputs[1])]
    try:
        text = json.dumps(config, indent=2)
    except TypeError as err:
        raise ValueError(f"factory_kwargs must be JSON-serialisable: {err}") from None
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path / WEIGHTS_FILE), force_contiguous=True)
    (path / CONFIG_FILE).write_text(text + "\n")
    return path


def load_classifier(
    spec: str | os.PathLike | dict,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Classifier:
    """Load a classifier, frozen and in eval mode on `device`. See the module docstring for the
    sources; a dict spec's "input_size", "mean", "std" and "class_names" override the source's.

    Examples: "zoo/classifier", "hf:microsoft/resnet-50", "torchvision:resnet50",
    {"source": "model.ts", "input_size": [64, 64], "mean": [0.5] * 3, "std": [0.5] * 3}.
    """
    # 1. Split the spec into its source and options
    source, options = _split_spec(spec)

    # 2. Build the model; learn its preprocessing and class names where the source says them
    model, known, class_names = _build(source, options, device, dtype)

    # 3. Let the spec override, fall back to ImageNet's preprocessing where nothing is known
    known.update({key: options[key] for key in PREPROCESSING_KEYS if key in options})
    class_names = options.get("class_names", class_names)
    outputs = _check_outputs(options.get("outputs", known.pop("outputs", None)), source)
    if class_names is not None and (
        isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names)
    ):
        raise ClassifierLoadError(f"class_names must be a list of strings, got {class_names!r}")
    missing = [key for key in PREPROCESSING_KEYS if known.get(key) is None]
    if missing:
        height, width = DEFAULT_INPUT_SIZE
        assumed = {"input_size": f"{height}x{width}", "mean": "ImageNet's", "std": "ImageNet's"}
        warnings.warn(
            f"no preprocessing known for classifier '{source}': assuming "
            f"{', '.join(f'{assumed[k]} {k}' for k in missing)}. Give 'input_size', 'mean' and "
            "'std' in a dict spec if the model expects otherwise.",
            stacklevel=2,
        )
    defaults = {"input_size": DEFAULT_INPUT_SIZE, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    try:
        preprocessing = Preprocessing(**{k: known.get(k) or defaults[k] for k in defaults})
    except (TypeError, ValueError) as err:
        raise ClassifierLoadError(f"bad preprocessing for classifier '{source}': {err}") from None

    # 4. Freeze and place. ScriptModules refuse requires_grad_(), so freeze parameter by parameter
    model = model.to(device=device, dtype=dtype).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    classifier = Classifier(model, preprocessing, class_names, source=source, outputs=outputs)
    classifier.eval()

    # 5. One dry forward: does the model take this input size, do the class names fit?
    try:
        num_classes = classifier.num_classes
    except (RuntimeError, ValueError, TypeError) as err:
        raise ClassifierLoadError(
            f"classifier '{source}' failed on a [1, 3, {preprocessing.input_size[0]}, "
            f"{preprocessing.input_size[1]}] input: {first_line(err)}. Check its input_size."
        ) from err
    if outputs is not None and num_classes != outputs[1] - outputs[0]:
        raise ClassifierLoadError(
            f"classifier '{source}': outputs {list(outputs)} is not within its "
            f"{_logits_width(classifier)} outputs"
        )
    if class_names is not None and len(class_names) != num_classes:
        raise ClassifierLoadError(
            f"classifier '{source}' has {num_classes} outputs but {len(class_names)} class names"
        )
    return classifier


def _check_outputs(outputs, source: str) -> tuple[int, int] | None:
    if outputs is None:
        return None
    ok = (
        isinstance(outputs, list | tuple)
        and len(outputs) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in outputs)
        and 0 <= outputs[0] < outputs[1]
    )
    if not ok:
        raise ClassifierLoadError(
            f"classifier '{source}': outputs must be [start, stop) with 0 <= start < stop, "
            f"e.g. [9, 18] for FairFace's age groups; got {outputs!r}"
        )
    return int(outputs[0]), int(outputs[1])


def _logits_width(classifier: Classifier) -> int:
    height, width = classifier.preprocessing.input_size
    gray = torch.full((1, 3, height, width), 0.5, device=classifier.device, dtype=classifier.dtype)
    with torch.no_grad():
        x = classifier.preprocessing(gray)
        return int(output_logits(classifier.model(x)).shape[-1])


def _split_spec(spec) -> tuple[str, dict]:
    if isinstance(spec, str | os.PathLike):
        return str(spec), {}
    if not isinstance(spec, Mapping):
        raise ClassifierLoadError(
            f"a classifier spec is a path/name or a dict, got {type(spec).__name__}"
        )
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ClassifierLoadError(
            f"unknown key(s) {unknown} in classifier spec; known keys: {', '.join(SPEC_KEYS)}"
        )
    if "source" not in spec:
        raise ClassifierLoadError(
            'a classifier spec dict needs "source": a path, a hub id or "torchvision:<name>"'
        )
    options = {key: value for key, value in spec.items() if key != "source"}
    return str(spec["source"]), options


def _build(source: str, options: dict, device, dtype) -> tuple[nn.Module, dict, list | None]:
    """The model, whatever preprocessing the source states, and its class names (or None)."""
    kind, where = _source_kind(source)
    if "factory" in options and kind not in ("safetensors", "pickle", "dxray"):
        raise ClassifierLoadError(
            f"'factory' applies only to a file of weights (.safetensors) or a dxray classifier "
            f"directory, not to '{source}'"
        )
    if "factory_kwargs" in options and "factory" not in options:
        raise ClassifierLoadError("'factory_kwargs' was given without a 'factory'")
    if kind == "hf":
        return load_hf(where, dtype)
    if kind == "torchvision":
        return load_torchvision(where)
    if kind == "timm":
        return load_timm(where)
    if kind == "dxray":
        return load_dxray_dir(Path(where), options.get("factory"), options.get("factory_kwargs"))
    if kind == "torchscript":
        return load_torchscript(Path(where), device), {}, None
    if kind == "pickle" and "factory" not in options:
        raise ClassifierLoadError(
            f"refusing to unpickle '{source}': a pickled checkpoint can run arbitrary code when "
            "loaded. Convert it where you trust it, either to safetensors "
            "(safetensors.torch.save_file(model.state_dict(), 'model.safetensors'), then load "
            '{"source": "model.safetensors", "factory": "pkg.module:build"}) or to TorchScript '
            "(torch.jit.save(torch.jit.script(model), 'model.pt'))."
        )
    return load_weights(Path(where), options, pickled=kind == "pickle")


def _source_kind(source: str) -> tuple[str, str]:
    """What a source string names: (kind, the path, hub id or model name to load)."""
    scheme, _, name = source.partition(":")
    if scheme in ("hf", "torchvision", "timm") and name:
        return scheme, name
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return "dxray", str(path)
        if (path / "config.json").is_file():
            return "hf", str(path)
        raise ClassifierLoadError(
            f"directory '{source}' holds neither {CONFIG_FILE} (a dxray classifier, see "
            "save_classifier) nor config.json (a Hugging Face model saved with save_pretrained)"
        )
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".safetensors":
            return "safetensors", str(path)
        if suffix in TORCHSCRIPT_SUFFIXES and is_torchscript(path):
            return "torchscript", str(path)
        if suffix in PICKLE_SUFFIXES:
            return "pickle", str(path)
        raise ClassifierLoadError(
            f"don't know how to load '{source}': expected a directory, a .safetensors file or a "
            f"TorchScript archive ({', '.join(TORCHSCRIPT_SUFFIXES)})"
        )
    if is_hub_id(source):
        return "hf", source
    raise ClassifierLoadError(
        f"classifier '{source}' does not exist. Give a dxray classifier directory, a Hugging Face "
        "model directory or hub id, 'torchvision:<name>', 'timm:<name>', a TorchScript file or "
        "a .safetensors file with its factory."
    )
