"""The evaluation's printed text, character for character.

Each fixture in tests/eval/data/ is an evaluation result as `dxray eval --json` writes it
(metrics, neurons, classes and fixed_classes rows), and the .txt beside it is what `dxray eval`
printed for it (`format_text`) when the fixture was added, before the tables were reworked
(issue #21):

- evaluation-default: a real `dxray eval` of the committed default zoo (4 seeds, the baseline
  and the fixed release; no ablations);
- evaluation-synthetic: made-up numbers for what the real one lacks: the ablations, a tie the
  probes never saw, missing, infinite and large values, a run without every judge;
- evaluation-labels: the shape of `dxray score` (human labels, by the feature's rank).

A change to the tables' text fails here; regenerate a .txt only for a change meant to show.
"""

import json
from pathlib import Path

import pytest

from dxray.catalog.views import connect
from dxray.eval.report import format_text
from dxray.eval.runner import EvalResult, write_eval
from dxray.report.queries import query_rows

DATA = Path(__file__).parent / "data"
FIXTURES = ["default", "synthetic", "labels"]


def _fixture(name: str) -> dict:
    return json.loads((DATA / f"evaluation-{name}.json").read_text())


def _printed(name: str) -> str:
    return (DATA / f"evaluation-{name}.txt").read_text().removesuffix("\n")


@pytest.mark.parametrize("name", FIXTURES)
def test_the_printed_evaluation_is_unchanged(name):
    d = _fixture(name)
    # As `dxray eval` passes them: the biased release's class rows, then the fixed one's
    classes = d["classes"] + [{**r, "release": "fixed"} for r in d["fixed_classes"]]
    assert format_text(d["metrics"], d["neurons"], classes, d["world"]) == _printed(name)


@pytest.mark.parametrize("name", FIXTURES)
def test_the_evaluation_reads_back_from_a_catalog_as_printed(name, tmp_path):
    """Written to the catalog's eval tables and read back as the report reads them, the rows
    print the same text: the tables are a function of the stored rows alone."""
    d = _fixture(name)
    result = EvalResult(
        run_id="r1", world=d["world"], catalog=tmp_path, metrics=d["metrics"],
        neurons=d["neurons"], classes=d["classes"], fixed_classes=d["fixed_classes"],
    )  # fmt: skip
    write_eval(result)
    con = connect(tmp_path, read_only=True)
    rows = {
        table: query_rows(con, f"SELECT * FROM {table} WHERE run_id = $run_id", "r1")
        for table in ("eval_metrics", "eval_neurons", "eval_classes")
    }
    text = format_text(rows["eval_metrics"], rows["eval_neurons"], rows["eval_classes"], d["world"])
    assert text == _printed(name)
