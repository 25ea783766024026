"""The report's evaluation section: how `dxray eval` scored the run, if it was evaluated.

Contract: `evaluation_section(con, run_id)` reads the run's rows of the catalog's eval tables
(eval_metrics, eval_neurons, eval_classes) and returns an escaped HTML <section>, or "" when
the run has no evaluation. The tables and the headline are the evaluation's own
(`dxray.eval.tables.evaluation_tables`, `dxray.eval.printout.headline`: the same as `dxray
eval` prints); this module only lays them out as HTML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dxray.eval.printout import headline
from dxray.eval.tables import evaluation_tables, format_value
from dxray.report.markup import esc
from dxray.report.queries import query_rows

UNIT_COLUMNS = (
    "class_name",
    "unit",
    "selection",
    "truth",
    "margin",
    "verdict",
    "presence",
    "intervention",
    "agree",
)


def evaluation_section(con, run_id: str) -> str:
    """The `dxray eval` section of a run, if it was evaluated (latest evaluation)."""
    q = "SELECT * FROM {} WHERE run_id = $run_id"
    metrics = query_rows(con, q.format("eval_metrics"), run_id)
    if not metrics:
        return ""
    neurons = query_rows(con, q.format("eval_neurons") + " ORDER BY class_name, unit", run_id)
    classes = query_rows(con, q.format("eval_classes"), run_id)
    return evaluation_html(metrics, neurons, classes, metrics[0]["world"] or "")


def evaluation_html(
    metrics: Sequence[Mapping], neurons: Sequence[Mapping], classes: Sequence[Mapping], world: str
) -> str:
    """The evaluation as an HTML <section> (escaped; no scripts)."""
    against = (
        f"human labels ({world.removeprefix('labels:')})"
        if world.startswith("labels:")
        else f"the toy zoo ({world})"
    )
    parts = [f'<section id="evaluation"><h2>Evaluation against {esc(against)}</h2>']
    parts.append(
        f"<p><strong>{esc(headline(metrics, world).removeprefix('HEADLINE: '))}</strong></p>"
    )
    for title, header, rows, note in evaluation_tables(metrics, neurons, classes):
        parts.append(f"<h3>{esc(title)}</h3><table><thead><tr>")
        parts += [f"<th>{esc(str(h))}</th>" for h in header]
        parts.append("</tr></thead><tbody>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>")
        parts.append("</tbody></table>")
        if note:
            parts.append(f"<p class=note>{esc(note)}</p>")
    if neurons:
        parts.append("<h3>Units</h3><table><thead><tr>")
        parts += [f"<th>{esc(c)}</th>" for c in UNIT_COLUMNS]
        parts.append("</tr></thead><tbody>")
        for r in neurons:
            cells = "".join(f"<td>{esc(format_value(r.get(c)))}</td>" for c in UNIT_COLUMNS)
            parts.append(f"<tr>{cells}</tr>")
        parts.append("</tbody></table>")
    parts.append("</section>")
    return "".join(parts)
