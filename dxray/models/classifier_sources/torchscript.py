"""A TorchScript archive: a compiled model that needs no python code to load.

Its compiled layers cannot be hooked, so it has logits but no hidden units.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from torch import nn

from dxray.models.classifier import ClassifierLoadError
from dxray.text import first_line

TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")


def is_torchscript(path: Path) -> bool:
    """Whether `path` is a TorchScript archive (not a torch.save zip of plain data)."""
    # TorchScript archives are zips that carry compiled code; torch.save zips carry only data.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())


def load_torchscript(path: Path, device) -> nn.Module:
    """The compiled model in `path`, on `device`."""
    try:
        return torch.jit.load(str(path), map_location=device)
    except RuntimeError as err:
        raise ClassifierLoadError(f"cannot load TorchScript '{path}': {first_line(err)}") from err
