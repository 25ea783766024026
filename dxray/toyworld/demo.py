"""The demo's spec, from a checkout or from an installed dxray.

`pipelines/toy.yaml` (a checkout's) is the package's `dxray/toyworld/toy.yaml`; its model
folders are the committed zoo's, written relative to the repository root
(`dxray/toyworld/zoo/default/...`). Run from anywhere else, an installed dxray reads the
packaged spec and finds the zoo inside the package: `demo_spec()` rebases the model sources
that do not exist where dxray runs onto the installed package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dxray.spec.model import AuditSpec
from dxray.spec.parse import load_spec, with_overrides

CHECKOUT_SPEC = Path("pipelines/toy.yaml")  # relative to the directory dxray runs from
PACKAGED_SPEC = "toy.yaml"  # in dxray.toyworld
ROLES = ("generator", "classifier", "segmenter")


def demo_spec(path: str | Path | None = None) -> AuditSpec:
    """The spec `dxray demo` runs: `path` if given, else the checkout's pipelines/toy.yaml,
    else the installed package's copy with its zoo paths rebased onto the package."""
    if path is not None:
        return load_spec(path)
    if CHECKOUT_SPEC.is_file():
        return load_spec(CHECKOUT_SPEC)
    with resources.as_file(resources.files("dxray.toyworld").joinpath(PACKAGED_SPEC)) as file:
        spec = load_spec(file)
    return rebase_on_package(spec)


def rebase_on_package(spec: AuditSpec) -> AuditSpec:
    """Model sources written relative to the repository root ("dxray/...") that do not exist
    from here, pointed at the installed dxray package's files instead."""
    root = Path(str(resources.files("dxray"))).parent
    moved = {}
    for role in ROLES:
        source = getattr(spec, role).source
        local = isinstance(source, str) and source.startswith("dxray/") and Path(source).exists()
        if isinstance(source, str) and not local and (root / source).exists():
            moved[f"{role}.source"] = str(root / source)
    return with_overrides(spec, **moved) if moved else spec
