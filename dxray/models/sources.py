"""Where a model comes from: a local directory or a hub id, and what to say when it fails."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from dxray.text import first_line

T = TypeVar("T")

# A Hugging Face hub id: "name" or "org/name", letters, digits, "_", "-" and "." each.
HUB_ID = re.compile(r"\w[\w.-]*(/\w[\w.-]*)?")
# Names ending so are files, whatever else they look like (weights, configs, archives).
FILE_SUFFIXES = (".safetensors", ".json", ".yaml", ".pt", ".pth", ".ts", ".torchscript", ".bin",
                 ".ckpt", ".pkl", ".pickle", ".onnx")  # fmt: skip


def is_hub_id(source: str) -> bool:
    """Whether a model source reads as a hub id rather than a path: the one rule for every
    model (generator, classifier, segmenter) and for the preflight. "./x", "~/x", "/x",
    "a/b/c" and file names ("clf.safetensors") are paths; a path that exists is always used
    as one (the loaders look first)."""
    return bool(HUB_ID.fullmatch(source)) and not source.lower().endswith(FILE_SUFFIXES)


def load_part(
    fn: Callable[[], T], *, what: str, model: str, src: str, is_local: bool, error: type[Exception]
) -> T:
    """`fn()`, with an OSError/ValueError turned into `error` saying what to do: check a local
    folder, or download a hub id on a connected machine."""
    try:
        return fn()
    except (OSError, ValueError) as err:
        where = "directory" if is_local else "hub id"
        advice = (
            "Check that the folder was written by save_pretrained."
            if is_local
            else "Offline or not cached? Download it on a connected machine "
            f"(`hf download {src} --local-dir DIR`) and pass DIR instead."
        )
        raise error(
            f"could not load the {what} of {model} {where} '{src}': {first_line(err)}. {advice}"
        ) from None
