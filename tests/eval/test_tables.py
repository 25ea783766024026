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
from dxray.eval.printout import format_text
from dxray.eval.results import EvalResult, write_eval
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


def test_a_judge_is_named_apart_from_the_setting_and_stored_as_before():
    """The catalog's rows fold a judge into the setting (main audit) or the section
    (ablation); `metric_key` unfolds both, and `stored_key` folds them back the same way."""
    from dxray.eval.results import MetricKey, Metrics, metric_key, stored_key

    layouts = {
        ("neurons", "default", None): ("neurons", "default"),
        ("neurons", "default", "dxray"): ("neurons", "default"),
        ("neurons", "default", "always-core"): ("neurons", "always-core"),
        ("classes", "default", "shortcuts"): ("classes", "shortcuts"),
        ("neurons", "steps=1", "dxray"): ("neurons", "steps=1"),
        ("neurons", "steps=1", "intervention"): ("neurons-intervention", "steps=1"),
        ("classes", "seeds=2", "units"): ("classes-units", "seeds=2"),
        ("bias-fixed", "circle-water", None): ("bias-fixed", "circle-water"),
        ("labels-rank", "rank=1", None): ("labels-rank", "rank=1"),
    }
    for (section, setting, judge), stored in layouts.items():
        assert stored_key(section, setting, judge) == stored
        row = {"section": stored[0], "setting": stored[1], "metric": "n"}
        judge = judge or ("dxray" if section in ("neurons", "classes") else None)
        assert metric_key(row) == MetricKey(section, setting, judge, "n")
    with pytest.raises(ValueError, match="not a judge of 'neurons'"):
        stored_key("neurons", "default", "never")
    with pytest.raises(ValueError, match="has no judges"):
        stored_key("success", "default", "dxray")
    with pytest.raises(ValueError, match="name it as judge='always-core'"):
        stored_key("neurons", "always-core")  # the stored layout, not a name

    result = EvalResult(run_id="r", world="w", catalog=Path("."))
    result.add("neurons", "default", {"accuracy": 0.5}, 4)
    result.add("neurons", "default", {"accuracy": 0.75}, 4, judge="always-core")
    result.add("neurons", "seeds=1", {"accuracy": 0.25}, 4, judge="intervention")
    result.add("success", "default", {"targets": 3, "median_seconds": None})
    assert [(m["section"], m["setting"]) for m in result.metrics] == [
        ("neurons", "default"), ("neurons", "always-core"), ("neurons-intervention", "seeds=1"),
        ("success", "default"), ("success", "default"),
    ]  # fmt: skip
    assert result.get("neurons", "default", "accuracy") == 0.5
    assert result.get("neurons", "default", "accuracy", judge="always-core") == 0.75
    assert result.get("neurons", "seeds=1", "accuracy", judge="intervention") == 0.25
    with pytest.raises(ValueError, match="is a judge of 'neurons', not a setting"):
        result.get("neurons", "always-core", "accuracy")  # never a silent NaN
    metrics = Metrics(result.metrics)
    assert metrics.settings("neurons") == ["default"]  # dxray's own
    assert metrics.settings("neurons", judge="intervention") == ["seeds=1"]
    assert metrics.get("success", "default", "median_seconds") != metrics.get(
        "success", "default", "median_seconds"
    )  # stored without a value: NaN
    assert metrics.get("success", "default", "mean_probability") is None  # never stored
