"""The top of the report (the run's header) and the legend of the explanation galleries.

Contract: pure functions of rows already read from dxray/catalog/sql/report.sql (`run`, `counts`);
each returns escaped HTML. The answer below the header is dxray.report.answer.
"""

from __future__ import annotations

from dxray.report.markup import badge, esc
from dxray.run.provenance import recorded_revision
from dxray.text import MISSING


def header(run: dict, run_id: str, counts: dict) -> str:
    """The page header: run name and status, and the run's metadata."""
    name = run.get("name") or run_id
    sha = run.get("classifier_sha256") or ""
    started = run.get("created_at")
    wall = run.get("wall_seconds")
    meta = [
        ("run", esc(run_id)),
        ("classifier", esc(run.get("classifier"))),
        (
            "checkpoint sha256",
            f'<code title="{esc(sha)}">{esc(sha[:12])}{"…" if len(sha) > 12 else ""}</code>',
        ),
        ("generator", esc(run.get("generator"))),
        ("segmenter", esc(run.get("segmenter"))),
        ("started", esc(started.strftime("%Y-%m-%d %H:%M UTC") if started else None)),
        ("wall time", esc(f"{wall / 60:.1f} min" if wall is not None else None)),
        ("dxray", _dxray(run)),
        ("targets × seeds", f'<b data-stat="seeds">{counts["seeds"]}</b>'),
    ]
    status = run.get("status") or "unknown"
    cells = "".join(f"<div><dt>{k}</dt><dd>{v or MISSING}</dd></div>" for k, v in meta)
    error = f'<p class="run-error">{esc(run["error"])}</p>' if run.get("error") else ""
    return (
        f'<header><div class="eyebrow">dxray audit report</div>'
        f'<h1>{esc(name)} <span class="status {esc(status)}">{esc(status)}</span></h1>'
        f'<dl class="meta">{cells}</dl>{error}</header>'
    )


def _dxray(run: dict) -> str:
    """dxray's version and, where the run recorded it, the digest of the code that computed
    its rows (dxray.run.provenance), so that two reports can be told apart by their code."""
    code = recorded_revision(run)
    version = esc(run.get("dxray_version"))
    if not code:
        return version
    tip = "the digest of the dxray code that computed this run's rows"
    return f'{version} · <code title="{esc(tip)}">code {esc(code)}</code>'


def legend() -> str:
    """What the badges and the outline of the explanation galleries mean."""
    return (
        '<div class="legend">'
        f"units: {badge('core')} loses its activation without the objects"
        f"{badge('spurious')} keeps it on the background"
        f"{badge('uncertain')} silent or nothing left to compare"
        f" · class explanations: {badge('shown', 'shown')} the class's object is in the image"
        f"{badge('absent', 'absent')} it is not"
        '<span class="badge failed">failed</span> error or diverged'
        '<span class="swatch"></span> segmenter object outline'
        "</div>"
    )
