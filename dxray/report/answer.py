"""The report's first screen: what the classifier relies on, from the tests that decide it.

Contract: `answer_section(con, run_id, answer)` returns the escaped HTML <section id="answer">:
figures, then one card per class-shortcut finding (its plain sentence, lift and interval, the
odds factor, the number of images, a strip of the attribute's object-free images, and how the
finding relates to the class's own explanation), then the spurious units, then the leads the
test did not confirm, apart. The words and sentences are `dxray.catalog.findings`' (the
terminal and the release gate use the same).
"""

from __future__ import annotations

from dxray.catalog.findings import Answer, nats
from dxray.report.markup import esc, fmt, pct, stat
from dxray.report.queries import queries, query_rows
from dxray.report.shortcuts import evidence, strip

STRIP = 6  # object-free images per finding on the first screen
STRIP_SIZE = 76  # their side in pixels


def _finding_strips(con, run_id: str, answer: Answer) -> dict[tuple[int, str], str]:
    """Each finding's strip of object-free images (the attribute, no object), as HTML."""
    if not answer.findings:
        return {}
    q = queries()
    renders = query_rows(con, q["shortcut_renders"], run_id)
    chosen = {}
    for f in answer.findings:
        row = {"attribute": f.attribute, "class_index": f.class_index, "kind": f.kind}
        strips = evidence(row, renders)
        chosen[(f.class_index, f.attribute)] = strips[0][1][:STRIP] if strips else []
    wanted = sorted({r["render_id"] for rs in chosen.values() for r in rs})
    pngs = {
        p["render_id"]: p["png"]
        for p in con.sql(q["shortcut_pngs"], params={"run_id": run_id, "ids": wanted})
        .to_arrow_table()
        .to_pylist()
    }
    return {key: strip(rs, pngs, key[0], STRIP_SIZE, STRIP) for key, rs in chosen.items() if rs}


def _figures(answer: Answer) -> str:
    tested = answer.shortcut_tested
    return "".join(
        [
            stat(
                "shortcut_classes",
                f"{answer.classes_with_shortcuts} of {answer.classes}" if tested else "–",
                "classes rely on a shortcut",
                f"{len(answer.findings)} findings · {answer.attributes} attributes tested"
                if tested
                else "shortcut test not run",
                "bad" if answer.findings else ("good" if tested else ""),
            ),
            stat(
                "spurious_units",
                f"{len(answer.spurious_units)} of {answer.units}",
                "spurious units",
                "driven more by an attribute than by their object"
                if answer.unit_test
                else f"keep ≥ {pct(answer.keep)} without the objects",
                "bad" if answer.spurious_units else ("good" if answer.units else ""),
            ),
            stat("leads", len(answer.leads), "unconfirmed leads", "not findings"),
            stat(
                "failed_seeds",
                answer.failed_seeds,
                "failed seeds",
                "error or NaN",
                "warn" if answer.failed_seeds else "",
            ),
        ]
    )


def _strip_caption(f) -> str:
    shows = (
        f"{f.attribute} added, no object" if f.kind == "overlay" else f"{f.attribute}, no object"
    )
    tip = "every kept image counts in the test; these are the ones with the least object"
    return (
        f'<div class="sub strip-caption">{esc(shows)} · <span title="{esc(tip)}">least object '
        "first</span></div>"
    )


def _findings(answer: Answer, strips: dict[tuple[int, str], str]) -> str:
    if not answer.shortcut_tested:
        return (
            '<p class="empty">This run has no class-shortcut test: set <code>shortcuts.enabled: '
            "true</code> in the spec and rerun the audit (finished targets are kept).</p>"
        )
    if not answer.findings:
        return (
            f'<p class="verdict good">No class relies on any of the {answer.attributes} '
            "attributes tested without its object.</p>"
        )
    cards = []
    for f in answer.findings:
        unit = "pairs" if f.kind == "overlay" else "images"
        also = " · also singled out by its object-free explanation" if f.singled_out else ""
        relation = f.relation()
        cards.append(
            f'<li class="finding" data-finding="{esc(f.label)}"><div class="what">'
            f"<h4>{esc(f.class_name)} ← {esc(f.attribute)}</h4>"
            f'<p class="sentence">{esc(f.sentence())}.</p>'
            f'<div class="nums">lift <b>{fmt(f.lift)}</b> nats [{fmt(f.low)}, {fmt(f.high)}]'
            f" · odds <b>×{esc(f.odds.removesuffix('x'))}</b> · {esc(f.images)} {unit}"
            f"{esc(also)}</div>"
            + (f'<p class="sub relation">{esc(relation)}</p>' if relation else "")
            + f"</div><div>{_strip_caption(f)}{strips.get((f.class_index, f.attribute), '')}"
            "</div></li>"
        )
    return f'<ol class="findings">{"".join(cards)}</ol>'


def _units(answer: Answer) -> str:
    if not answer.units:
        return ""
    if not answer.spurious_units:
        why = (
            "no attribute rendered without any object drives one of them more than its class's "
            "object (the unit-shortcut test)"
            if answer.unit_test
            else f"each keeps less than {pct(answer.keep)} of its activation once the objects "
            "are removed from its image"
        )
        body = (
            f'<p class="verdict good">None of the {answer.units} audited units is spurious: '
            f'{why} (<a href="#units">the units</a>).</p>'
        )
    else:
        body = (
            '<ul class="units">'
            + "".join(
                f'<li data-unit="{esc(u.name)}">{esc(u.sentence())}.</li>'
                for u in answer.spurious_units
            )
            + "</ul>"
        )
    return f"<h3>Spurious units</h3>{body}"


def _leads(answer: Answer) -> str:
    if not answer.leads:
        return ""
    items = "".join(
        f"<li>{esc(lead.sentence()).replace(' &lt;- ', ' ← ')}.</li>" for lead in answer.leads
    )
    return (
        '<div class="leads"><h3>Leads, not findings</h3><p class="sub">What the classes\' '
        "object-free explanations singled out and the counterfactual test did not confirm: "
        f"worth a look, not evidence.</p><ul>{items}</ul></div>"
    )


def answer_section(con, run_id: str, answer: Answer) -> str:
    """The first section of the report (see the module docstring)."""
    note = (
        "A class relies on a shortcut when its score rises on an attribute rendered with "
        "<em>no</em> object of any class (the class-shortcut test: a lift of at least "
        f"{nats(answer.min_lift)} of centred logit, "
        "over the tested scenes' average, with its interval above 0). Odds: e<sup>lift</sup>, "
        "how many times likelier the class becomes."
    )
    return (
        '<section id="answer"><h2>What this classifier relies on</h2>'
        f'<div class="stats">{_figures(answer)}</div>'
        f'<p class="note">{note}</p>'
        f"{_findings(answer, _finding_strips(con, run_id, answer))}"
        f"{_units(answer)}{_leads(answer)}</section>"
    )
