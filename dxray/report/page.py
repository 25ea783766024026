"""The bias report: one self-contained HTML file per audit run.

Everything is inline (CSS, and images as base64 PNG data URIs: one thumbnail per stored
explanation image, with the segmenter's object mask drawn on it as an outline), so the file
can be mailed, attached to a review or opened offline; it needs no JavaScript. Every string
that comes from the catalog goes through `html.escape`: class names, words and error texts
are data, never markup. The queries are catalogs/report.sql.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image, ImageChops, ImageFilter

from dxray.catalog.diff import RunDiff, diff_runs
from dxray.catalog.views import connect, named_queries

THUMB = 120  # thumbnail side in pixels
MASK_COLOUR = (255, 214, 0)  # the object outline: yellow reads on water, grass and skin


def esc(value) -> str:
    """Escaped text of any value (None -> "")."""
    return "" if value is None else html.escape(str(value), quote=True)


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _p(probability, label: str = "p") -> str:
    """ " · p 0.85", or nothing for targets without a class probability (units)."""
    return "" if probability is None else f" · {label} <b>{_fmt(probability)}</b>"


def _badge(verdict: str | None, text: str | None = None) -> str:
    kind = verdict if verdict in ("core", "spurious", "uncertain") else "none"
    label = text if text is not None else (verdict or "no verdict")
    return f'<span class="badge {kind}">{esc(label)}</span>'


# -- images -------------------------------------------------------------------------------


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail(png: bytes, mask_png: bytes | None, size: int = THUMB) -> Image.Image:
    """The explanation image at `size` x `size`, with the outline of its object mask
    (mask >= 0.5) drawn in MASK_COLOUR and the object lightly tinted."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    resample = Image.Resampling.LANCZOS if min(image.size) >= size else Image.Resampling.BICUBIC
    image = image.resize((size, size), resample)
    if not mask_png:
        return image
    mask = Image.open(io.BytesIO(mask_png))
    mask = mask.getchannel("A") if mask.mode in ("RGBA", "LA") else mask.convert("L")
    mask = mask.resize((size, size), Image.Resampling.BILINEAR).point(lambda v: 255 * (v >= 128))
    if not mask.getbbox():
        return image
    edge = ImageChops.subtract(mask, mask.filter(ImageFilter.MinFilter(3)))
    edge = edge.filter(ImageFilter.MaxFilter(3))  # a 2-3 px line
    colour = Image.new("RGB", image.size, MASK_COLOUR)
    tinted = Image.blend(image, colour, 0.18)
    image = Image.composite(tinted, image, mask)
    return Image.composite(colour, image, edge)


# -- data ---------------------------------------------------------------------------------


def _rows(con, query: str, run_id: str | None = None) -> list[dict]:
    params = {"run_id": run_id} if "$run_id" in query else None
    return con.sql(query, params=params).to_arrow_table().to_pylist()


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


# -- sections -----------------------------------------------------------------------------


def _header(run: dict, run_id: str, counts: dict) -> str:
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
    cells = "".join(f"<div><dt>{k}</dt><dd>{v or '–'}</dd></div>" for k, v in meta)
    error = f'<p class="run-error">{esc(run["error"])}</p>' if run.get("error") else ""
    return (
        f'<header><div class="eyebrow">dxray audit report</div>'
        f'<h1>{esc(name)} <span class="status {esc(status)}">{esc(status)}</span></h1>'
        f'<dl class="meta">{cells}</dl>{error}</header>'
    )


def _legend() -> str:
    return (
        '<div class="legend">'
        f"{_badge('core')} the class's object is in the image"
        f"{_badge('spurious')} high score without the object"
        f"{_badge('uncertain')} partial or doubtful"
        '<span class="badge failed">failed</span> error or diverged'
        '<span class="swatch"></span> segmenter object outline'
        "</div>"
    )


def _stat(key: str, value, label: str, note: str = "", tone: str = "") -> str:
    return (
        f'<div class="stat {tone}"><b data-stat="{esc(key)}">{esc(value)}</b>'
        f"<span>{esc(label)}</span><small>{esc(note)}</small></div>"
    )


def _summary(counts: dict, targets: list[dict], probes: dict[str, list[dict]]) -> str:
    judged = counts["judged_classes"]
    share = counts["spurious_classes"] / judged if judged else None
    stats = "".join(
        [
            _stat("classes", counts["classes"], "classes audited", f"{judged} with a verdict"),
            _stat(
                "spurious_pct",
                _pct(share),
                "spurious classes",
                f"{counts['spurious_classes']} of {judged}",
                "bad" if counts["spurious_classes"] else "",
            ),
            _stat("core_classes", counts["core_classes"], "core classes", "object present"),
            _stat("uncertain_classes", counts["uncertain_classes"], "uncertain", "need a look"),
            _stat(
                "units", counts["units"], "units audited", f"{counts['spurious_units']} spurious"
            ),
            _stat(
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
                f'<span class="chip">{esc(p["probe"])} <b>{_pct(p["rate"])}</b></span>'
                for p in top
                if p["rate"] > 0
            )
            fraction = t["spurious_fraction"]
            rows.append(
                f"<tr><td><b>{esc(t['class_name'] or t['target_id'])}</b>"
                f'<div class="sub">class {esc(t["class_index"])}</div></td>'
                f"<td>{_badge(t['verdict'])}</td>"
                f'<td><div class="bar"><i style="width:{100 * fraction:.0f}%"></i></div>'
                f"{_pct(fraction)} <span class='sub'>({t['n_spurious']}/{t['judged']})</span></td>"
                f"<td>{_fmt(t['mean_probability'])}</td><td>{chips or '–'}</td></tr>"
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


def _seed_figure(seed: dict, image: dict | None, size: int) -> str:
    verdict = seed["verdict"] if seed["ok"] else None
    short, full = _words(seed["words"])
    if image is not None:
        uri = _data_uri(thumbnail(image["png"], image["mask_png"], size))
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
    badge = _badge(verdict) if seed["ok"] else '<span class="badge failed">failed</span>'
    retried = f" · {seed['attempts']} tries" if seed["attempts"] > 1 else ""
    return (
        f'<figure class="{tone}">{picture}<figcaption>'
        f'<div class="row">seed {esc(seed["seed"])} {badge}</div>'
        f'<div class="nums">presence <b>{_fmt(seed["presence"])}</b>{_p(seed["probability"])}'
        f"{esc(retried)}</div>"
        f'<div class="words" title="{esc(full)}">{esc(short) or "&nbsp;"}</div>'
        "</figcaption></figure>"
    )


def _gallery(
    title: str,
    anchor: str,
    targets: list[dict],
    seeds: dict[str, list[dict]],
    images: dict[tuple[str, int], dict],
    probes: dict[str, list[dict]],
    size: int,
) -> str:
    if not targets:
        return ""
    cards = []
    for t in targets:
        name, subtitle = _target_label(t)
        top = [p for p in (t["top_probes"] or []) if p["rate"] > 0]
        chips = "".join(
            f'<span class="chip">{esc(p["probe"])} <b>{_pct(p["rate"])}</b></span>' for p in top
        )
        figures = "".join(
            _seed_figure(s, images.get((t["target_id"], s["seed"])), size)
            for s in seeds.get(t["target_id"], [])
        )
        failed = f" · {t['failed']} failed" if t["failed"] else ""
        cards.append(
            f'<article class="target {esc(t["verdict"] or "none")}">'
            f'<div class="info"><h4>{esc(name)}</h4><div class="sub">{esc(subtitle)}</div>'
            f'<div class="row">{_badge(t["verdict"])}'
            f'<span class="sub">spurious {_pct(t["spurious_fraction"])} '
            f"of {esc(t['judged'])} judged{esc(failed)}</span></div>"
            f'<div class="nums">presence <b>{_fmt(t["mean_presence"])}</b>'
            f"{_p(t['mean_probability'], 'mean p')}</div>"
            f'<div class="sub">query “{esc(t["object_query"])}”</div>'
            f'<div class="chips">{chips}</div></div>'
            f'<div class="seeds">{figures}</div></article>'
        )
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{"".join(cards)}</section>'


def _probe_table(targets: list[dict], probes: dict[str, list[dict]]) -> str:
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
                cells.append('<td class="heat">–</td>')
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
                f"{_pct(p['rate'])}</td>"
            )
        name, _ = _target_label(t)
        rows.append(
            f"<tr><td><b>{esc(name)}</b> <span class='sub'>{esc(t['target_id'])}</span></td>"
            f"<td>{_badge(t['verdict'])}</td>{''.join(cells)}</tr>"
        )
    return (
        '<section id="probes"><h2>Attribute probes</h2>'
        '<p class="note">Share of a target\'s explanation images in which the segmenter finds '
        "the attribute (presence ≥ 0.5). A high rate on a spurious class names what the "
        "classifier looks at instead of the object.</p>"
        f'<table class="list probes"><thead><tr><th>target</th><th>verdict</th>{head}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _diff_section(diff: RunDiff) -> str:
    s = diff.summary
    changes = s["changes"]
    stats = "".join(
        [
            _stat("diff_resolved", changes["resolved"], "resolved", "spurious → core", "good"),
            _stat(
                "diff_new_spurious",
                changes["new spurious"],
                "new spurious",
                "became spurious",
                "bad" if changes["new spurious"] else "",
            ),
            _stat("diff_changed", changes["changed"], "changed", "other moves"),
            _stat("diff_unchanged", changes["unchanged"], "unchanged", ""),
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
        name = r["class_name"] if r["kind"] == "class" else f"{r['layer']}:{r['channel']}"
        shift = r["probability_shift"]
        shifts = "".join(
            f'<span class="chip">{esc(p["probe"])} {_pct(p["before"])} → <b>{_pct(p["after"])}</b></span>'
            for p in (r["probe_shifts"] or [])
        )
        rows.append(
            f"<tr><td><b>{esc(name or r['target_id'])}</b> "
            f"<span class='sub'>{esc(r['target_id'])}</span></td>"
            f'<td><span class="change {esc(r["change"].replace(" ", "-"))}">{esc(r["change"])}</span></td>'
            f"<td>{_badge(r['verdict_before'])} → {_badge(r['verdict_after'])}</td>"
            f"<td>{'–' if shift is None else f'{shift:+.2f}'}</td><td>{shifts or '–'}</td></tr>"
        )
    table = (
        '<table class="list"><thead><tr><th>target</th><th>change</th><th>verdict</th>'
        "<th>Δ mean p</th><th>probe rate shifts</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="empty">No verdict changed.</p>'
    )
    shortcut_rows = diff.shortcuts.to_pylist() if diff.shortcuts is not None else []
    if shortcut_rows:
        lifts = "".join(
            f"<tr><td><b>{esc(r['class_name'])}</b> ← {esc(r['attribute'])}</td>"
            f'<td><span class="change {"new-spurious" if r["change"] == "appeared" else "resolved" if r["change"] == "vanished" else "changed"}">'
            f"{esc(r['change'])}</span></td><td>{_fmt(r['lift_before'])} → "
            f"<b>{_fmt(r['lift_after'])}</b></td></tr>"
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
        f"{esc((after.get('classifier_sha256') or '')[:12])}</code>). Spurious classes: "
        f"{s['spurious_classes_before']} → {s['spurious_classes_after']}. Probe shifts of at "
        f"least {_pct(s['probe_threshold'])} are listed.</p>"
        f'<div class="stats">{stats}</div>{table}</section>'
    )


# -- the page -----------------------------------------------------------------------------


def _evaluation(con, run_id: str) -> str:
    """The `dxray eval` section of a run, if it was evaluated (latest evaluation)."""
    from dxray.eval.report import html_section

    q = "SELECT * FROM {} WHERE run_id = $run_id"
    metrics = _rows(con, q.format("eval_metrics"), run_id)
    if not metrics:
        return ""
    neurons = _rows(con, q.format("eval_neurons") + " ORDER BY class_name, unit", run_id)
    classes = _rows(con, q.format("eval_classes"), run_id)
    return html_section(metrics, neurons, classes, metrics[0]["world"] or "")


def render_report(
    con, run_id: str | None = None, *, diff_from: str | None = None, thumb_size: int = THUMB
) -> str:
    """The report's HTML for `run_id` (default: the newest run with results) of a connected
    catalog; with `diff_from`, a section comparing that earlier run with this one."""
    q = named_queries("report.sql")
    if run_id is None:
        latest = _rows(con, q["latest_run"])
        if not latest:
            raise ValueError("the catalog has no results yet: nothing to report")
        run_id = latest[0]["run_id"]
    runs = _rows(con, q["run"], run_id)
    run = runs[0] if runs else {}
    targets = _rows(con, q["targets"], run_id)
    if not run and not targets:
        raise ValueError(f"run {run_id!r} is not in the catalog")
    counts = _rows(con, q["counts"], run_id)[0]
    seeds: dict[str, list[dict]] = {}
    for s in _rows(con, q["seeds"], run_id):
        seeds.setdefault(s["target_id"], []).append(s)
    images = {(i["target_id"], i["seed"]): i for i in _rows(con, q["images"], run_id)}
    probes: dict[str, list[dict]] = {}
    for p in _rows(con, q["probes"], run_id):
        probes.setdefault(p["target_id"], []).append(p)
    diff = diff_runs(con, diff_from, run_id) if diff_from else None
    evaluation = _evaluation(con, run_id)
    from dxray.catalog.report_shortcuts import shortcut_section

    shortcuts = shortcut_section(con, run_id, thumb_size)

    classes = [t for t in targets if t["kind"] == "class"]
    units = [t for t in targets if t["kind"] == "unit"]
    body = [
        _header(run, run_id, counts),
        _legend(),
        _summary(counts, targets, probes),
        _diff_section(diff) if diff else "",
        shortcuts,
        evaluation,
        _gallery("Classes", "classes", classes, seeds, images, probes, thumb_size),
        _gallery("Hidden units", "units", units, seeds, images, probes, thumb_size),
        _probe_table(targets, probes),
    ]
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"dxray · {run.get('name') or run_id}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        + "".join(body)
        + f"<footer>Generated {esc(made)} by dxray {esc(run.get('dxray_version') or '')}"
        " · class verdicts from the segmenter's object presence (core ≥ 0.5, spurious ≤ 0.2),"
        " unit verdicts by removing the objects (spurious if the unit keeps half its activation;"
        " the audit's judge.units) · "
        "images outlined where the object mask is ≥ 0.5</footer></main></body></html>\n"
    )


def write_report(
    root: str | os.PathLike,
    out_html: str | os.PathLike,
    run_id: str | None = None,
    *,
    diff_from: str | None = None,
    thumb_size: int = THUMB,
) -> Path:
    """Write the HTML report of one run of the catalog at `root` to `out_html`."""
    con = connect(root, read_only=True)
    try:
        page = render_report(con, run_id, diff_from=diff_from, thumb_size=thumb_size)
    finally:
        con.close()
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.tmp")
    temp.write_text(page, encoding="utf-8")
    os.replace(temp, out)
    return out


CSS = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d8dee4;--bg:#f6f8fa;
--core:#1a7f37;--core-bg:#dafbe1;--sp:#cf222e;--sp-bg:#ffebe9;--un:#57606a;--un-bg:#eaeef2;
--fail:#9a6700;--fail-bg:#fff8c5}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:var(--fg);
font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI","Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:28px 32px 48px}
h1{font-size:26px;margin:2px 0 14px;font-weight:650;letter-spacing:-.01em}
h2{font-size:18px;margin:34px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:14px;margin:20px 0 8px;color:var(--muted);font-weight:600}
h4{font-size:15px;margin:0 0 2px;word-break:break-word}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--bg);
padding:1px 4px;border-radius:4px}
.eyebrow{text-transform:uppercase;letter-spacing:.08em;font-size:11px;color:var(--muted);
font-weight:600}
.meta{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:8px 20px;
margin:0;padding:14px 16px;background:var(--bg);border:1px solid var(--line);border-radius:8px}
.meta dt{font-size:11px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.meta dd{margin:0;font-weight:500;word-break:break-all}
.status{font-size:12px;vertical-align:middle;padding:2px 8px;border-radius:20px;
background:var(--un-bg);color:var(--un);font-weight:600}
.status.finished{background:var(--core-bg);color:var(--core)}
.status.failed{background:var(--sp-bg);color:var(--sp)}
.run-error{color:var(--sp)}
.legend{display:flex;flex-wrap:wrap;align-items:center;gap:6px 14px;margin:14px 0 0;
font-size:12px;color:var(--muted)}
.legend .badge{margin-right:-8px}
.swatch{display:inline-block;width:14px;height:14px;border:2px solid rgb(255,214,0);
border-radius:3px;margin-right:-8px;vertical-align:-2px}
.badge{display:inline-block;font-size:11px;font-weight:600;line-height:18px;padding:0 7px;
border-radius:9px;white-space:nowrap;border:1px solid transparent}
.badge.core{background:var(--core-bg);color:var(--core);border-color:#aceebb}
.badge.spurious{background:var(--sp-bg);color:var(--sp);border-color:#ffcecb}
.badge.uncertain{background:var(--un-bg);color:var(--un);border-color:#d0d7de}
.badge.none{background:#fff;color:var(--muted);border-color:var(--line)}
.badge.failed{background:var(--fail-bg);color:var(--fail);border-color:#eed888}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:10px}
.stat{border:1px solid var(--line);border-radius:8px;padding:10px 14px}
.stat b{display:block;font-size:24px;font-weight:650;line-height:1.2}
.stat span{display:block;font-weight:600}
.stat small{color:var(--muted)}
.stat.bad b{color:var(--sp)}.stat.good b{color:var(--core)}.stat.warn b{color:var(--fail)}
table.list{border-collapse:collapse;width:100%;font-size:13px}
.list th{text-align:left;font-size:11px;text-transform:uppercase;letter-spacing:.04em;
color:var(--muted);font-weight:600;border-bottom:1px solid var(--line);padding:6px 8px}
.list td{border-bottom:1px solid #eef1f4;padding:6px 8px;vertical-align:middle}
.probes td.heat,.probes th+th{text-align:center}
.probes td.heat{font-variant-numeric:tabular-nums;min-width:74px}
.probes td.zero{color:#afb8c1}
.bar{display:inline-block;width:80px;height:8px;background:var(--un-bg);border-radius:4px;
overflow:hidden;margin-right:6px;vertical-align:middle}
.bar i{display:block;height:100%;background:var(--sp)}
.sub{color:var(--muted);font-size:12px}
.note{color:var(--muted);margin:-4px 0 12px;max-width:860px}
.empty{color:var(--muted);font-style:italic}
.chips{margin-top:6px;display:flex;flex-wrap:wrap;gap:4px}
.chip{display:inline-block;font-size:11px;padding:1px 7px;border-radius:10px;
background:var(--bg);border:1px solid var(--line);white-space:nowrap}
.row{display:flex;align-items:center;gap:6px;flex-wrap:wrap;margin:4px 0 2px}
.nums{font-size:12px;color:var(--muted);font-variant-numeric:tabular-nums}
.nums b{color:var(--fg);font-weight:600}
article.target{display:grid;grid-template-columns:250px 1fr;gap:16px;padding:12px 0 14px 12px;
border-bottom:1px solid #eef1f4;border-left:3px solid var(--line)}
article.target.core{border-left-color:var(--core)}
article.target.spurious{border-left-color:var(--sp)}
article.target.uncertain{border-left-color:#8c959f}
.seeds{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
figure{margin:0;width:min-content}
figure img,.noimg{display:block;border-radius:6px;border:1px solid var(--line);
image-rendering:auto}
figure.core img{outline:2px solid var(--core);outline-offset:1px}
figure.spurious img{outline:2px solid var(--sp);outline-offset:1px}
figure.uncertain img{outline:2px solid #8c959f;outline-offset:1px}
figcaption{font-size:12px;margin-top:4px}
figcaption .row{margin:0}
.words{font:11px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:var(--muted);
white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.noimg{display:flex;flex-direction:column;justify-content:center;align-items:center;gap:4px;
padding:8px;text-align:center;font-size:11px;color:var(--fail);
background:repeating-linear-gradient(45deg,#fffbe6,#fffbe6 6px,#fff3c4 6px,#fff3c4 12px)}
.noimg span{color:var(--muted);word-break:break-word}
.change{font-size:12px;font-weight:600}
.change.new-spurious{color:var(--sp)}.change.resolved{color:var(--core)}
.change.changed{color:var(--un)}
footer{margin-top:40px;padding-top:12px;border-top:1px solid var(--line);font-size:12px;
color:var(--muted)}
@media print{main{padding:0}article.target{break-inside:avoid}}
"""
