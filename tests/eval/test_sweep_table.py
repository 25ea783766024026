"""The sweep's pooled table from hand-made world results: counts by reliance band, the
detection curve, calibration statistics, units with intervals, goals and the SWEEP line."""

import math

import pytest

from dxray.eval.sweep_table import (
    bootstrap_units,
    pearson,
    pool_sweep,
    ranks,
    spearman,
    verdict_changes,
)
from dxray.eval.sweep_text import format_sweep, headline, write_scatter


def _pair(cls, factor, reliance, lift, found, candidate, planted=False, kind="context", ties=0):
    return {
        "class_name": cls, "factor_kind": kind, "factor": factor, "planted": planted,
        "planted_p": 0.9 if planted else 0.0, "ties_on_class": ties,
        "reliance_logit": reliance, "relied": reliance >= 1, "shortcut_lift": lift,
        "shortcut_found": found, "explanation_candidate": candidate,
    }  # fmt: skip


def _unit(truth, verdict):
    return {"class_name": "a", "unit": "p:1", "truth": truth, "verdict": verdict, "seeds": 2}


def _world(name, pairs, units):
    return {"world": name, "ties": [{}] * sum(p["planted"] for p in pairs), "pairs": pairs,
            "units": units}  # fmt: skip


@pytest.fixture
def results():
    one = _world(
        "w0",
        [
            _pair("a", "water", 2.5, 2.4, True, True, planted=True, ties=1),
            _pair("b", "watermark", 1.2, 0.8, False, False, planted=True, kind="cue", ties=2),
            _pair("b", "sand", 0.7, 1.1, True, True, planted=True, ties=2),  # between
            _pair("c", "water", 0.1, 1.2, True, True),  # a false finding and a false lead
            _pair("c", "sand", -0.3, -0.2, False, False),
        ],
        [_unit("spurious", "spurious"), _unit("core", "core"), _unit("core", "uncertain")],
    )
    two = _world(
        "w1",
        [
            _pair("a", "grass", 3.2, 3.0, True, False, planted=True, ties=1),
            _pair("a", "sand", 0.2, 0.1, False, None),  # no pool readout
        ],
        [_unit("spurious", "core"), _unit("core", "core")],
    )
    return [one, two]


def test_ranks_and_correlations():
    assert ranks([3.0, 1.0, 2.0, 1.0]) == [4.0, 1.5, 3.0, 1.5]
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(0.6)
    assert math.isnan(pearson([1, 1], [1, 2]))


def test_counts_by_reliance_band(results):
    t = pool_sweep(results)
    assert t.classes == {"relied": 3, "found": 2, "between": 1, "between_flagged": 1,
                         "unrelated": 3, "false": 1}  # fmt: skip
    # the explanations: only pairs with a pool readout
    e = t.explanations
    assert (e["relied"], e["found"], e["unrelated"], e["false"]) == (3, 1, 2, 1)
    assert e["false_per_world"] == pytest.approx(0.5)
    curve = {row["reliance"]: (row["pairs"], row["found"]) for row in t.curve}
    assert curve["< 0.5"] == (3, 1) and curve["0.5-1"] == (1, 1) and curve["1-1.5"] == (1, 0)
    assert curve["2-3"] == (1, 1) and curve[">= 3"] == (1, 1)
    groups = {row["group"]: row for row in t.breakdown}
    assert (groups["cue ties"]["relied"], groups["cue ties"]["found"]) == (1, 0)
    assert (groups["scene ties"]["relied"], groups["scene ties"]["found"]) == (2, 2)
    assert groups["class with 2 ties"]["planted"] == 2
    worlds = {w["world"]: w for w in t.per_world}
    assert (worlds["w0"]["found"], worlds["w0"]["false"], worlds["w0"]["false_leads"]) == (1, 1, 1)


def test_calibration_over_every_pair(results):
    t = pool_sweep(results)
    x = [2.5, 1.2, 0.7, 0.1, -0.3, 3.2, 0.2]
    y = [2.4, 0.8, 1.1, 1.2, -0.2, 3.0, 0.1]
    assert t.calibration["pairs"] == 7
    assert t.calibration["spearman"] == pytest.approx(spearman(x, y))
    assert t.calibration["mae"] == pytest.approx(
        sum(abs(a - b) for a, b in zip(x, y, strict=True)) / 7
    )
    assert len(t.points) == 7


def test_units_pooled_with_intervals(results):
    u = pool_sweep(results).units
    assert (u["units"], u["spurious"], u["uncertain"]) == (5, 2, 1)
    # spurious recall 1/2; core recall 2/3 (the uncertain one is wrong): balanced 7/12
    assert u["recall"] == pytest.approx(0.5)
    assert u["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert u["precision"] == pytest.approx(1.0)
    lo, hi = u["intervals"]["balanced_accuracy"]
    assert lo <= u["balanced_accuracy"] <= hi


def test_bootstrap_is_seeded_and_narrows_with_more_units():
    truth = ["spurious", "core"] * 10
    calls = ["spurious", "core"] * 9 + ["core", "spurious"]
    a = bootstrap_units(truth, calls, resamples=300, seed=1)
    assert a == bootstrap_units(truth, calls, resamples=300, seed=1)
    wide = bootstrap_units(truth[:4] + truth[-2:], calls[:4] + calls[-2:], resamples=300)
    width = a["balanced_accuracy"][1] - a["balanced_accuracy"][0]
    assert width < wide["balanced_accuracy"][1] - wide["balanced_accuracy"][0]


def test_goals_and_the_sweep_line(results, tmp_path):
    t = pool_sweep(results)
    goals = {g["goal"]: g for g in t.goals}
    assert not goals["worlds"]["met"] and not goals["relied-on ties found"]["met"]
    assert goals["false findings, total"]["met"]  # 1 <= 1
    line = headline(t)
    assert line.startswith("SWEEP: 2 worlds; class shortcuts found 2/3, false 1")
    assert "object-free explanations single out 1/3, false leads 1" in line
    assert line.endswith("units balanced 58% on 2 spurious")
    text = format_sweep(t)
    assert text.endswith(line) and "Detection by truth reliance" in text
    png = write_scatter(t, tmp_path / "s.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def _row(target, kind, verdict=None, kept=None, probability=None, ok=True):
    return {"target_id": target, "seed": 0, "kind": kind, "ok": ok, "verdict": verdict,
            "kept": kept, "probability": probability}  # fmt: skip


def test_verdict_changes_between_two_runs(results):
    a = [
        _row("u1", "unit", "core", 0.40),
        _row("u2", "unit", "spurious", 0.52),
        _row("u3", "unit", "core", 0.1),
        _row("c1", "class", probability=0.95),
        _row("c2", "class", probability=0.5),
        _row("u4", "unit", "core", 0.2),
    ]
    b = [_row("u1", "unit", "core", 0.41), _row("u2", "unit", "uncertain", 0.48),
         _row("u3", "unit", "core", 0.1), _row("c1", "class", probability=0.85),
         _row("c2", "class", probability=0.6), _row("u4", "unit", "core", ok=False)]  # fmt: skip
    got = verdict_changes(a, b)
    assert (got["units"], got["unit_changes"], got["classes"]) == (3, 1, 2)
    change = {k: v for k, v in got["changes"][0].items() if not k.startswith("activation")}
    assert change == {"target": "u2", "seed": 0, "from": "spurious", "to": "uncertain",
                      "kept_from": 0.52, "kept_to": 0.48}  # fmt: skip
    assert got["kept_change_max"] == pytest.approx(0.04)
    assert got["class_success_changes"] == 1
    table = pool_sweep(results, [{"world": "w0", "variant": "batch 7", **got}])
    assert table.stability[0]["unit_changes"] == 1 and "changes" not in table.stability[0]
    assert "Stable verdicts" in format_sweep(table)


def test_unit_errors_measure_silence_and_the_explanations_reach():
    from dxray.eval.sweep_table import unit_errors

    def unit(truth, verdict, activation, kept, obj=10.0, factor=2.0):
        return {"truth": truth, "verdict": verdict, "activation": activation, "kept": kept,
                "object_response": obj, "factor_response": factor}  # fmt: skip

    rows = unit_errors(
        [unit("spurious", "uncertain", 0.0, None), unit("spurious", "core", 20.0, 0.1),
         unit("spurious", "core", 40.0, 0.0), unit("core", "spurious", 1.0, 1.0),
         unit("core", "core", 12.0, 0.0)]
    )  # fmt: skip
    got = {(r["truth"], r["verdict"]): r for r in rows}
    assert got[("spurious", "uncertain")]["silent"] == 1
    assert got[("spurious", "core")]["units"] == 2
    assert got[("spurious", "core")]["activation_vs_truth_median"] == pytest.approx(20.0)
    assert got[("core", "spurious")]["activation_vs_truth_median"] == pytest.approx(0.1)
    assert got[("core", "spurious")]["kept_median"] == 1.0
    assert ("spurious", "spurious") not in got


def test_the_unit_test_is_pooled_beside_the_intervention_and_sets_the_goal(results):
    calls = iter(["spurious", "core", "core", "spurious", "uncertain"])
    for world in results:
        for unit in world["units"]:
            unit["unit_test"] = next(calls)
    t = pool_sweep(results)
    # truth: spurious, core, core | spurious, core -> unit test: 2/2 spurious, 2/3 core
    assert t.unit_test["recall"] == pytest.approx(1.0)
    assert t.unit_test["balanced_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
    assert t.units["balanced_accuracy"] == pytest.approx((0.5 + 2 / 3) / 2)  # unchanged
    goal = next(g for g in t.goals if g["goal"] == "units balanced accuracy")
    assert goal["got"] == pytest.approx(t.unit_test["balanced_accuracy"])
    assert headline(t).endswith(
        "units balanced 83% by the unit test (58% by intervention) on 2 spurious"
    )
    text = format_sweep(t)
    assert "unit test" in text and "Units by how the truth selected them: the unit test" in text
    assert [w["unit_test_found"] for w in t.per_world] == [1, 1]
