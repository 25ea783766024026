"""What an audit checks before any model loads: every user error found here is one line that
names what is wrong and what to do, raised before Ray starts and before anything is written.

    check_before_models(spec)   # the unit CSV, the catalog folder, every local model file

Checked here: the unit CSV exists and reads (`dxray.spec.unit_csv.read_units`); the catalog
is a folder this process can create files in; each model source that is a local path exists
(the classifier always; the generator and segmenter when Ray runs embedded, since a cluster's
workers may see paths the driver cannot), and each `.safetensors` file in it has a whole header
and body (a truncated download or copy fails here, naming the file, instead of deep inside a
loader or a Ray worker).
What needs the models (units in range, classes by name) is checked right after the classifier
loads, by `dxray.run.pipeline.plan`. Hub ids and `torchvision:`/`timm:` names are left to the
loaders, which say how to fetch them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from dxray.models.sources import is_hub_id
from dxray.spec.model import AuditSpec, SpecError
from dxray.spec.unit_csv import read_units
from dxray.text import first_line

_SCHEMES = ("hf:", "torchvision:", "timm:")


class PreflightError(SpecError):
    """An input that cannot work, found before any model loads."""


def check_before_models(spec: AuditSpec) -> None:
    """Raise `PreflightError` (or `SpecError` for the unit CSV) on the first input that cannot
    work; returns quietly otherwise. Writes nothing."""
    read_units(spec)  # the unit CSV exists and reads
    check_catalog_writable(Path(spec.output.catalog))
    models = [("classifier", spec.classifier.source)]  # the driver loads it to plan the run
    # The workers load the others. On a cluster they may read paths this driver cannot see
    # (a volume mounted on the GPU nodes only), so only an embedded run checks them here.
    if spec.ray.address is None and not os.environ.get("RAY_ADDRESS"):
        models += [
            ("generator", spec.generator.source),
            ("segmenter", spec.segmenter.source),
            ("tiny decoder", spec.generator.tiny_decoder),
        ]
    for what, source in models:
        if source is not None:
            check_model_source(what, source)


def check_catalog_writable(root: Path) -> None:
    """`root` is a folder this process can create files in, or one it can create: a probe
    file is written and removed in it (or in its deepest existing parent). Creates nothing."""
    if root.exists() and not root.is_dir():
        raise PreflightError(
            f"catalog {root} is a file, not a folder: give a folder with --catalog (or "
            "output.catalog in the spec)"
        )
    existing = root.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PreflightError(
            f"catalog {root} cannot be created: {existing} is a file. Give another folder with "
            "--catalog"
        )
    probe = existing / f".dxray-write-test-{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PreflightError(
            f"catalog {root} is not writable ({err.strerror or err} in {existing}): fix its "
            "permissions or give another folder with --catalog"
        ) from None


def model_path(source: Any) -> Path | None:
    """The local path a model source names, or None for a hub id ("org/name", as the
    classifier loader reads one) or a named constructor ("torchvision:resnet50")."""
    if isinstance(source, dict):
        source = source.get("source")
    text = str(source)
    if text.startswith(_SCHEMES):
        return None
    path = Path(text).expanduser()
    return path if path.exists() or not is_hub_id(text) else None


def check_model_source(what: str, source: Any) -> None:
    """A local model source exists and its safetensors files are whole."""
    path = model_path(source)
    if path is None:
        return
    if not path.exists():
        raise PreflightError(
            f"{what} '{path}' does not exist: fix {what.replace(' ', '_')}'s source in the spec "
            "(a local path is read relative to the folder dxray runs from)"
        )
    files = sorted(path.rglob("*.safetensors")) if path.is_dir() else [path]
    for file in files:
        if file.suffix.lower() == ".safetensors":
            check_safetensors(what, file)


def check_safetensors(what: str, file: Path) -> None:
    """The file's header parses and its tensors fit in the file (reads the header only)."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(file), framework="pt") as handle:
            handle.keys()
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        reason = first_line(err)
        raise PreflightError(
            f"{what} file {file} is truncated or corrupt ({reason}): download or save it again"
        ) from None
