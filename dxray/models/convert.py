"""Released checkpoints -> dxray classifier directories (classifier.json + model.safetensors).

The paper's two classifiers are published as pickles of torchvision ResNets:

- Salient ImageNet's robust ResNet-50 (`imagenet_l2_3_0.pt`, the robustness library): a dict
  whose "model" state dict holds the network under `module.model.`, the adversary's copy
  under `module.attacker.model.` and the input normaliser under `module.normalizer.`;
- FairFace's ResNet-34 (`res34_fair_align_multi_7_20190809.pt`, ...): a state dict, `fc` with
  18 outputs (race 0-6, gender 7-8, age 9-17).

`convert_robustness` and `convert_fairface` read them with `torch.load(weights_only=True)`
(tensors and containers only: a file that needs arbitrary unpickling is refused), keep the
network's weights, fold the normaliser into the preprocessing, and write a directory that
`load_classifier` reads with dxray's own torchvision-layout ResNet (`dxray.models.resnet`: no
torchvision needed). FairFace's directory names the audited head's classes and exposes only
those outputs (`outputs` in classifier.json).

    dxray convert robustness imagenet_l2_3_0.pt models/robust_resnet50 --class-names class_metadata.csv
    dxray convert fairface res34_fair_align_multi_7_20190809.pt models/fairface_age --head age
"""

from __future__ import annotations

import csv
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from dxray.models.classifier import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from dxray.models.classifier_io import save_classifier
from dxray.models.resnet import ARCHS, BasicBlock, Bottleneck

FAIRFACE_HEADS = {
    "race": (0, 7, ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian",
                    "Indian", "Middle Eastern"]),
    "gender": (7, 9, ["Male", "Female"]),
    "age": (9, 18, ["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69",
                    "70+"]),
}  # fmt: skip


class ConvertError(ValueError):
    """A checkpoint that cannot be converted; the message says what to do."""


def read_checkpoint(path: str | Path) -> Mapping:
    """`torch.load(path, weights_only=True)`: tensors, numbers, strings and containers only."""
    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"checkpoint '{path}' does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConvertError(
            f"refusing '{path}': it needs arbitrary unpickling, which can run any code "
            f"({str(err).splitlines()[0][:200]}). On a machine you trust, load it yourself and "
            "save its state dict with safetensors.torch.save_file, then convert that."
        ) from None
    except (RuntimeError, OSError, EOFError) as err:
        raise ConvertError(f"cannot read checkpoint '{path}': {err}") from None


def convert_robustness(checkpoint: str | Path, out: str | Path, *, class_names: list[str]) -> Path:
    """The robustness library's checkpoint -> a dxray classifier directory. `class_names`:
    the classes' names in output order (`imagenet_class_names`); the segmenter asks for "a
    tench", never for "a class_0"."""
    if not class_names:
        raise ConvertError(
            "give the class names (ImageNet's: Salient ImageNet's class_metadata.csv, a text "
            "file with one name per line, or torchvision:ResNet50_Weights)"
        )
    raw = read_checkpoint(checkpoint)
    state = raw.get("model", raw.get("state_dict", raw)) if isinstance(raw, Mapping) else raw
    if not isinstance(state, Mapping):
        raise ConvertError(f"'{checkpoint}' holds no state dict (a 'model' entry of tensors)")
    network = _strip(state, "module.model.")
    if not network:
        raise ConvertError(
            f"'{checkpoint}' has no 'module.model.' weights: not a robustness-library "
            f"checkpoint (its keys begin {sorted(state)[:3]})"
        )
    mean = _normaliser(state, "new_mean", IMAGENET_MEAN)
    std = _normaliser(state, "new_std", IMAGENET_STD)
    return _write(network, out, mean, std, class_names, outputs=None, source=checkpoint)


def convert_fairface(checkpoint: str | Path, out: str | Path, *, head: str = "age") -> Path:
    """A FairFace ResNet-34 state dict -> a dxray classifier directory whose classes are one
    head's ("race", "gender" or "age"), the other outputs kept but not audited."""
    if head not in FAIRFACE_HEADS:
        raise ConvertError(f"head must be one of {', '.join(FAIRFACE_HEADS)}, got {head!r}")
    state = read_checkpoint(checkpoint)
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    network = _strip(state, "module.") if any(k.startswith("module.") for k in state) else state
    fc = network.get("fc.weight")
    if fc is None or fc.shape[0] != 18:
        raise ConvertError(
            f"'{checkpoint}' is not FairFace's 18-output ResNet: fc.weight has shape "
            f"{None if fc is None else tuple(fc.shape)}, expected (18, 512)"
        )
    start, stop, names = FAIRFACE_HEADS[head]
    return _write(network, out, IMAGENET_MEAN, IMAGENET_STD, names, (start, stop), checkpoint)


def imagenet_class_names(source: str | Path) -> list[str]:
    """ImageNet's 1000 class names from Salient ImageNet's `class_metadata.csv` (its `synset`
    column, by `class_index`), from a text file with one name per line, or from torchvision's
    weights metadata ("torchvision:ResNet50_Weights", with the torchvision extra)."""
    text = str(source)
    if text.startswith("torchvision:"):
        try:
            import torchvision.models as tvm
        except ImportError as err:
            raise ConvertError(
                f"{text} needs torchvision (pip install 'dxray[torchvision]'): {err}"
            ) from None
        weights = getattr(tvm, text.removeprefix("torchvision:"), None)
        if weights is None:
            raise ConvertError(
                f"torchvision has no weights enum {text.removeprefix('torchvision:')}"
            )
        return list(weights.DEFAULT.meta["categories"])
    path = Path(text)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as err:
        raise ConvertError(f"cannot read class names '{path}': {err.strerror}") from None
    header = next(csv.reader(lines[:1]), [])
    if "class_index" in header and "synset" in header:
        names: dict[int, str] = {}
        for i, row in enumerate(csv.DictReader(lines), start=2):
            index = row.get("class_index", "").strip()
            if not index.isdigit():
                raise ConvertError(f"'{path}' line {i}, column class_index: {index!r}")
            names[int(index)] = row["synset"].strip()
        if sorted(names) != list(range(len(names))):
            raise ConvertError(f"'{path}': class_index must run 0..{len(names) - 1} once each")
        return [names[i] for i in range(len(names))]
    return [line.strip() for line in lines if line.strip()]


def _strip(state: Mapping, prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}  # fmt: skip


def _normaliser(state: Mapping, name: str, default) -> tuple[float, ...]:
    for key in (f"module.normalizer.{name}", f"normalizer.{name}"):
        if key in state:
            return tuple(float(v) for v in state[key].flatten())
    return tuple(default)


# What a checkpoint may claim before anything is allocated: torchvision's ResNets are 64 wide
# and ImageNet has 1,000 classes; a file that claims 4,096 channels or a million classes is
# damaged or hostile, and building it would ask for gigabytes.
MAX_WIDTH = 256
MAX_CLASSES = 100_000


def _arch(network: Mapping[str, Tensor]) -> tuple[str, dict]:
    """The torchvision ResNet a state dict is, and the factory kwargs that rebuild it; widths
    and class counts are bounded and every tensor's shape is checked against the network
    built on the meta device (no memory) before the real one is built."""
    for key in ("conv1.weight", "fc.weight"):
        if not isinstance(network.get(key), Tensor) or network[key].dim() < 2:
            raise ConvertError(f"not a torchvision ResNet state dict: no usable {key}")
    block = Bottleneck if "layer1.0.conv3.weight" in network else BasicBlock
    counts = []
    for stage in range(1, 5):
        blocks = {int(m.group(1)) for k in network if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        counts.append(len(blocks))
    for name, factory in ARCHS.items():
        probe = factory(num_classes=1, width=1)
        layers = [len(getattr(probe, f"layer{i}")) for i in range(1, 5)]
        if layers == counts and isinstance(probe.layer1[0], block):
            kwargs = {
                "num_classes": int(network["fc.weight"].shape[0]),
                "width": int(network["conv1.weight"].shape[0]),
            }
            if not 1 <= kwargs["width"] <= MAX_WIDTH:
                raise ConvertError(
                    f"conv1.weight claims {kwargs['width']} channels; a ResNet has 1 to "
                    f"{MAX_WIDTH} (torchvision's: 64): the file is damaged or not a ResNet"
                )
            if not 1 <= kwargs["num_classes"] <= MAX_CLASSES:
                raise ConvertError(
                    f"fc.weight claims {kwargs['num_classes']} classes; at most {MAX_CLASSES:,}"
                )
            _check_shapes(network, factory, kwargs, name)
            return name, kwargs
    raise ConvertError(f"a ResNet with {counts} blocks per stage is not one dxray builds")


def _check_shapes(network: Mapping[str, Tensor], factory, kwargs: dict, name: str) -> None:
    """Every tensor the network needs, with its shape: the first one that differs is named."""
    with torch.device("meta"):
        expected = factory(**kwargs).state_dict()
    for key, want in expected.items():
        got = network.get(key)
        if got is None:
            if key.endswith("num_batches_tracked"):
                continue
            raise ConvertError(f"the checkpoint lacks {key} (a {name} needs it)")
        if not isinstance(got, Tensor) or tuple(got.shape) != tuple(want.shape):
            shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
            raise ConvertError(
                f"{key} has shape {shape}; a {name} of width {kwargs['width']} with "
                f"{kwargs['num_classes']} classes needs {tuple(want.shape)}"
            )


def _write(network, out, mean, std, class_names, outputs, source) -> Path:
    if Path(out).exists():
        raise ConvertError(
            f"{out} exists: converting never overwrites a folder; remove it or choose another"
        )
    name, kwargs = _arch(network)
    model = ARCHS[name](**kwargs)
    missing, unexpected = model.load_state_dict(dict(network), strict=False)
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ConvertError(
            f"'{source}' does not fit a {name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    count = kwargs["num_classes"] if outputs is None else outputs[1] - outputs[0]
    names = list(class_names)
    if len(names) != count:
        raise ConvertError(f"{len(names)} class names for {count} classes")
    return save_classifier(
        out,
        model.eval(),
        factory=f"dxray.models.resnet:{name}",
        factory_kwargs=kwargs,
        preprocessing=Preprocessing((224, 224), mean, std),
        class_names=names,
        outputs=outputs,
    )
