"""Which dxray code computed a run, and what a rerun does when it was other code.

A run id names what is audited (the spec, the classifier's weights), not the code that
audits it, so a rerun resumes the run: it skips the rows the catalog has. Rows that other
dxray code computed (an upgrade, an edited engine) would then mix with this code's in one
run, and its report would read both as one. So every run records a digest of the code that
makes its rows (`code_revision`, in runs.versions_json as "dxray_code") and `run_audit`
compares it with this code's before it resumes (`Resume`):

    "check"           resume a run this code computed; one of other code is refused (StaleRun)
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

Resume = Literal["check", "fresh", "fresh-if-stale", "any"]
RESUME_CHOICES: tuple[str, ...] = ("check", "fresh", "fresh-if-stale", "any")

# The subpackages whose code decides the values of a run's rows. The CLI, the report, the
# catalog's SQL and the evaluation read rows; editing them leaves a run resumable.
ROW_MAKERS = ("explain", "judge", "models", "run", "shortcuts")
CODE_KEY = "dxray_code"  # its key in runs.versions_json


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


def recorded_revision(run: Mapping) -> str | None:
    """The code revision a runs row recorded; None for a run of a dxray that did not record
    one (or an unreadable versions_json)."""
    try:
        versions = json.loads(run.get("versions_json") or "{}")
    except ValueError:
        return None
    value = versions.get(CODE_KEY) if isinstance(versions, dict) else None
    return str(value) if value else None


def stale_reason(run: Mapping | None, revision: str) -> str | None:
    """Why run row `run` is not this code's (None: it is, or there is no earlier run)."""
    if run is None:
        return None
    recorded = recorded_revision(run)
    if recorded == revision:
        return None
    was = f"dxray code {recorded}" if recorded else "a dxray that recorded no code revision"
    return f"computed by {was} (this is {revision})"


def check_resume(resume: str) -> None:
    if resume not in RESUME_CHOICES:
        raise ValueError(f"resume is one of {', '.join(RESUME_CHOICES)}; got {resume!r}")
