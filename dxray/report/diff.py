"""The report's "Change since <earlier run>" section, drawn from a `dxray.catalog.RunDiff`.

Contract: `diff_section(diff)` is a pure function of the diff (verdict changes, probe rate
shifts, class shortcuts that appeared or vanished); it returns an escaped HTML <section>.
"""

from __future__ import annotations

from dxray.catalog.diff import RunDiff
from dxray.report.markup import badge, esc, fmt, pct, stat
from dxray.text import MISSING


def _before_after(r: dict) -> str:
    """A unit's verdict, or whether a class's explanation shows its object, before → after."""
    if r["kind"] == "class":
        return f"object {esc(r['object_before'] or MISSING)} → {esc(r['object_after'] or MISSING)}"
    return f"{badge(r['verdict_before'])} → {badge(r['verdict_after'])}"


def diff_section(diff: RunDiff) -> str:
    """The changes from `diff.from_run` to `diff.to_run`, the most alarming first."""
    s = diff.summary
    changes = s["changes"]
    appeared, vanished = s["shortcuts"]["appeared"], s["shortcuts"]["vanished"]
    stats = "".join(
        [
            stat(
                "diff_shortcuts_appeared",
                appeared,
                "shortcuts appeared",
                "class ← attribute findings",
                "bad" if appeared else "",
            ),
            stat("diff_shortcuts_vanished", vanished, "shortcuts vanished", "", "good"),
            stat(
                "diff_new_spurious",
                changes["new spurious"],
                "units turned spurious",
                "by intervention",
                "bad" if changes["new spurious"] else "",
            ),
            stat("diff_resolved", changes["resolved"], "units resolved", "spurious → core", "good"),
            stat("diff_changed", changes["changed"], "changed", "other moves"),
            stat("diff_unchanged", changes["unchanged"], "unchanged", ""),
        ]
    )
    order = {
        c: i for i, c in enumerate(("new spurious", "resolved", "changed", "added", "removed"))
    }
    moved = sorted(
        (r for r in diff.rows if r["change"] != "unchanged"),
        key=lambda r: (order.get(r["change"], 9), r["kind"], r["class_index"] or 0),
    )
    rows = []
    for r in moved:
        name = r["class_name"] if r["kind"] == "class" else r["unit"]
        shift = r["probability_shift"]
        shifts = "".join(
            f'<span class="chip">{esc(p["probe"])} {pct(p["before"])} → <b>{pct(p["after"])}</b></span>'
            for p in (r["probe_shifts"] or [])
        )
        rows.append(
            f"<tr><td><b>{esc(name or r['target_id'])}</b> "
            f"<span class='sub'>{esc(r['target_id'])}</span></td>"
            f'<td><span class="change {esc(r["change"].replace(" ", "-"))}">{esc(r["change"])}</span></td>'
            f"<td>{_before_after(r)}</td>"
            f"<td>{MISSING if shift is None else f'{shift:+.2f}'}</td><td>{shifts or MISSING}</td></tr>"
        )
    table = (
        '<table class="list"><thead><tr><th>target</th><th>change</th><th>before → after</th>'
        "<th>Δ mean p</th><th>probe rate shifts</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="empty">No unit verdict and no class explanation changed.</p>'
    )
    shortcut_rows = diff.shortcuts.to_pylist() if diff.shortcuts is not None else []
    if shortcut_rows:
        lifts = "".join(
            f"<tr><td><b>{esc(r['class_name'])}</b> ← {esc(r['attribute'])}</td>"
            f'<td><span class="change {"new-spurious" if r["change"] == "appeared" else "resolved" if r["change"] == "vanished" else "changed"}">'
            f"{esc(r['change'])}</span></td><td>{fmt(r['lift_before'])} → "
            f"<b>{fmt(r['lift_after'])}</b></td></tr>"
            for r in shortcut_rows
        )
        table += (
            '<h3>Class shortcuts</h3><table class="list"><thead><tr><th>class ← attribute'
            "</th><th>change</th><th>lift (nats) before → after</th></tr></thead>"
            f"<tbody>{lifts}</tbody></table>"
        )
    before, after = s["from_run"], s["to_run"]
    return (
        f'<section id="diff"><h2>Change since {esc(before.get("name") or diff.from_run)}</h2>'
        f'<p class="note">From run <code>{esc(diff.from_run)}</code> '
        f"(classifier sha256 <code>{esc((before.get('classifier_sha256') or '')[:12])}</code>) "
        f"to <code>{esc(diff.to_run)}</code> (<code>"
        f"{esc((after.get('classifier_sha256') or '')[:12])}</code>). Classes with a shortcut "
        f"finding: {s['classes_with_shortcuts_before']} → {s['classes_with_shortcuts_after']}; "
        f"spurious units: {s['spurious_units_before']} → {s['spurious_units_after']}. A class "
        "row says whether its explanation shows its object. Probe shifts of at least "
        f"{pct(s['probe_threshold'])} are listed.</p>"
        f'<div class="stats">{stats}</div>{table}</section>'
    )
