"""Which dxray code computed a run, and what a rerun does when it was other code.

A run id names what is audited (the spec, the classifier's weights), not the code that
audits it, so a rerun resumes the run: it skips the rows the catalog has. Rows that other
dxray code computed (an upgrade, an edited engine) would then mix with this code's in one
run, and its report would read both as one; so would rows of a generator or segmenter folder
trained again in place (same path, other weights). So every run records a digest of the code
that makes its rows (`code_revision`, in runs.versions_json as "dxray_code") and of its local
generator and segmenter folders (`folder_fingerprint`, "generator_files", "segmenter_files"),
and `run_audit` compares them with this code's and folders' before it resumes (`Resume`):

    "check"           resume a run this code computed; one of other code (or model files) is
                      refused (StaleRun)
    "fresh"           move the run's earlier rows aside and compute it again, whatever made them
    "fresh-if-stale"  resume a run this code computed, compute one of other code again (demo)
    "any"             resume whatever code computed the run (its rows mix)

Rows moved aside go to <catalog>/_superseded/ (`CatalogWriter.move_run_aside`): nothing is
deleted, and no reader lists them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from dxray.run.checkpoints import folder_files

Resume = Literal["check", "fresh", "fresh-if-stale", "any"]
RESUME_CHOICES: tuple[str, ...] = ("check", "fresh", "fresh-if-stale", "any")

# The subpackages whose code decides the values of a run's rows. The CLI, the report, the
# catalog's SQL and the evaluation read rows; editing them leaves a run resumable.
ROW_MAKERS = ("explain", "judge", "models", "run", "shortcuts")
CODE_KEY = "dxray_code"  # its key in runs.versions_json
# Model folders whose files are fingerprinted too: a generator or segmenter trained again in
# place keeps its path, so the spec (and the run id) does not change
FOLDER_ROLES = ("generator", "segmenter")
FINGERPRINT_BYTES = 1 << 16


class StaleRun(ValueError):
    """The run to resume was computed by other dxray code (a bad input: exit 2)."""


@lru_cache(maxsize=1)
def code_revision() -> str:
    """This dxray's revision: `source_digest` of the installed package."""
    return source_digest(Path(__file__).resolve().parents[1])


def source_digest(root: Path) -> str:
    """12 hex digits of sha256 over the source of the package at `root`'s `ROW_MAKERS`
    subpackages (each file's path and bytes, in order)."""
    digest = hashlib.sha256()
    for package in ROW_MAKERS:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def folder_fingerprint(source: object) -> str | None:
    """12 hex digits over a local model folder: each file's path, size, and first and last
    `FINGERPRINT_BYTES` (training that rewrites the weights changes them; copying or moving
    the folder does not). None for a hub id, or anything else that is not a folder."""
    folder = Path(str(source))
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for name, path in folder_files(folder).items():
        size = path.stat().st_size
        digest.update(f"{name}\0{size}\0".encode())
        with path.open("rb") as file:
            digest.update(file.read(FINGERPRINT_BYTES))
            if size > 2 * FINGERPRINT_BYTES:
                file.seek(-FINGERPRINT_BYTES, 2)
                digest.update(file.read(FINGERPRINT_BYTES))
    return digest.hexdigest()[:12]


def provenance(spec) -> dict[str, str]:
    """What a run records of the code and the model folders that make its rows (the
    classifier's weights are in the run id already): {CODE_KEY: ..., "<role>_files": ...}."""
    out = {CODE_KEY: code_revision()}
    for role in FOLDER_ROLES:
        fingerprint = folder_fingerprint(getattr(spec, role).source)
        if fingerprint is not None:
            out[f"{role}_files"] = fingerprint
    return out


def _recorded(run: Mapping) -> dict:
    try:
        versions = json.loads(run.get("versions_json") or "{}")
    except ValueError:
        return {}
    return versions if isinstance(versions, dict) else {}


def recorded_revision(run: Mapping) -> str | None:
    """The code revision a runs row recorded; None for a run of a dxray that did not record
    one (or an unreadable versions_json)."""
    value = _recorded(run).get(CODE_KEY)
    return str(value) if value else None


def stale_reason(run: Mapping | None, now: Mapping[str, str]) -> str | None:
    """Why run row `run` was not computed by what `now` (`provenance`) describes: other dxray
    code, or a model folder whose files changed since (None: it was, or there is no run)."""
    if run is None:
        return None
    recorded, revision = _recorded(run), now[CODE_KEY]
    code = recorded.get(CODE_KEY) or None
    if code != revision:
        was = f"dxray code {code}" if code else "a dxray that recorded no code revision"
        return f"computed by {was} (this is {revision})"
    changed = [
        f"{key.removesuffix('_files')} folder's files ({recorded.get(key)}, now {value})"
        for key, value in now.items()
        if key != CODE_KEY and recorded.get(key) != value
    ]
    return f"computed with another {' and '.join(changed)}" if changed else None


def check_resume(resume: str) -> None:
    if resume not in RESUME_CHOICES:
        raise ValueError(f"resume is one of {', '.join(RESUME_CHOICES)}; got {resume!r}")
