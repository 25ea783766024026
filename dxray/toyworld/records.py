"""What every toy trainer writes beside the weights it saves: a JSON training record, and the
versions of the libraries that made them.

Each trainer keeps its own record's fields (`train_classifier.TrainRecord`, the segmenter's
`SegmenterTrainReport`, the generator's export record): the committed zoo's records are read
back by `dxray zoo check` and `zoo.zoo_world`, so their names and keys stay as they are.
"""

from __future__ import annotations

import importlib
import json
import platform
from pathlib import Path
from typing import Any


def library_versions(*names: str) -> dict[str, str]:
    """{name: version} in the order given: "python" is the interpreter, any other name an
    importable package's `__version__` ("unknown" if it has none)."""
    versions = {}
    for name in names:
        if name == "python":
            versions[name] = platform.python_version()
        else:
            versions[name] = getattr(importlib.import_module(name), "__version__", "unknown")
    return versions


def write_record(path: str | Path, record: dict[str, Any]) -> Path:
    """Write `record` as indented JSON to `path` (a training record beside the weights)."""
    path = Path(path)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
