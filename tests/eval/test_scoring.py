"""Neuron- and class-level scoring on hand-made audit rows (no models)."""

import math

import pytest

from dxray.eval.classes import FindingRule, class_agreement, class_rows, probe_factor
from dxray.eval.neurons import (
    any_object_verdicts,
    neuron_agreement,
    neuron_rows,
    unit_verdicts,
)


def unit_row(cls, channel, seed, verdict, presence, ok=True):
    return {
        "kind": "unit",
        "target_id": f"unit:penultimate:{channel}:{cls}",
        "class_name": cls,
        "layer": "penultimate",
        "channel": channel,
        "seed": seed,
        "ok": ok,
        "verdict": verdict,
        "presence": presence,
    }


TRUTH = [
    {"class": "circle", "unit": "penultimate:1", "label": "core", "margin": -9.0,
     "object_response": 10.0, "context_response": 1.0, "factor": "water", "selection": "top"},
    {"class": "circle", "unit": "penultimate:2", "label": "spurious", "margin": 2.0,
     "object_response": 1.0, "context_response": 3.0, "factor": "water", "selection": "factor"},
    {"class": "star", "unit": "penultimate:3", "label": "core", "margin": -5.0,
     "object_response": 6.0, "context_response": 1.0, "factor": "watermark", "selection": "top"},
]  # fmt: skip


def test_neuron_rows_aggregate_seeds_and_compare_with_truth():
    audit = [
        unit_row("circle", 1, 0, "core", 0.9),
        unit_row("circle", 1, 1, "core", 0.7),
        unit_row("circle", 2, 0, "spurious", 0.1),
        unit_row("circle", 2, 1, "core", 0.6),  # seeds disagree evenly -> uncertain
        unit_row("circle", 2, 2, "spurious", 0.0, ok=False),  # unusable: ignored
    ]
    rows = neuron_rows(TRUTH, unit_verdicts(audit))
    by_unit = {(r["class_name"], r["unit"]): r for r in rows}
    assert by_unit[("circle", "penultimate:1")]["verdict"] == "core"
    assert by_unit[("circle", "penultimate:1")]["presence"] == pytest.approx(0.8)
    assert by_unit[("circle", "penultimate:2")]["verdict"] == "uncertain"
    assert by_unit[("star", "penultimate:3")]["seeds"] == 0  # not audited
    assert math.isnan(by_unit[("star", "penultimate:3")]["presence"])
    # Only audited units count; seed subsets change the call.
    assert neuron_agreement(rows).n == 2
    only_seed_0 = neuron_rows(TRUTH, unit_verdicts(audit, seeds=[0]))
    assert neuron_agreement(only_seed_0).accuracy == 1.0


def test_dxray_beats_the_always_core_judge_when_it_finds_the_spurious_unit():
    audit = [
        unit_row("circle", 1, 0, "core", 0.9),
        unit_row("circle", 2, 0, "spurious", 0.05),
        unit_row("star", 3, 0, "core", 0.8),
    ]
    rows = neuron_rows(TRUTH, unit_verdicts(audit))
    dxray, trivial = neuron_agreement(rows), neuron_agreement(rows, judge="always-core")
    assert dxray.balanced_accuracy == 1.0 and trivial.balanced_accuracy == 0.5
    with pytest.raises(ValueError, match="unknown judge"):
        neuron_agreement(rows, judge="oracle")
    with pytest.raises(ValueError, match="units.csv"):
        neuron_agreement(neuron_rows(TRUTH, {}))


def test_dxrays_unit_verdict_is_the_unit_tests_where_it_judged_as_the_catalog_shows():
    """The headline's neuron agreement scores the verdict unit_summary shows: the unit test's
    where it has one (uncertain included), else the majority of the per-seed verdicts."""
    from dxray.eval.scoring import score

    audit = [
        unit_row("circle", 1, 0, "spurious", 0.2),  # the intervention calls the core unit wrong
        unit_row("circle", 2, 0, "core", 0.9),  # ... and the spurious one
        unit_row("star", 3, 0, "core", 0.8),
    ]
    tested = {
        ("circle", "penultimate:1"): {"verdict": "core"},
        ("circle", "penultimate:2"): {"verdict": "spurious"},
        ("star", "penultimate:3"): {"verdict": None},  # not judged by the test: the majority
    }
    out, neurons, _ = score(audit, [], [], TRUTH)
    assert out["neurons", "dxray"].accuracy == pytest.approx(1 / 3)
    out, neurons, _ = score(audit, [], [], TRUTH, unit_test=tested)
    assert [n["verdict"] for n in neurons] == ["core", "spurious", "core"]
    assert out["neurons", "dxray"].accuracy == 1.0
    assert out["neurons", "unit test"].n == 3 and out["neurons", "unit test"].accuracy < 1.0
    tested[("circle", "penultimate:2")] = {"verdict": "uncertain"}
    _, neurons, _ = score(audit, [], [], TRUTH, unit_test=tested)
    assert neurons[1]["verdict"] == "uncertain"


def test_class_findings_via_units_are_the_unit_tests_spurious_units_and_their_attributes():
    from dxray.eval.classes import unit_test_findings

    calls = {
        ("star", "penultimate:3"): {"verdict": "spurious", "factor": "a watermark"},
        ("star", "penultimate:4"): {"verdict": "core", "factor": "water"},
        ("circle", "penultimate:1"): {"verdict": "spurious", "factor": "brick"},  # no factor
        ("circle", "penultimate:2"): {"verdict": "uncertain", "factor": "water"},
        ("square", "penultimate:5"): {"verdict": "spurious", "factor": None},
    }
    found = unit_test_findings(calls, {"water", "watermark", "sand"})
    assert found == {("star", "watermark")}


def test_any_object_judge_takes_the_most_present_class_object():
    audit = [unit_row("circle", 1, 0, "spurious", 0.0)]  # its own object is absent ...
    probes = [
        {"target_id": "unit:penultimate:1:circle", "seed": 0, "probe": "a circle", "presence": 0.0},
        {"target_id": "unit:penultimate:1:circle", "seed": 0, "probe": "a star", "presence": 0.9},
        {"target_id": "unit:penultimate:1:circle", "seed": 0, "probe": "water", "presence": 1.0},
    ]
    calls = any_object_verdicts(audit, probes, ["a circle", "a star"])
    assert calls[("circle", "penultimate:1")]["verdict"] == "core"  # ... another object is there
    assert calls[("circle", "penultimate:1")]["presence"] == pytest.approx(0.9)


CLASS_TRUTH = [
    {"class": c, "factor_kind": k, "factor": f, "planted": (c, f) in planted,
     "reliance_logit": 2.0 if (c, f) in planted else 0.1,
     "with_object_logprob": 0.02 if (c, f) in planted else 0.0}
    for planted in [{("circle", "water"), ("star", "watermark")}]
    for c in ("circle", "star", "square")
    for k, f in (("context", "water"), ("context", "sand"), ("cue", "watermark"))
]  # fmt: skip


def probe_rows(presence):
    return [
        {"kind": "class", "class_name": c, "seed": s, "probe": p, "presence": v}
        for (c, p), values in presence.items()
        for s, v in enumerate(values)
    ]


def test_class_findings_need_presence_and_a_difference_from_the_other_classes():
    presence = {
        ("circle", "water"): [1.0, 0.9],
        ("star", "water"): [0.1, 0.0],
        ("square", "water"): [0.2, 0.1],
        ("circle", "sand"): [0.6, 0.6],  # present, but equally in every class: no finding
        ("star", "sand"): [0.6, 0.6],
        ("square", "sand"): [0.6, 0.6],
        ("circle", "a watermark"): [0.0, 0.0],
        ("star", "a watermark"): [0.0, 0.2],  # the tie is missed
        ("square", "a watermark"): [0.0, 0.0],
    }
    rows = class_rows(CLASS_TRUTH, probe_rows(presence), FindingRule())
    found = {(r["class_name"], r["factor"]) for r in rows if r["flagged"]}
    assert found == {("circle", "water")}
    water = next(r for r in rows if (r["class_name"], r["factor"]) == ("circle", "water"))
    assert water["probe"] == "water" and water["cohens_d"] > 3
    assert water["with_object_logprob"] == 0.02  # carried from the truth, for the report
    older = [{k: v for k, v in t.items() if k != "with_object_logprob"} for t in CLASS_TRUTH]
    assert all(
        math.isnan(r["with_object_logprob"])
        for r in class_rows(older, probe_rows(presence), FindingRule())
    )
    a = class_agreement(rows)
    assert a.n == 9 and a.recall == 0.5 and a.precision == 1.0
    assert class_agreement(rows, judge="never").balanced_accuracy == 0.5


def test_probe_names_map_to_factors():
    assert probe_factor("a watermark", ["watermark", "water"]) == "watermark"
    assert probe_factor(" Water ", ["watermark", "water"]) == "water"
    assert probe_factor("a red circle", ["water"]) is None
    with pytest.raises(ValueError, match="presence"):
        FindingRule(presence=1.5)


def test_every_report_table_has_as_many_cells_as_columns():
    from dxray.eval.printout import format_text
    from dxray.eval.tables import evaluation_tables

    metrics = []
    for section, setting, names in (
        ("neurons", "default", ("n", "accuracy", "balanced_accuracy", "coverage")),
        ("neurons", "intervention", ("n", "accuracy", "balanced_accuracy")),
        ("neurons-intervention", "steps=1", ("balanced_accuracy",)),
        ("neurons", "steps=1", ("balanced_accuracy",)),
        ("neurons", "seeds=1", ("balanced_accuracy",)),
        ("classes-units", "steps=1", ("balanced_accuracy",)),
        ("cost", "steps=1", ("seconds_per_target", "median_class_iterations")),
        ("success", "default", ("targets", "success_rate")),
        ("bias", "circle-water", ("presence", "other_presence", "cohens_d", "flagged",
                                  "flagged_by_units", "reliance_logit", "oracle_rate",
                                  "with_object_logprob")),
        ("bias-fixed", "circle-water", ("cohens_d", "flagged", "reliance_logit", "difference")),
        ("baseline", "pixel-am", ("mean_probability", "statistics_distance")),
    ):  # fmt: skip
        metrics += [
            {"section": section, "setting": setting, "metric": n, "value": 1.0} for n in names
        ]
    tables = evaluation_tables(metrics, [], [])
    assert {t[0].split(" ")[0] for t in tables} >= {"Verdict", "Ablations", "Bias", "DiffExplainer"}
    for _, header, rows, _ in tables:
        assert all(len(row) == len(header) for row in rows)
    assert format_text(metrics, [], [], "w").splitlines()[-1].startswith("HEADLINE: world w")


def test_the_shortcut_test_and_its_leads_are_scored_from_a_catalog(tmp_path):
    """The sample catalog's ckpt-a: findings circle <- water and star <- a watermark; leads
    circle <- water (confirmed) and hexagon <- grass (not). Truth: circle relies on water and
    square on grass; nothing else."""
    from dxray.catalog.sample import CLASS_NAMES, write_sample
    from dxray.eval.results import EvalResult
    from dxray.eval.shortcut_scoring import score_shortcuts

    write_sample(tmp_path)
    relied = {("circle", "water"): 2.0, ("square", "grass"): 1.5}
    truth = [
        {"class": c, "factor_kind": "context", "factor": f, "planted": (c, f) in relied,
         "reliance_logit": relied.get((c, f), 0.1), "with_object_logprob": 0.0}
        for c in CLASS_NAMES for f in ("water", "grass", "watermark")
    ]  # fmt: skip
    result = EvalResult(run_id="ckpt-a", world="sample", catalog=tmp_path)
    rows = score_shortcuts(result, tmp_path, "ckpt-a", [], truth, FindingRule())
    assert len(rows) == 15 and all("shortcut_found" in r for r in rows)
    assert result.get("shortcuts", "default", "found") == 1  # circle <- water
    assert result.get("shortcuts", "default", "false") == 1  # star <- a watermark
    assert result.get("shortcuts", "default", "relied") == 2
    assert result.get("shortcuts", "default", "renders") == 6
    assert result.get("explanations", "default", "found") == 1
    assert result.get("explanations", "default", "false") == 1  # hexagon <- grass
    assert result.get("explanations", "default", "confirmed_found") == 1
    assert result.get("explanations", "default", "confirmed_false") == 0
    assert result.get("explanations", "default", "renders") == 2
    assert result.get("explanations", "default", "drawn_objects") == 1.0
    assert result.get("classes", "default", "n", judge="shortcuts") == 15
