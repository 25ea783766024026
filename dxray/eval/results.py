"""An evaluation's result: its rows, how a metric among them is named, and writing them.

A result is rows of three catalog tables, keyed by the evaluated run: eval_metrics (one number
each), eval_neurons (one truth unit each) and eval_classes (one (class, factor) pair each). A
metric is named by four fields:

- `section`: "neurons" and "classes" (verdict agreement with the truth, at each level),
  "success", "bias" and "bias-fixed" (the planted ties, in the fixed release too), "shortcuts"
  and "explanations" (the class-shortcut test and its leads), "baseline", "cost", and
  "labels-rank" (`dxray score`: the human labels, by the feature's rank);
- `setting`: "default" (the main audit), an ablation ("steps=1", "seeds=2", "reference"), a
  tie ("circle-water"), a method ("pixel-am"), a release ("fixed"), a subset ("rank=1");
- `judge`: whose verdicts agree with the truth, in the agreement sections only (`JUDGES`):
  dxray's own, or a judge scored beside it; None in every other section;
- `metric`: "accuracy", "found", "seconds_per_target", ...

The catalog's eval_metrics rows have no judge column: a judge other than dxray is folded into
the setting for the main audit (("neurons", "always-core")) and into the section for an
ablation (("neurons-intervention", "steps=1")), as every evaluation so far has written them.
`stored_key` folds and `metric_key` unfolds; nothing else reads or writes that layout, so the
tables (`dxray.eval.tables`) ask for a judge by name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

DEFAULT = "default"  # the main audit's setting
DXRAY = "dxray"  # the verdicts the audit shows (units: unit_summary's); the judge unless named
# The agreement sections' judges, in the order the agreement table lists them
JUDGES: dict[str, tuple[str, ...]] = {
    "neurons": (DXRAY, "unit test", "intervention", "presence", "any-object", "always-core"),
    "classes": (DXRAY, "shortcuts", "explanations", "units", "never"),
}


class MetricKey(NamedTuple):
    section: str
    setting: str
    judge: str | None  # in the agreement sections (`JUDGES`) only
    metric: str


def _judge(section: str, setting: str, judge: str | None) -> str | None:
    """`judge` checked against `section`; dxray's own where the section has judges and none is
    named. A judge given as the setting (the stored layout) is refused, not read as dxray's."""
    if section not in JUDGES:
        if judge is not None:
            raise ValueError(f"section {section!r} has no judges; got judge {judge!r}")
        return None
    if setting in JUDGES[section]:
        raise ValueError(
            f"{setting!r} is a judge of {section!r}, not a setting: name it as "
            f"judge={setting!r} (setting {DEFAULT!r} for the main audit)"
        )
    judge = judge or DXRAY
    if judge not in JUDGES[section]:
        raise ValueError(f"{judge!r} is not a judge of {section!r}: {JUDGES[section]}")
    return judge


def stored_key(section: str, setting: str, judge: str | None = None) -> tuple[str, str]:
    """The (section, setting) of an eval_metrics row of `judge` (see the module docstring)."""
    judge = _judge(section, setting, judge)
    if judge in (None, DXRAY):
        return section, setting
    if setting == DEFAULT:
        return section, judge
    return f"{section}-{judge}", setting


def metric_key(row: Mapping) -> MetricKey:
    """The name of an eval_metrics row's metric, its judge unfolded (`stored_key`'s inverse)."""
    section, setting, metric = row["section"], row["setting"], row["metric"]
    level, _, judge = section.partition("-")
    if level in JUDGES and judge in JUDGES[level]:  # ("neurons-intervention", "steps=1")
        return MetricKey(level, setting, judge, metric)
    if section in JUDGES:
        if setting in JUDGES[section]:  # ("neurons", "always-core"): the main audit's
            return MetricKey(section, DEFAULT, setting, metric)
        return MetricKey(section, setting, DXRAY, metric)
    return MetricKey(section, setting, None, metric)


class Metrics:
    """eval_metrics rows (as an evaluation makes them or as the catalog returns them), looked up
    by name. A metric stored without a value reads as NaN; one never stored, as None."""

    def __init__(self, rows: Sequence[Mapping]):
        self._values: dict[MetricKey, float] = {}
        for row in rows:  # a metric stored twice: the later value
            value = row["value"]
            self._values[metric_key(row)] = math.nan if value is None else value

    def _key(self, section: str, setting: str, metric: str, judge: str | None) -> MetricKey:
        return MetricKey(section, setting, _judge(section, setting, judge), metric)

    def has(self, section: str, setting: str, metric: str, *, judge: str | None = None) -> bool:
        return self._key(section, setting, metric, judge) in self._values

    def get(
        self, section: str, setting: str, metric: str, *, judge: str | None = None
    ) -> float | None:
        return self._values.get(self._key(section, setting, metric, judge))

    def settings(self, section: str, *, judge: str | None = None) -> list[str]:
        """The settings of `section` (of `judge`'s metrics), in the order the rows first give
        them."""
        judge = _judge(section, DEFAULT, judge)
        seen = dict.fromkeys(
            k.setting for k in self._values if k.section == section and k.judge == judge
        )
        return list(seen)


@dataclass
class EvalResult:
    run_id: str
    world: str
    catalog: Path
    metrics: list[dict] = field(default_factory=list)  # eval_metrics rows: section, setting,
    # metric, value, n (`add` writes them; `Metrics` reads them)
    neurons: list[dict] = field(default_factory=list)
    classes: list[dict] = field(default_factory=list)
    fixed_classes: list[dict] = field(default_factory=list)
    confusion: dict[str, list[dict]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(
        self,
        section: str,
        setting: str,
        values: Mapping[str, float | None],
        n: int | None = None,
        *,
        judge: str | None = None,
    ) -> None:
        """Metrics `values` of (section, setting), by `judge` in the agreement sections
        (default dxray's own)."""
        section, setting = stored_key(section, setting, judge)
        for metric, value in values.items():
            self.metrics.append(
                {
                    "section": section,
                    "setting": setting,
                    "metric": metric,
                    "value": None if value is None else float(value),
                    "n": n,
                }
            )

    def get(self, section: str, setting: str, metric: str, *, judge: str | None = None) -> float:
        """A metric's value; NaN when missing."""
        value = Metrics(self.metrics).get(section, setting, metric, judge=judge)
        return math.nan if value is None else value


def write_eval(result: EvalResult) -> None:
    """The result as rows of eval_metrics, eval_neurons and eval_classes (keyed by run id)."""
    from dxray.catalog.writer import CatalogWriter

    writer = CatalogWriter(result.catalog)
    eval_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    common = {"eval_id": eval_id, "world": result.world}
    writer.write("eval_metrics", [{**common, **m} for m in result.metrics], result.run_id)
    writer.write(
        "eval_neurons",
        [{**common, **{k: v for k, v in r.items()}} for r in result.neurons],
        result.run_id,
    )
    classes = [{**common, "release": "biased", **r} for r in result.classes]
    classes += [{**common, "release": "fixed", **r} for r in result.fixed_classes]
    writer.write("eval_classes", classes, result.run_id)


def result_json(result: EvalResult) -> str:
    """Everything in one JSON document (NaN as null)."""
    from dxray.catalog.writer import json_safe

    return json.dumps(
        json_safe(
            {
                "run_id": result.run_id,
                "world": result.world,
                "metrics": result.metrics,
                "neurons": result.neurons,
                "classes": result.classes,
                "fixed_classes": result.fixed_classes,
                "confusion": result.confusion,
                "seconds": result.seconds,
            }
        ),
        indent=1,
    )
