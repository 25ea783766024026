"""The report's per-target sections: the galleries (classes, hidden units) and the probe table.

Contract: pure functions of rows already read from dxray/catalog/sql/report.sql (targets, their seeds,
stored images keyed by (target_id, seed), probe rates keyed by target_id); each returns an
escaped HTML <section>, or "" when there is nothing to show. Images are inlined as data URIs.
"""

from __future__ import annotations

import json

from dxray.report.markup import badge, esc, fmt, pct, probability
from dxray.report.thumbnails import data_uri, thumbnail
from dxray.text import MISSING


def _words(words_json: str | None, limit: int = 4) -> tuple[str, str]:
    """(short, full) readable forms of the nearest-words JSON: the first word of each vector,
    and every word with its cosine."""
    if not words_json:
        return "", ""
    try:
        vectors = json.loads(words_json)
    except json.JSONDecodeError:
        return words_json[:40], words_json
    short, full = [], []
    for vector in vectors:
        pairs = vector if vector and isinstance(vector[0], list | tuple) else [vector]
        pairs = [p for p in pairs if p]
        if not pairs:
            continue
        short.append(str(pairs[0][0]))
        full.append(", ".join(f"{p[0]} {p[1]:.2f}" if len(p) > 1 else str(p[0]) for p in pairs))
    return " ".join(short[:limit]) + (" …" if len(short) > limit else ""), " | ".join(full)


def target_name(t: dict) -> str:
    """A target's readable name: the class, or the unit as "layer:channel"."""
    if t["kind"] == "class":
        return t["class_name"] or t["target_id"]
    return f"{t['layer']}:{t['channel']}"


def _target_label(t: dict) -> tuple[str, str]:
    """(title, subtitle) of a target."""
    if t["kind"] == "class":
        return target_name(t), f"class {t['class_index']}"
    ranked = f" · a top unit of {t['class_name']}" if t.get("class_name") else ""
    return target_name(t), f"unit{ranked}"


def _target_badge(t: dict) -> str:
    """A unit's verdict, or whether a class's explanation shows its object."""
    if t["kind"] == "class":
        return badge(t.get("object_in_explanation"))
    return badge(t.get("verdict"))


def _kept(kept: float | None, before: float | None, after: float | None) -> str:
    """ "kept 82% (3.10 → 2.54)": a unit's activation on its image and without the objects."""
    if before is None:
        return "kept " + MISSING
    return f"kept <b>{pct(kept)}</b> ({fmt(before)} → {fmt(after)})"


def _seed_figure(seed: dict, image: dict | None, size: int, unit: bool) -> str:
    mark_of = {"core": "shown", "spurious": "absent", "uncertain": "unclear"}
    verdict = seed["verdict"] if seed["ok"] else None
    if not unit and verdict is not None:
        verdict = mark_of.get(verdict, verdict)
    short, full = _words(seed["words"])
    if image is not None:
        uri = data_uri(thumbnail(image["png"], image["mask_png"], size))
        picture = f'<img src="{uri}" width="{size}" height="{size}" alt="seed {esc(seed["seed"])}">'
    else:
        reason = seed["error"] or (
            "diverged (NaN)" if seed["status"] == "nan" else seed["status"] or "no image stored"
        )
        picture = (
            f'<div class="noimg" style="width:{size}px;height:{size}px" title="{esc(reason)}">'
            f"<b>{esc(seed['status'])}</b><span>{esc(str(reason)[:80])}</span></div>"
        )
    tone = verdict or ("failed" if not seed["ok"] else "none")
    mark = badge(verdict) if seed["ok"] else '<span class="badge failed">failed</span>'
    retried = f" · {seed['attempts']} tries" if seed["attempts"] > 1 else ""
    if unit and seed.get("judged_by") == "intervention":
        nums = _kept(seed["kept"], seed["activation"], seed["activation_without_objects"])
    else:
        nums = f"object <b>{fmt(seed['presence'])}</b>{probability(seed['probability'])}"
    return (
        f'<figure class="{tone}">{picture}<figcaption>'
        f'<div class="row">seed {esc(seed["seed"])} {mark}</div>'
        f'<div class="nums">{nums}{esc(retried)}</div>'
        f'<div class="words" title="{esc(full)}">{esc(short) or "&nbsp;"}</div>'
        "</figcaption></figure>"
    )


def _card(t: dict, figures: str, lines: list[str]) -> str:
    name, subtitle = _target_label(t)
    top = [p for p in (t["top_probes"] or []) if p["rate"] > 0]
    chips = "".join(
        f'<span class="chip">{esc(p["probe"])} <b>{pct(p["rate"])}</b></span>' for p in top
    )
    tone = t["verdict"] if t["kind"] == "unit" else t.get("object_in_explanation")
    return (
        f'<article class="target {esc(tone or "none")}" data-target="{esc(t["target_id"])}">'
        f'<div class="info"><h4>{esc(name)}</h4><div class="sub">{esc(subtitle)}</div>'
        + "".join(lines)
        + f'<div class="chips">{chips}</div></div><div class="seeds">{figures}</div></article>'
    )


def _figures(t: dict, seeds, images, size: int) -> str:
    unit = t["kind"] == "unit"
    return "".join(
        _seed_figure(s, images.get((t["target_id"], s["seed"])), size, unit)
        for s in seeds.get(t["target_id"], [])
    )


def unit_gallery(
    units: list[dict],
    seeds: dict[str, list[dict]],
    images: dict[tuple[str, int], dict],
    keep: float,
    size: int,
) -> str:
    """One card per unit, shown by what decided its verdict: the unit-shortcut test's
    responses (an attribute without any object vs its class's object) where it judged the
    unit, and the intervention's: its activation on its image and once the objects are
    removed, and the share kept against the threshold."""
    if not units:
        return ""
    cards = []
    for t in units:
        failed = f" · {t['failed']} failed" if t["failed"] else ""
        cards.append(
            _card(
                t,
                _figures(t, seeds, images, size),
                [
                    f'<div class="row">{_target_badge(t)}<span class="sub">'
                    f"{esc(_judged_by(t))}{esc(failed)}</span></div>",
                    *_unit_test_line(t),
                    '<div class="nums">explanation: activation '
                    f"<b>{fmt(t['mean_activation'])}</b> → <b>"
                    f"{fmt(t['mean_activation_without_objects'])}</b> without the objects · "
                    f"kept <b>{pct(t['mean_kept'])}</b> (spurious at ≥ {pct(keep)}; "
                    f"{esc(t['n_spurious'])} of {esc(t['judged'])} seeds)</div>",
                ],
            )
        )
    spurious = sum(1 for t in units if t["verdict"] == "spurious")
    tested = sum(1 for t in units if t.get("judged_by") == "unit test")
    how = (
        f"{tested} of them were judged by the unit-shortcut test: spurious when an attribute "
        "rendered with no object drives the unit more than its class's object does (the "
        "margin's interval above 0). "
        if tested
        else ""
    )
    return (
        '<section id="units"><h2>Hidden units</h2><p class="note">'
        f"{spurious} of {len(units)} units are spurious. {how}Each unit's explanation image "
        "maximises the unit; the objects are then cut out of it and the unit measured again "
        f"(the intervention: spurious when it keeps at least {pct(keep)}, which decides the "
        "units the test did not read).</p>"
        f"{''.join(cards)}</section>"
    )


def _judged_by(t: dict) -> str:
    if t.get("judged_by") == "unit test":
        return f"by the unit test (intervention: {t.get('intervention_verdict') or MISSING})"
    return f"by intervention: spurious in {t['n_spurious']} of {t['judged']} seeds"


def _unit_test_line(t: dict) -> list[str]:
    if t.get("judged_by") != "unit test":
        return []
    return [
        f'<div class="nums">unit test: <b>{fmt(t.get("factor_response"))}</b> on '
        f"{esc(t.get('unit_factor'))} with no object vs <b>{fmt(t.get('object_response'))}"
        f"</b> on the {esc(t.get('class_name'))} (margin {fmt(t.get('unit_low'))} to "
        f"{fmt(t.get('unit_high'))})</div>"
    ]


def class_gallery(
    classes: list[dict],
    counts: dict,
    seeds: dict[str, list[dict]],
    images: dict[tuple[str, int], dict],
    limits,
    size: int,
) -> str:
    """One card per class: the images optimised for the class and whether they show its
    object. Not a shortcut verdict (see the note on the page)."""
    if not classes:
        return ""
    cards = []
    for t in classes:
        failed = f" · {t['failed']} failed" if t["failed"] else ""
        cards.append(
            _card(
                t,
                _figures(t, seeds, images, size),
                [
                    f'<div class="row">{_target_badge(t)}<span class="sub">object in '
                    f"{esc(t['n_core'])} of {esc(t['judged'])} seeds{esc(failed)}</span></div>",
                    f'<div class="nums">object <b>{fmt(t["mean_presence"])}</b>'
                    f"{probability(t['mean_probability'], 'mean p')}</div>",
                    f'<div class="sub">query “{esc(t["object_query"])}”</div>',
                ],
            )
        )
    return (
        '<section id="classes"><h2>Class explanations</h2><p class="note">The image optimised '
        "for each class, and whether the segmenter finds the class's object in it (shown at "
        f"presence ≥ {limits.core:g}, absent at ≤ {limits.spurious:g}): "
        f"{counts['object_shown_classes']} of {counts['judged_classes']} show it. An "
        "explanation that paints the object can still hide a shortcut, which adds little beside "
        "the object: what a class relies on is the class-shortcut test's answer, at the top."
        f"</p>{''.join(cards)}</section>"
    )


def probe_table(targets: list[dict], probes: dict[str, list[dict]]) -> str:
    """Targets x attribute probes: the share of each target's images where the probe is found."""
    names = sorted({p["probe"] for rows in probes.values() for p in rows})
    shown = [t for t in targets if t["target_id"] in probes]
    if not names or not shown:
        return ""
    shown.sort(key=lambda t: (t["kind"] != "class", t["class_index"] or 0, t["target_id"]))
    head = "".join(f"<th>{esc(n)}</th>" for n in names)
    rows = []
    for t in shown:
        rates = {p["probe"]: p for p in probes[t["target_id"]]}
        cells = []
        for n in names:
            p = rates.get(n)
            if p is None:
                cells.append(f'<td class="heat">{MISSING}</td>')
                continue
            if p["rate"] > 0:
                style = (
                    f'class="heat" style="background:rgba(207,34,46,{0.08 + 0.6 * p["rate"]:.2f})"'
                )
            else:
                style = 'class="heat zero"'
            cells.append(
                f"<td {style} "
                f'title="mean presence {p["mean_presence"]:.2f} over {p["images"]} images">'
                f"{pct(p['rate'])}</td>"
            )
        rows.append(
            f"<tr><td><b>{esc(target_name(t))}</b> <span class='sub'>{esc(t['target_id'])}"
            f"</span></td><td>{_target_badge(t)}</td>{''.join(cells)}</tr>"
        )
    return (
        '<section id="probes"><h2>Attribute probes</h2>'
        '<p class="note">Share of a target\'s explanation images in which the segmenter finds '
        "the attribute (presence ≥ 0.5): what the explanations show beside (or instead of) "
        "the object. A rate is a description of the images, not a finding.</p>"
        f'<table class="list probes"><thead><tr><th>target</th><th>unit verdict / object</th>'
        f"{head}</tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table></section>"
    )
