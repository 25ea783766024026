"""A Hugging Face image-classification model: a save_pretrained directory or a hub id.

Its class names come from the config's id2label, its preprocessing from the image processor's
preprocessor_config.json, read as JSON (building the processor may need torchvision).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from torch import nn

from dxray.models.classifier import ClassifierLoadError
from dxray.models.sources import is_hub_id, load_part


def load_hf(source: str, dtype) -> tuple[nn.Module, dict, list]:
    """An image-classification model from a save_pretrained directory or a hub id."""
    from transformers import AutoModelForImageClassification

    local = Path(source).expanduser()
    is_local = local.is_dir()
    if not is_local and not is_hub_id(source):
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
