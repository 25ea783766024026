"""The report's per-target sections: the galleries (classes, hidden units) and the probe table.

Contract: pure functions of rows already read from catalogs/report.sql (targets, their seeds,
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


def _target_label(t: dict) -> tuple[str, str]:
    """(title, subtitle) of a target."""
    if t["kind"] == "class":
        return t["class_name"] or t["target_id"], f"class {t['class_index']} · {t['objective']}"
    title = f"{t['layer']}:{t['channel']}"
    ranked = f" · ranked for {t['class_name']}" if t.get("class_name") else ""
    return title, f"unit{ranked} · {t['objective']}"


def _seed_figure(seed: dict, image: dict | None, size: int) -> str:
    verdict = seed["verdict"] if seed["ok"] else None
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
    return (
        f'<figure class="{tone}">{picture}<figcaption>'
        f'<div class="row">seed {esc(seed["seed"])} {mark}</div>'
        f'<div class="nums">presence <b>{fmt(seed["presence"])}</b>'
        f"{probability(seed['probability'])}"
        f"{esc(retried)}</div>"
        f'<div class="words" title="{esc(full)}">{esc(short) or "&nbsp;"}</div>'
        "</figcaption></figure>"
    )


def gallery(
    title: str,
    anchor: str,
    targets: list[dict],
    seeds: dict[str, list[dict]],
    images: dict[tuple[str, int], dict],
    probes: dict[str, list[dict]],
    size: int,
) -> str:
    """One card per target: its verdict and figures, and a thumbnail (or the failure) per seed."""
    if not targets:
        return ""
    cards = []
    for t in targets:
        name, subtitle = _target_label(t)
        top = [p for p in (t["top_probes"] or []) if p["rate"] > 0]
        chips = "".join(
            f'<span class="chip">{esc(p["probe"])} <b>{pct(p["rate"])}</b></span>' for p in top
        )
        figures = "".join(
            _seed_figure(s, images.get((t["target_id"], s["seed"])), size)
            for s in seeds.get(t["target_id"], [])
        )
        failed = f" · {t['failed']} failed" if t["failed"] else ""
        cards.append(
            f'<article class="target {esc(t["verdict"] or "none")}">'
            f'<div class="info"><h4>{esc(name)}</h4><div class="sub">{esc(subtitle)}</div>'
            f'<div class="row">{badge(t["verdict"])}'
            f'<span class="sub">spurious {pct(t["spurious_fraction"])} '
            f"of {esc(t['judged'])} judged{esc(failed)}</span></div>"
            f'<div class="nums">presence <b>{fmt(t["mean_presence"])}</b>'
            f"{probability(t['mean_probability'], 'mean p')}</div>"
            f'<div class="sub">query “{esc(t["object_query"])}”</div>'
            f'<div class="chips">{chips}</div></div>'
            f'<div class="seeds">{figures}</div></article>'
        )
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{"".join(cards)}</section>'


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
        name, _ = _target_label(t)
        rows.append(
            f"<tr><td><b>{esc(name)}</b> <span class='sub'>{esc(t['target_id'])}</span></td>"
            f"<td>{badge(t['verdict'])}</td>{''.join(cells)}</tr>"
        )
    return (
        '<section id="probes"><h2>Attribute probes</h2>'
        '<p class="note">Share of a target\'s explanation images in which the segmenter finds '
        "the attribute (presence ≥ 0.5). A high rate on a spurious class names what the "
        "classifier looks at instead of the object.</p>"
        f'<table class="list probes"><thead><tr><th>target</th><th>verdict</th>{head}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table></section>"
    )
