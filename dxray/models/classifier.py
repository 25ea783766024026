"""Image classifiers: any torch classifier behind the one interface the explain engine uses.

`load_classifier` understands these sources (a string, or a dict {"source": ..., options}):

- a dxray classifier directory: classifier.json + model.safetensors, written by `save_classifier`
  (the toy zoo's format);
- a Hugging Face image-classification model: a `save_pretrained` directory (config.json), a hub
  id "org/name" or "hf:<hub id or dir>";
- "torchvision:<name>" and "timm:<name>", pretrained, with the optional extras installed;
- a TorchScript archive (.pt, .pth, .ts, .torchscript);
- a state dict (.safetensors) plus the python factory that builds the model
  ({"source": "w.safetensors", "factory": "pkg.module:build", "factory_kwargs": {...}}).

Pickled checkpoints are refused: unpickling can run arbitrary code.

A classifier takes images [B, 3, H, W] with values in [0, 1]; its `Preprocessing` resizes and
normalises them differentiably, so gradients reach whatever made the images. A hidden unit is
written "layer.path:channel", the layer path being a name from `model.named_modules()`; its
value is the spatial mean of that channel of the layer's output.
"""

from __future__ import annotations

import difflib
import importlib
import itertools
import json
import operator
import os
import re
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dxray.models.outputs import ClassifierOutput
from dxray.models.sources import load_part
from dxray.text import few, first_line, first_lines

FORMAT = "dxray-classifier/1"
CONFIG_FILE = "classifier.json"
WEIGHTS_FILE = "model.safetensors"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = (224, 224)

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
SPEC_KEYS = ("source", "factory", "factory_kwargs", "input_size", "mean", "std", "class_names",
             "outputs")  # fmt: skip
PREPROCESSING_KEYS = ("input_size", "mean", "std")


class ClassifierLoadError(RuntimeError):
    """A classifier could not be loaded; the message says what to do."""


class UnknownLayerError(KeyError, ValueError):
    """A layer the model does not have (or cannot be hooked); the message lists valid layers."""

    def __str__(self) -> str:
        # KeyError would print the message as a quoted repr.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Preprocessing:
    """How images in [0, 1] become the model's input: resize to `input_size`, then normalise."""

    input_size: tuple[int, int]  # (H, W)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self):
        size = self.input_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(f"input_size must be (height, width) in pixels, got {self.input_size}")
        mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need one value per RGB channel, got {mean} and {std}")
        if min(std) <= 0:
            raise ValueError(f"std must be positive, got {std}")
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def __call__(self, images: Tensor) -> Tensor:
        """Images [B, 3, H, W] in [0, 1] -> the model's input, differentiably."""
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"expected float images of shape [B, 3, H, W] in [0, 1], got "
                f"{images.dtype} {list(images.shape)}"
            )
        if tuple(images.shape[-2:]) != self.input_size:
            images = F.interpolate(
                images, size=self.input_size, mode="bilinear", align_corners=False, antialias=False
            )
        mean = images.new_tensor(self.mean).view(1, 3, 1, 1)
        std = images.new_tensor(self.std).view(1, 3, 1, 1)
        return (images - mean) / std


@dataclass
class _Probe:
    """What one dry forward at the input size tells: the logit width and each layer's width."""

    num_classes: int
    channels: dict[str, int | str]  # layer -> channel count, or why the layer has no units


class Classifier(nn.Module):
    """A frozen image classifier on images in [0, 1]: logits, and hidden units by layer name."""

    def __init__(
        self,
        model: nn.Module,
        preprocessing: Preprocessing,
        class_names: list[str] | None = None,
        source: str = "",
        outputs: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.model = model
        self.preprocessing = preprocessing
        self.source = source
        # The model's outputs [start, stop) that are this classifier's classes: one head of a
        # multi-head model (FairFace's 18 outputs: race 0-6, gender 7-8, age 9-17). The class
        # scores, centring and probabilities are over these alone.
        self.output_slice = None if outputs is None else (int(outputs[0]), int(outputs[1]))
        self._class_names = list(class_names) if class_names is not None else None
        self._probe_cache: _Probe | None = None

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            self._class_names = [f"class_{i}" for i in range(self.num_classes)]
        return self._class_names

    @class_names.setter
    def class_names(self, names: list[str]) -> None:
        self._class_names = list(names)

    @property
    def num_classes(self) -> int:
        return self._probe().num_classes

    @property
    def device(self) -> torch.device:
        first = next(itertools.chain(self.model.parameters(), self.model.buffers()), None)
        return first.device if first is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for param in self.model.parameters():
            if param.is_floating_point():
                return param.dtype
        return torch.float32

    def forward(self, images: Tensor) -> Tensor:
        """Logits [B, num_classes] for images [B, 3, H, W] with values in [0, 1]."""
        x = self.preprocessing(images.to(device=self.device, dtype=self.dtype))
        logits = _logits(self.model(x))
        if self.output_slice is not None:
            logits = logits[:, self.output_slice[0] : self.output_slice[1]]
        return logits

    def outputs(self, images: Tensor, layers: Iterable[str] = ()) -> ClassifierOutput:
        """One forward: logits, and for each named layer the spatial mean of its output per
        channel, [B, channels]. Gradients flow through both. For a layer that ends in a ReLU,
        also the means of the ReLU's input (`pre_units`, see `dxray.explain.objective.Unit`)."""
        names = list(dict.fromkeys(layers))
        modules = {name: self._layer(name) for name in names}
        units: dict[str, Tensor] = {}
        pre_units: dict[str, Tensor] = {}

        def record(name: str, into: dict[str, Tensor], before: bool = False):
            def hook(module, args, output):
                # A module called twice in one forward (weight sharing) reports its first call.
                if name not in into:
                    into[name] = _channel_means(args[0] if before else output, name)

            return hook

        handles = [
            module.register_forward_hook(record(name, units)) for name, module in modules.items()
        ]
        for name, module in modules.items():
            rectifier = _final_rectifier(module)
            if rectifier is not None:
                handles.append(rectifier.register_forward_hook(record(name, pre_units, True)))
        try:
            logits = self(images)
        finally:
            for handle in handles:
                handle.remove()
        silent = [name for name in names if name not in units]
        if silent:
            raise ValueError(
                f"layer(s) {silent} did not run in the forward pass: they have no units"
            )
        return ClassifierOutput(logits=logits, units=units, pre_units=pre_units)

    def unit_layers(self) -> list[str]:
        """Names of the layers whose channels can be addressed as units."""
        return list(self._hookable())

    def unit_channels(self, layer: str) -> int:
        """Number of channels (units) of `layer`'s output."""
        self._layer(layer)
        found = self._probe().channels.get(layer)
        if found is None:
            raise ValueError(f"layer {layer!r} does not run in the forward pass: it has no units")
        if isinstance(found, str):
            raise ValueError(found)
        return found

    def check_unit(self, layer: str, channel: int) -> None:
        """Raise UnknownLayerError or ValueError unless `layer:channel` is a unit of this model."""
        channels = self.unit_channels(layer)
        if isinstance(channel, bool) or not isinstance(channel, int):
            raise ValueError(f"channel must be an integer, got {channel!r}")
        if not 0 <= channel < channels:
            raise ValueError(
                f"channel {channel} out of range: layer {layer!r} has {channels} channels "
                f"(0..{channels - 1})"
            )

    def class_index(self, key: int | str) -> int:
        """The index of a class given by index or by name ("3" counts as an index unless a class
        is named "3")."""
        n = self.num_classes
        if isinstance(key, str):
            names = self.class_names
            if key in names:
                return names.index(key)
            if not key.strip().isdigit():
                by_lower = {name.lower(): name for name in names}
                close = difflib.get_close_matches(key.lower(), list(by_lower), n=5, cutoff=0.6)
                hint = (
                    f" Did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""
                )
                raise ValueError(
                    f"unknown class {key!r}.{hint} Give a class name or an index in 0..{n - 1}."
                )
            key = int(key)
        if isinstance(key, bool):
            raise ValueError(f"a class is an index or a name, not {key!r}")
        index = operator.index(key)
        if not 0 <= index < n:
            raise ValueError(
                f"class index {index} out of range: the classifier has {n} classes (0..{n - 1})"
            )
        return index

    def extra_repr(self) -> str:
        p = self.preprocessing
        return f"source={self.source!r}, input_size={p.input_size}"

    def _hookable(self) -> dict[str, nn.Module]:
        # Compiled TorchScript modules reject forward hooks, so their layers have no units.
        return {
            name: module
            for name, module in self.model.named_modules()
            if name and not isinstance(module, torch.jit.ScriptModule)
        }

    def _layer(self, name: str) -> nn.Module:
        modules = self._hookable()
        if name not in modules:
            raise UnknownLayerError(self._unknown_layer_message(name, list(modules)))
        return modules[name]

    def _unknown_layer_message(self, name: str, valid: list[str]) -> str:
        what = f"classifier '{self.source}'" if self.source else type(self.model).__name__
        if not valid:
            return (
                f"unknown layer {name!r}: {what} is compiled TorchScript, whose layers cannot be "
                "hooked, so it has no hidden units. Load the eager model (a dxray classifier "
                "directory, or safetensors weights + factory) to address units."
            )
        if isinstance(dict(self.model.named_modules()).get(name), torch.jit.ScriptModule):
            return (
                f"layer {name!r} of {what} is compiled TorchScript and cannot be hooked; "
                f"pick one of its eager parents, e.g. {', '.join(valid[:5])}"
            )
        close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
        ordered = close + [v for v in valid if v not in close]
        shown = ", ".join(ordered[:30])
        if len(ordered) > 30:
            shown += f", ... ({len(ordered) - 30} more; see Classifier.unit_layers())"
        return f"unknown layer {name!r} in {what}; valid (closest first): {shown}"

    def _probe(self) -> _Probe:
        """Run one dry forward at the input size and remember what it shows."""
        if self._probe_cache is not None:
            return self._probe_cache
        channels: dict[str, int | str] = {}

        def record(name: str):
            def hook(module, args, output):
                if name in channels:
                    return
                try:
                    channels[name] = int(_channel_means(output, name).shape[1])
                except ValueError as err:
                    channels[name] = str(err)

            return hook

        modules = self._hookable()
        handles = [module.register_forward_hook(record(name)) for name, module in modules.items()]
        height, width = self.preprocessing.input_size
        gray = torch.full((1, 3, height, width), 0.5, device=self.device, dtype=self.dtype)
        try:
            with torch.no_grad():
                logits = self(gray)
        finally:
            for handle in handles:
                handle.remove()
        self._probe_cache = _Probe(num_classes=int(logits.shape[-1]), channels=channels)
        return self._probe_cache


def parse_unit(spec: str) -> tuple[str, int]:
    """Split a unit written "layer.path:channel", e.g. "layer4.2:17" -> ("layer4.2", 17)."""
    layer, sep, channel = str(spec).strip().rpartition(":")
    if not sep or not layer or not channel.isdigit():
        raise ValueError(
            f"bad unit {spec!r}: expected 'layer.path:channel' with a channel index >= 0, "
            "e.g. 'layer4.2:17'"
        )
    return layer, int(channel)


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
    _import_factory(factory)
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
        return int(_logits(classifier.model(x)).shape[-1])


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
        return _load_hf(where, dtype)
    if kind == "torchvision":
        return _load_torchvision(where)
    if kind == "timm":
        return _load_timm(where)
    if kind == "dxray":
        return _load_dxray_dir(Path(where), options.get("factory"), options.get("factory_kwargs"))
    if kind == "torchscript":
        return _load_torchscript(Path(where), device), {}, None
    if kind == "pickle" and "factory" not in options:
        raise ClassifierLoadError(
            f"refusing to unpickle '{source}': a pickled checkpoint can run arbitrary code when "
            "loaded. Convert it where you trust it, either to safetensors "
            "(safetensors.torch.save_file(model.state_dict(), 'model.safetensors'), then load "
            '{"source": "model.safetensors", "factory": "pkg.module:build"}) or to TorchScript '
            "(torch.jit.save(torch.jit.script(model), 'model.pt'))."
        )
    return _load_weights(Path(where), options, pickled=kind == "pickle")


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
        if suffix in TORCHSCRIPT_SUFFIXES and _is_torchscript(path):
            return "torchscript", str(path)
        if suffix in PICKLE_SUFFIXES:
            return "pickle", str(path)
        raise ClassifierLoadError(
            f"don't know how to load '{source}': expected a directory, a .safetensors file or a "
            f"TorchScript archive ({', '.join(TORCHSCRIPT_SUFFIXES)})"
        )
    if _is_hub_id(source):
        return "hf", source
    raise ClassifierLoadError(
        f"classifier '{source}' does not exist. Give a dxray classifier directory, a Hugging Face "
        "model directory or hub id, 'torchvision:<name>', 'timm:<name>', a TorchScript file or "
        "a .safetensors file with its factory."
    )


def _is_hub_id(source: str) -> bool:
    # "org/name" as on the Hugging Face hub; "./x", "~/x", "a/b/c" or "x.pt" are meant as paths.
    file_suffixes = (".safetensors", ".json", *TORCHSCRIPT_SUFFIXES, *PICKLE_SUFFIXES)
    return bool(re.fullmatch(r"\w[\w.-]*/\w[\w.-]*", source)) and not source.lower().endswith(
        file_suffixes
    )


# Factories a classifier directory may name itself: code this project owns or vouches for.
# Any other factory must come from the spec (what the user wrote), never from a file inside a
# checkpoint, which anyone who made the checkpoint controls.
TRUSTED_FACTORIES = ("dxray", "torchvision.models", "timm")  # packages, with their modules


def trusted_factory(factory: str) -> bool:
    """Whether a classifier directory may name `factory` on its own (`TRUSTED_FACTORIES`)."""
    module = str(factory).partition(":")[0]
    return any(module == t or module.startswith(t + ".") for t in TRUSTED_FACTORIES)


def _load_dxray_dir(
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
    model = _build_from_factory(factory or config["factory"], kwargs)
    _load_state(model, weights, pickled=False)
    known = {key: config[key] for key in PREPROCESSING_KEYS}
    if config.get("outputs") is not None:
        known["outputs"] = config["outputs"]
    return model, known, list(config["class_names"])


def _load_weights(path: Path, options: dict, *, pickled: bool) -> tuple[nn.Module, dict, None]:
    if "factory" not in options:
        raise ClassifierLoadError(
            f"'{path}' holds only weights: also give the python factory that builds the model, "
            f'e.g. {{"source": "{path}", "factory": "my_package.models:build", '
            '"factory_kwargs": {...}, "input_size": [224, 224], "mean": [...], "std": [...]}'
        )
    model = _build_from_factory(options["factory"], options.get("factory_kwargs") or {})
    _load_state(model, path, pickled=pickled)
    return model, {}, None


def _build_from_factory(factory: str, kwargs: dict) -> nn.Module:
    fn = _import_factory(factory)
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


def _import_factory(factory: str):
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


def _load_state(model: nn.Module, path: Path, *, pickled: bool) -> None:
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


def _is_torchscript(path: Path) -> bool:
    # TorchScript archives are zips that carry compiled code; torch.save zips carry only data.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def _load_torchscript(path: Path, device) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location=device)
    except RuntimeError as err:
        raise ClassifierLoadError(f"cannot load TorchScript '{path}': {first_line(err)}") from err


def _load_hf(source: str, dtype) -> tuple[nn.Module, dict, list]:
    from transformers import AutoModelForImageClassification

    local = Path(source).expanduser()
    is_local = local.is_dir()
    if not is_local and not _is_hub_id(source):
        raise ClassifierLoadError(
            f"Hugging Face model directory '{source}' does not exist (and it is no hub id)"
        )
    where = str(local) if is_local else source
    model = load_part(
        lambda: AutoModelForImageClassification.from_pretrained(where, dtype=dtype),
        what="weights",
        model="Hugging Face image classifier",
        src=source,
        is_local=is_local,
        error=ClassifierLoadError,
    )
    id2label = model.config.id2label or {}
    class_names = [str(id2label[i]) for i in sorted(id2label, key=int)]
    config = _hf_preprocessor_config(where, is_local)
    return model, (_hf_preprocessing(config) if config is not None else {}), class_names


def _hf_preprocessor_config(where: str, is_local: bool) -> dict | None:
    # Read the processor's JSON ourselves: building an image processor may need torchvision.
    if is_local:
        file = Path(where) / "preprocessor_config.json"
        if not file.is_file():
            return None
    else:
        from huggingface_hub import hf_hub_download

        try:
            file = Path(hf_hub_download(where, "preprocessor_config.json"))
        except (OSError, ValueError):
            return None
    return json.loads(file.read_text())


def _hf_preprocessing(config: dict) -> dict:
    """input_size, mean and std for images in [0, 1] from an HF image processor's config."""
    size = config.get("size")
    if config.get("do_center_crop") and config.get("crop_size"):
        size = config["crop_size"]
    # "shortest_edge" processors resize then crop to a square; the generator's images are square,
    # so resizing straight to that edge keeps the same framing up to the crop margin.
    if isinstance(size, int):
        input_size = (size, size)
    elif isinstance(size, Mapping) and "height" in size and "width" in size:
        input_size = (int(size["height"]), int(size["width"]))
    elif isinstance(size, Mapping) and ("shortest_edge" in size or "longest_edge" in size):
        edge = int(size.get("shortest_edge") or size["longest_edge"])
        input_size = (edge, edge)
    else:
        input_size = None

    def rgb(value):
        return None if value is None else tuple(value) if isinstance(value, list) else (value,) * 3

    mean, std = rgb(config.get("image_mean")), rgb(config.get("image_std"))
    if config.get("do_normalize", True) is False:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    # Processors see pixels in 0..255 and may rescale them; fold that into mean/std for [0, 1].
    scale = (
        255.0 * config.get("rescale_factor", 1 / 255) if config.get("do_rescale", True) else 255.0
    )
    if mean is not None and std is not None and abs(scale - 1.0) > 1e-9:
        mean, std = tuple(m / scale for m in mean), tuple(s / scale for s in std)
    return {"input_size": input_size, "mean": mean, "std": std}


def _load_torchvision(name: str) -> tuple[nn.Module, dict, list | None]:
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


def _load_timm(name: str) -> tuple[nn.Module, dict, list | None]:
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


def _logits(output) -> Tensor:
    """The logits tensor of a model's output: a tensor, an HF ModelOutput, a dict or a tuple."""
    if isinstance(output, Tensor):
        logits = output
    elif isinstance(getattr(output, "logits", None), Tensor):
        logits = output.logits
    elif isinstance(output, Mapping) and isinstance(output.get("logits"), Tensor):
        logits = output["logits"]
    else:
        logits = _first_tensor(output)
        if logits is None:
            raise TypeError(f"the model returned {type(output).__name__}, which holds no logits")
    if logits.ndim != 2:
        raise ValueError(
            f"the model's output has shape {list(logits.shape)}; expected logits [B, num_classes]"
        )
    return logits


def _final_rectifier(module: nn.Module) -> nn.Module | None:
    """The ReLU that produces `module`'s output: the module itself, or the last child of a
    Sequential (e.g. Linear + ReLU); None when the output is not a ReLU's."""
    if isinstance(module, nn.ReLU | nn.ReLU6):
        return module
    if isinstance(module, nn.Sequential) and len(module):
        return _final_rectifier(module[-1])
    return None


def _channel_means(output, layer: str) -> Tensor:
    """A layer output's mean per channel: [B, C, H, W] and [B, tokens, C] -> [B, C]."""
    tensor = _first_tensor(output)
    if tensor is None:
        raise ValueError(f"layer {layer!r} outputs {type(output).__name__}, not a tensor")
    if tensor.ndim == 4:
        return tensor.mean(dim=(2, 3))
    if tensor.ndim == 3:
        return tensor.mean(dim=1)
    if tensor.ndim == 2:
        return tensor
    raise ValueError(
        f"layer {layer!r} outputs shape {list(tensor.shape)}; units need [B, C, H, W], "
        "[B, tokens, C] or [B, C]"
    )


def _first_tensor(output) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):  # HF ModelOutput is a Mapping too
        output = list(output.values())
    if isinstance(output, tuple | list):
        for item in output:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None
