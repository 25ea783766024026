"""`dxray score`: a run's unit verdicts against the human labels stored with it.

The labels come from the spec's unit CSV (dxray.labels; Salient ImageNet's crowd answers as
published), written into the catalog's `labels` table when the run started; the catalog's
`label_agreement` view puts each beside the run's verdict (majority over seeds). Scored like
the toy evaluation's neuron level (dxray.eval.metrics): accuracy with "uncertain" and
unaudited units counted as wrong, balanced accuracy, coverage, precision and recall of
"spurious", the confusion table; beside dxray the trivial always-core judge; and the same per
feature rank and on the pairs the workers agreed on unanimously. The paper's anchor: > 80%
agreement with the Salient ImageNet crowd.

    result = score_run("catalogs/salient-imagenet", run_id)
    write_eval(result)        # eval_metrics / eval_neurons, keyed by the run (latest shown)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from dxray.eval.metrics import agreement, confusion_rows
from dxray.eval.reads import query, run_row
from dxray.eval.results import EvalResult


def agreement_rows(catalog: str | Path, run_id: str) -> list[dict]:
    """The run's `label_agreement` rows (a run the catalog lacks is named as such)."""
    run_row(catalog, run_id)  # "has no run 'x'; its runs: [...]"
    rows = query(
        catalog,
        "SELECT * FROM label_agreement WHERE run_id = ? ORDER BY class_index, rank, channel",
        [run_id],
    )
    if not rows:
        raise ValueError(
            f"run {run_id!r} has no human labels in {catalog}: audit a spec whose "
            "targets.units.csv holds labels (Salient ImageNet's discover_spurious_features.csv, "
            "or class_index,feature_index,label)"
        )
    return rows


def score_rows(rows: Sequence[Mapping], result: EvalResult) -> EvalResult:
    """Fill `result` with the agreement of `rows` (label_agreement rows) and its breakdowns."""
    truth = [r["label"] for r in rows]
    calls = [r["verdict"] or "uncertain" for r in rows]  # unaudited: no call
    dxray = agreement(truth, calls)
    result.add("neurons", "default", dxray.as_metrics(), dxray.n)
    result.confusion["neurons"] = confusion_rows(dxray)
    core = agreement(truth, ["core"] * len(rows))
    result.add("neurons", "default", core.as_metrics(), core.n, judge="always-core")
    for rank in sorted({r["rank"] for r in rows if r["rank"] is not None}):
        mine = [i for i, r in enumerate(rows) if r["rank"] == rank]
        part = agreement([truth[i] for i in mine], [calls[i] for i in mine])
        result.add("labels-rank", f"rank={rank}", part.as_metrics(), part.n)
    unanimous = [
        i for i, r in enumerate(rows)
        if r["answers"] and max(r["votes_main_object"] or 0,
                                (r["votes_separate_object"] or 0) + (r["votes_background"] or 0))
        == r["answers"]
    ]  # fmt: skip
    if unanimous:
        part = agreement([truth[i] for i in unanimous], [calls[i] for i in unanimous])
        result.add("labels-rank", "unanimous", part.as_metrics(), part.n)
    result.neurons = [
        {
            "class_name": r["class_name"],
            "unit": f"{r['layer']}:{r['channel']}",
            "selection": f"rank {r['rank']}" if r["rank"] is not None else "labelled",
            "truth": r["label"],
            "seeds": r["judged"] or 0,
            "verdict": r["verdict"],
            "agree": bool(r["agree"]),
        }
        for r in rows
    ]
    return result


def score_run(catalog: str | Path, run_id: str) -> EvalResult:
    """Score run `run_id` of `catalog` against its labels (see the module docstring)."""
    started = time.perf_counter()
    rows = agreement_rows(catalog, run_id)
    sources = sorted({r["source"] for r in rows})
    result = EvalResult(run_id=run_id, world=f"labels:{'+'.join(sources)}", catalog=Path(catalog))
    score_rows(rows, result)
    result.seconds = time.perf_counter() - started
    return result
