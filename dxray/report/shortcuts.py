"""The report's class-shortcut section: what each class relies on besides its object.

Per finding, the evidence a reviewer needs to believe it: the attribute's object-free images
with the class's centred logit under each, the same images of the vocabulary's other scenes
for contrast, and (with-object variant) the class's object on the attribute vs without it.
Contract: `shortcut_section(con, run_id, size)` reads the run's shortcut rows (the queries are
dxray/catalog/sql/report.sql) and returns the escaped HTML <section>, or "" when the run has no
shortcut test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from dxray.report.markup import esc, fmt
from dxray.report.queries import queries, query_rows
from dxray.report.thumbnails import data_uri, thumbnail
from dxray.shortcuts.render import PRESENT
from dxray.text import MISSING

SHOWN = 6  # images per strip


def _z(logits: Sequence[float], class_index: int) -> float:
    """The class's centred logit: its logit minus the mean over classes."""
    return logits[class_index] - sum(logits) / len(logits)


def strip(
    renders: Sequence[Mapping], pngs: Mapping[str, bytes], c: int, size: int, shown: int = SHOWN
) -> str:
    """Up to `shown` renders as thumbnails, each with class `c`'s centred logit."""
    figures = []
    for r in renders[:shown]:
        png = pngs.get(r["render_id"])
        if png is None:
            continue
        uri = data_uri(thumbnail(png, None, size))
        label = r["scene"] + (f" + {r['overlay']}" if r["overlay"] else "")
        figures.append(
            f'<figure><img src="{uri}" width="{size}" height="{size}" alt="{esc(label)}">'
            f'<figcaption><div class="nums">z <b>{fmt(_z(r["logits"], c))}</b> · seed '
            f'{esc(r["seed"])}</div><div class="sub">{esc(label)}{_presence(r)}</div>'
            "</figcaption></figure>"
        )
    return f'<div class="seeds">{"".join(figures)}</div>' if figures else ""


def _presence(render: Mapping) -> str:
    """The segmenter's object presence on a render, so that a reader can see why an image with
    a blob in it counts as object-free (every class's object below the cut) or as the object's."""
    p = render.get("object_presence")
    if p is None:
        return ""
    if render["variant"] == "object_free":
        tip = f"the most present object, by the segmenter: under {PRESENT:g}, so no object"
    else:
        tip = "the presence of the class's object, by the segmenter"
    return f' · <span title="{esc(tip)}">object {fmt(p)}</span>'


def _explanation(explained: Mapping | None, pool: Mapping[str, Mapping], size: int) -> str:
    """The class's object-free explanation: its chosen pool images (objects erased), each with
    the class's z and the soft prompt's nearest words."""
    if not explained or not explained.get("chosen"):
        return ""
    c = explained["class_index"]
    figures = []
    for render_id in explained["chosen"][:SHOWN]:
        p = pool.get(render_id)
        if p is None or p["png"] is None:
            continue
        uri = data_uri(thumbnail(p["png"], None, size))
        words = " ".join(w[0] for w in json.loads(p["words"] or "[]") if w)
        figures.append(
            f'<figure><img src="{uri}" width="{size}" height="{size}" alt="pool image">'
            f'<figcaption><div class="nums">z <b>{fmt(_z(p["logits"], c))}</b></div>'
            f'<div class="words">{esc(words)}</div></figcaption></figure>'
        )
    if not figures:
        return ""
    leads = ", ".join(explained.get("candidates") or []) or "no attribute singled out"
    return (
        '<h4 class="sub">object-free explanation: the renders that drive the class most once '
        f"every object is erased (they show: {esc(leads)})</h4>"
        f'<div class="seeds">{"".join(figures)}</div>'
    )


def _interleaved(renders: Sequence[Mapping]) -> list[Mapping]:
    """One render of each scene in turn (a strip of "the other scenes" shows several)."""
    by_scene: dict[str, list[Mapping]] = {}
    for r in renders:
        by_scene.setdefault(r["scene"], []).append(r)
    rounds = max((len(v) for v in by_scene.values()), default=0)
    return [v[i] for i in range(rounds) for v in by_scene.values() if i < len(v)]


def _least_object_first(renders: Sequence[Mapping]) -> list[Mapping]:
    """Object-free renders, the least object first (a render the segmenter did not score
    last). Every kept render counts in the test alike; a strip shows only its first few, and
    those should be the ones in which a reader can see that no object is there."""

    def key(r: Mapping) -> float:
        p = r.get("object_presence")
        return float("inf") if p is None else p

    return sorted(renders, key=key)


def evidence(finding: Mapping, renders: Sequence[Mapping]) -> list[tuple[str, list[Mapping]]]:
    """(caption, renders) strips that show a finding. Object-free strips show the least object
    first (an overlay's: each scene's in turn); the strip of the same scenes and seeds without
    the overlay follows its pairs' order."""
    a, c = finding["attribute"], finding["class_index"]
    free = _least_object_first([r for r in renders if r["variant"] == "object_free"])
    beside = [r for r in renders if r["variant"] == "with_object" and r["class_index"] == c]
    if finding["kind"] == "overlay":
        with_it = _interleaved([r for r in free if r["overlay"] == a])  # every scene in turn
        plain = {(r["scene"], r["seed"]): r for r in free if r["overlay"] is None}
        pairs = [(r, plain.get((r["scene"], r["seed"]))) for r in with_it]
        with_it = [r for r, other in pairs if other is not None]
        without = [other for _, other in pairs if other is not None]
        strips = [
            (f"with {a}, no object (least object first)", with_it),
            ("the same scenes and seeds without it", without),
        ]
        on = [r for r in beside if r["overlay"] == a]
        off = [r for r in beside if r["overlay"] is None]
    else:
        strips = [
            (
                f"{a}, no object (least object first)",
                [r for r in free if r["scene"] == a and r["overlay"] is None],
            ),
            (
                "the other scenes",
                _interleaved([r for r in free if r["scene"] != a and r["overlay"] is None]),
            ),
        ]
        on = [r for r in beside if r["scene"] == a and r["overlay"] is None]
        off = _interleaved([r for r in beside if r["scene"] != a and r["overlay"] is None])
    if on:
        strips += [(f"beside the object: on {a}", on), ("beside the object: without it", off)]
    return strips


def shortcut_section(con, run_id: str, size: int) -> str:
    """The section's HTML, or "" when the run has no shortcut test."""
    q = queries()
    rows = query_rows(con, q["shortcuts"], run_id)
    skipped = query_rows(con, q["shortcut_skipped"], run_id)
    if not rows and not skipped:
        return ""
    findings = [r for r in rows if r["finding"]]
    renders = query_rows(con, q["shortcut_renders"], run_id)
    strips = {(f["class_index"], f["attribute"]): evidence(f, renders) for f in findings}
    wanted = sorted({r["render_id"] for s in strips.values() for _, rs in s for r in rs[:SHOWN]})
    pngs = {
        p["render_id"]: p["png"]
        for p in con.sql(q["shortcut_pngs"], params={"run_id": run_id, "ids": wanted})
        .to_arrow_table()
        .to_pylist()
    }
    table = "".join(
        f"<tr><td><b>{esc(r['class_name'])}</b></td><td>{esc(r['attribute'])}</td>"
        f"<td><b>{fmt(r['lift'])}</b> <span class='sub'>[{fmt(r['low'])}, "
        f"{fmt(r['high'])}]</span></td><td>{esc(r['images'])}</td>"
        f"<td>{fmt(r['with_object_lift'])}</td>"
        f"<td>{esc(r['object_in_explanation'] or MISSING)}</td></tr>"
        for r in findings
    )
    table = (
        '<table class="list"><thead><tr><th>class</th><th>relies on</th>'
        "<th>lift [95% CI], nats</th><th>images</th><th>beside the object</th>"
        f"<th>object in its explanation</th></tr></thead><tbody>{table}</tbody></table>"
        if findings
        else '<p class="empty">No class fires on an attribute of the vocabulary without its '
        "object.</p>"
    )
    explained = {e["class_index"]: e for e in query_rows(con, q["shortcut_explanations"], run_id)}
    shown = {f["class_index"] for f in findings} | {
        c for c, e in explained.items() if e["candidates"]
    }
    pool_ids = sorted({i for c in shown for i in (explained.get(c) or {}).get("chosen") or []})
    pool = {
        p["render_id"]: p
        for p in con.sql(q["shortcut_pool_pngs"], params={"run_id": run_id, "ids": pool_ids})
        .to_arrow_table()
        .to_pylist()
    }
    cards = []
    for f in findings:
        parts = "".join(
            f'<h4 class="sub">{esc(caption)}</h4>{strip(rs, pngs, f["class_index"], size)}'
            for caption, rs in strips[(f["class_index"], f["attribute"])]
            if rs
        ) + _explanation(explained.get(f["class_index"]), pool, size)
        cards.append(
            f'<article class="target spurious"><div class="info"><h4>{esc(f["class_name"])} '
            f'← {esc(f["attribute"])}</h4><div class="nums">lift <b>{fmt(f["lift"])}</b> '
            f"nats [{fmt(f['low'])}, {fmt(f['high'])}] on {esc(f['images'])} "
            f"{'pairs' if f['kind'] == 'overlay' else 'images'}</div>"
            f'<div class="sub">{esc(f["rendered"])} rendered, {esc(f["dropped_object"])} '
            f"dropped for an object, {esc(f['dropped_attribute'])} for a missing attribute</div>"
            f"</div><div>{parts}</div></article>"
        )
    leads = [
        (e, a)
        for c, e in sorted(explained.items())
        for a in e["candidates"] or []
        if not any(f["class_index"] == c and f["attribute"] == a for f in findings)
    ]
    if leads:
        cards.append(
            "<h3>Leads, not findings: what the object-free explanations singled out and the "
            "test did not confirm</h3>"
            + "".join(
                f'<article class="target uncertain"><div class="info"><h4>'
                f'{esc(e["class_name"])} ← {esc(a)}?</h4><div class="sub">singled out by '
                "the class's object-free explanation; its counterfactual lift is under the "
                f"finding rule</div></div><div>{_explanation(e, pool, size)}</div></article>"
                for e, a in leads
            )
        )
    notes = "".join(
        f"<li><b>{esc(s['attribute'])}</b>: {esc(s['note'])}</li>" for s in skipped
    ) + "".join(
        f"<li><b>{esc(r['attribute'])}</b>: {esc(r['note'])}</li>"
        for r in {r["attribute"]: r for r in rows if r["note"]}.values()
    )
    return (
        '<section id="shortcuts"><h2>Class shortcuts: the evidence</h2>'
        '<p class="note">Does a class fire on an attribute <em>without its object</em>? Each '
        "attribute is rendered from text with no object; an image counts when the segmenter "
        "finds no class's object in it and finds the attribute. z is the class's centred "
        "logit (logit minus the mean over classes); the lift compares the attribute's images "
        "with the vocabulary's average scene (overlays: with vs without, same seed). A finding "
        "needs a lift of at least 1 nat with its 95% interval above 0.</p>"
        f"{table}{''.join(cards)}"
        + (f'<h3>Vocabulary notes</h3><ul class="sub">{notes}</ul>' if notes else "")
        + "</section>"
    )
