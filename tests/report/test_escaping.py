"""Every text the report takes from a catalog is escaped, wherever it lands: run names and
errors, target errors, prompt words, probe names and the evaluation section (class names are
covered in test_page.py). Each payload is its own tag, so a miss names its place."""

import json

import pytest
import torch

from dxray.catalog.writer import CatalogWriter
from dxray.report.page import write_report
from dxray.run.worker import png

PAYLOADS = {
    "run name": "<b>run-name</b>",
    "run error": "<u>run-error</u>",
    "target error": "<i>target-error</i>",
    "prompt word": "<em>prompt-word</em>",
    "probe": "<s>probe</s>",
    "eval world": "<q>eval-world</q>",
    "eval setting": "<ins>eval-setting</ins>",
    "eval unit row": "<del>eval-selection</del>",
}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("evil-catalog")
    writer, run = CatalogWriter(root), "evil"
    writer.write_run(run, name=PAYLOADS["run name"], classifier="c", num_targets=3)
    target = {"run_id": run, "kind": "class", "class_index": 0, "class_name": "circle",
              "objective": "ClassCE(0)"}  # fmt: skip
    explanations = [
        {**target, "target_id": "class:0", "seed": 0, "status": "converged", "steps": 3,
         "probability": 0.9, "words": json.dumps([[[PAYLOADS["prompt word"], 0.8]]])},
        {**target, "target_id": "class:0", "seed": 1, "status": "error", "steps": 0,
         "error": PAYLOADS["target error"]},
    ]  # fmt: skip
    verdicts = [
        {"run_id": run, "target_id": "class:0", "seed": 0, "object_query": "a circle",
         "presence": 0.1, "verdict": "spurious", "judged_by": "presence",
         "probe_scores": [(PAYLOADS["probe"], 0.9)]},
    ]  # fmt: skip
    images = [{"run_id": run, "target_id": "class:0", "seed": 0, "png": png(torch.rand(3, 8, 8))}]
    writer.write_batch(run, explanations, verdicts, images)
    evaluation = {"world": PAYLOADS["eval world"], "eval_id": "e1"}
    writer.write(
        "eval_metrics",
        [{**evaluation, "section": "labels-rank", "setting": PAYLOADS["eval setting"],
          "metric": metric, "value": value} for metric, value in (("n", 4), ("accuracy", 0.5))],
        run,
    )  # fmt: skip
    writer.write(
        "eval_neurons",
        [{**evaluation, "class_name": "circle", "unit": "penultimate:3", "truth": "spurious",
          "selection": PAYLOADS["eval unit row"], "seeds": 2, "verdict": "core", "agree": False}],
        run,
    )  # fmt: skip
    writer.finish_run(run, "failed", error=PAYLOADS["run error"])
    out = tmp_path_factory.mktemp("report") / "report.html"
    return write_report(root, out, run).read_text()


@pytest.mark.parametrize("place", list(PAYLOADS))
def test_every_catalog_text_is_escaped(page, place):
    payload = PAYLOADS[place]
    escaped = payload.replace("<", "&lt;").replace(">", "&gt;")
    assert payload not in page, f"{place} reaches the page unescaped"
    assert escaped in page, f"{place} is not on the page at all: the test would prove nothing"
