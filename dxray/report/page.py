"""The bias report's page: one self-contained HTML file per audit run.

Contract: `render_report(con, run_id)` returns the whole page for a run of a connected catalog
(`dxray.catalog.connect`); `write_report(root, out_html, run_id)` writes it atomically (a
temporary file, then a rename). Everything is inline (the CSS of report.css, read from the
package; images as base64 PNG data URIs), so the file can be mailed, attached to a review or
opened offline; it needs no JavaScript. The first screen is the answer (dxray.report.answer:
the class-shortcut findings, the spurious units, then the leads apart); below it the diff, the
shortcut test's evidence, the evaluation, the explanation galleries and the probes. Every
catalog string is escaped.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path

from dxray.catalog.diff import diff_runs
from dxray.catalog.findings import read_answer, run_thresholds
from dxray.catalog.health import leaving_out_damage
from dxray.catalog.outputs import check_output
from dxray.catalog.views import connect
from dxray.report.answer import answer_section
from dxray.report.diff import diff_section
from dxray.report.evaluation import evaluation_section
from dxray.report.markup import esc
from dxray.report.queries import queries, query_rows
from dxray.report.shortcuts import shortcut_section
from dxray.report.summary import header, legend
from dxray.report.targets import class_gallery, probe_table, unit_gallery
from dxray.report.thumbnails import THUMB

CSS_FILE = "report.css"


@cache
def css() -> str:
    """The page's stylesheet (dxray/report/report.css, package data)."""
    try:
        return resources.files("dxray.report").joinpath(CSS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"dxray/report/{CSS_FILE} is missing from the installed dxray package: reinstall "
            "dxray (it is package data, see [tool.setuptools.package-data] in pyproject.toml)"
        ) from error


def render_report(
    con, run_id: str | None = None, *, diff_from: str | None = None, thumb_size: int = THUMB
) -> str:
    """The report's HTML for `run_id` (default: the newest run with results) of a connected
    catalog; with `diff_from`, a section comparing that earlier run with this one."""
    q = queries()
    if run_id is None:
        latest = query_rows(con, q["latest_run"])
        if not latest:
            raise ValueError("the catalog has no results yet: nothing to report")
        run_id = latest[0]["run_id"]
    runs = query_rows(con, q["run"], run_id)
    run = runs[0] if runs else {}
    targets = query_rows(con, q["targets"], run_id)
    if not run and not targets:
        raise ValueError(f"run {run_id!r} is not in the catalog")
    counts = query_rows(con, q["counts"], run_id)[0]
    seeds: dict[str, list[dict]] = {}
    for s in query_rows(con, q["seeds"], run_id):
        seeds.setdefault(s["target_id"], []).append(s)
    images = {(i["target_id"], i["seed"]): i for i in query_rows(con, q["images"], run_id)}
    probes: dict[str, list[dict]] = {}
    for p in query_rows(con, q["probes"], run_id):
        probes.setdefault(p["target_id"], []).append(p)
    diff = diff_runs(con, diff_from, run_id) if diff_from else None
    evaluation = evaluation_section(con, run_id)
    shortcuts = shortcut_section(con, run_id, thumb_size)

    answer = read_answer(con, run_id)
    limits = run_thresholds(con, run_id)

    classes = [t for t in targets if t["kind"] == "class"]
    units = [t for t in targets if t["kind"] == "unit"]
    body = [
        header(run, run_id, counts),
        answer_section(con, run_id, answer),
        diff_section(diff) if diff else "",
        shortcuts,
        evaluation,
        legend() if classes or units else "",
        unit_gallery(units, seeds, images, limits.keep, thumb_size),
        class_gallery(classes, counts, seeds, images, limits, thumb_size),
        probe_table(targets, probes),
    ]
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"dxray · {run.get('name') or run_id}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>\n{css()}</style></head><body><main>"
        + "".join(body)
        + f"<footer>Generated {esc(made)} by dxray {esc(run.get('dxray_version') or '')}"
        f" · this run's thresholds: a shortcut finding needs a lift of at least "
        f"{limits.min_lift:g} nats with its {limits.confidence:.0%} interval above 0; a unit "
        "audited for a class is spurious when an attribute with no object drives it more than "
        "the class's object (the unit-shortcut test, its interval above 0), any other when it "
        f"keeps at least {limits.keep:.0%} of its activation once the objects are removed; a "
        "class's explanation shows its object at presence ≥ "
        f"{limits.core:g} (absent ≤ {limits.spurious:g}) · images outlined where the object "
        "mask is ≥ 0.5</footer></main></body></html>\n"
    )


def write_report(
    root: str | os.PathLike,
    out_html: str | os.PathLike,
    run_id: str | None = None,
    *,
    diff_from: str | None = None,
    thumb_size: int = THUMB,
) -> Path:
    """Write the HTML report of one run of the catalog at `root` to `out_html` (an .html
    file, not inside the catalog's folders: `dxray.catalog.outputs`)."""
    out = check_output(out_html, (".html", ".htm"))

    def render() -> str:
        con = connect(root, read_only=True)  # a fresh connection lists the files anew
        try:
            return render_report(con, run_id, diff_from=diff_from, thumb_size=thumb_size)
        finally:
            con.close()

    page = leaving_out_damage(root, render)  # a file damaged inside is named and left out
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = out.with_name(f".{out.name}.tmp")
    try:
        temp.write_text(page, encoding="utf-8")
        os.replace(temp, out)
    finally:
        temp.unlink(missing_ok=True)
    return out
