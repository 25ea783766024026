import math

import pytest

from dxray.eval.metrics import agreement, confusion_rows, median


def test_agreement_counts_abstentions_as_wrong_and_reports_coverage():
    truth = ["spurious", "spurious", "core", "core", "core"]
    calls = ["spurious", "uncertain", "core", "spurious", None]
    a = agreement(truth, calls)
    assert a.n == 5
    assert a.accuracy == pytest.approx(2 / 5)
    assert a.coverage == pytest.approx(3 / 5)
    assert a.decided_accuracy == pytest.approx(2 / 3)
    assert a.precision == pytest.approx(1 / 2)
    assert a.recall == pytest.approx(1 / 2)
    assert a.balanced_accuracy == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert a.confusion[("core", "uncertain")] == 1
    rows = {r["truth"]: r for r in confusion_rows(a)}
    assert rows["spurious"] == {"truth": "spurious", "spurious": 1, "core": 0, "uncertain": 1}


def test_constant_judges_get_half_balanced_accuracy_however_rare_the_positive():
    truth = ["spurious"] + ["core"] * 19
    always_core = agreement(truth, ["core"] * 20)
    assert always_core.accuracy == pytest.approx(0.95)  # flattering
    assert always_core.balanced_accuracy == pytest.approx(0.5)
    assert math.isnan(always_core.precision)  # nothing called spurious: undefined, not 0 or 1
    assert always_core.recall == 0.0


def test_agreement_rejects_bad_input():
    with pytest.raises(ValueError, match="labels"):
        agreement(["core"], ["core", "core"])
    with pytest.raises(ValueError, match="truth labels"):
        agreement(["maybe"], ["core"])


def test_median_ignores_missing_values():
    assert median([3.0, None, 1.0, float("nan"), 2.0]) == 2.0
    assert median([1.0, 4.0]) == 2.5
    assert math.isnan(median([]))
