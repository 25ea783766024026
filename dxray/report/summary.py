"""The top of the report: the run's header, the badge legend and the summary figures.

Contract: pure functions of rows already read from catalogs/report.sql (`run`, `counts`,
`targets`, `probes`); each returns escaped HTML. The summary's figures carry data-stat
attributes (see markup.stat).
"""

from __future__ import annotations

from dxray.report.markup import badge, esc, fmt, pct, stat
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
        ("dxray", esc(run.get("dxray_version"))),
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


def legend() -> str:
    """What the badges and the outline mean."""
    return (
        '<div class="legend">'
        f"{badge('core')} the class's object is in the image"
        f"{badge('spurious')} high score without the object"
        f"{badge('uncertain')} partial or doubtful"
        '<span class="badge failed">failed</span> error or diverged'
        '<span class="swatch"></span> segmenter object outline'
        "</div>"
    )


def summary(counts: dict, targets: list[dict], probes: dict[str, list[dict]]) -> str:
    """The summary section: figures, then the most biased classes with their top probes."""
    judged = counts["judged_classes"]
    share = counts["spurious_classes"] / judged if judged else None
    stats = "".join(
        [
            stat("classes", counts["classes"], "classes audited", f"{judged} with a verdict"),
            stat(
                "spurious_pct",
                pct(share),
                "spurious classes",
                f"{counts['spurious_classes']} of {judged}",
                "bad" if counts["spurious_classes"] else "",
            ),
            stat("core_classes", counts["core_classes"], "core classes", "object present"),
            stat("uncertain_classes", counts["uncertain_classes"], "uncertain", "need a look"),
            stat("units", counts["units"], "units audited", f"{counts['spurious_units']} spurious"),
            stat(
                "failed_seeds",
                counts["failed_seeds"],
                "failed seeds",
                "error or NaN",
                "warn" if counts["failed_seeds"] else "",
            ),
        ]
    )
    biased = [t for t in targets if t["kind"] == "class" and (t["spurious_fraction"] or 0) > 0][:8]
    if biased:
        rows = []
        for t in biased:
            top = sorted(probes.get(t["target_id"], []), key=lambda p: -p["rate"])[:3]
            chips = "".join(
                f'<span class="chip">{esc(p["probe"])} <b>{pct(p["rate"])}</b></span>'
                for p in top
                if p["rate"] > 0
            )
            fraction = t["spurious_fraction"]
            rows.append(
                f"<tr><td><b>{esc(t['class_name'] or t['target_id'])}</b>"
                f'<div class="sub">class {esc(t["class_index"])}</div></td>'
                f"<td>{badge(t['verdict'])}</td>"
                f'<td><div class="bar"><i style="width:{100 * fraction:.0f}%"></i></div>'
                f"{pct(fraction)} <span class='sub'>({t['n_spurious']}/{t['judged']})</span></td>"
                f"<td>{fmt(t['mean_probability'])}</td><td>{chips or MISSING}</td></tr>"
            )
        table = (
            '<table class="list"><thead><tr><th>class</th><th>verdict</th>'
            "<th>spurious seeds</th><th>mean p</th><th>top probes (rate present)</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>"
        )
    else:
        table = '<p class="empty">No class has a spurious seed.</p>'
    return (
        f'<section><h2>Summary</h2><div class="stats">{stats}</div>'
        f"<h3>Most biased classes</h3>{table}</section>"
    )
