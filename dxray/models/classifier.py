"""Image classifiers: any torch classifier behind the one interface the explain engine uses.

A `Classifier` takes images [B, 3, H, W] with values in [0, 1]; its `Preprocessing` resizes and
normalises them differentiably, so gradients reach whatever made the images. A hidden unit is
written "layer.path:channel" (`parse_unit`), the layer path being a name from
`model.named_modules()`; its value is the spatial mean of that channel of the layer's output
(`Classifier.outputs`, which returns a `dxray.models.outputs.ClassifierOutput`).

Classifiers are loaded and saved by `dxray.models.classifier_io` (`load_classifier`,
`save_classifier`); a loader that fails raises this module's `ClassifierLoadError`.
"""

from __future__ import annotations

import difflib
import itertools
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dxray.models.outputs import ClassifierOutput

# What a loader assumes when neither the source nor the spec states the preprocessing.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = (224, 224)
PREPROCESSING_KEYS = ("input_size", "mean", "std")  # the fields of `Preprocessing`


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
        logits = output_logits(self.model(x))
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


def output_logits(output) -> Tensor:
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
