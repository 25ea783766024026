"""Judge: verdict thresholds, object queries, seed aggregation, probe rates and effect sizes."""

import math

import pytest
import torch

from dxray.judge.probes import EffectSize, ProbeResult, effect_size, probe_rates, run_probes
from dxray.judge.verdict import Thresholds, aggregate, object_query, verdict, verdicts


@pytest.mark.parametrize(
    ("presence", "expected"),
    [
        (1.0, "core"),
        (0.5, "core"),  # the core threshold itself counts as present
        (0.4999, "uncertain"),
        (0.2001, "uncertain"),
        (0.2, "spurious"),  # the spurious threshold itself counts as absent
        (0.0, "spurious"),
    ],
)
def test_default_threshold_boundaries(presence, expected):
    assert verdict(presence) == expected


def test_custom_thresholds():
    strict = Thresholds(core=0.9, spurious=0.05)
    assert [verdict(p, strict) for p in (0.95, 0.5, 0.05)] == ["core", "uncertain", "spurious"]


@pytest.mark.parametrize(("core", "spurious"), [(0.3, 0.5), (0.4, 0.4), (1.2, 0.2), (0.5, -0.1)])
def test_invalid_thresholds_are_an_error(core, spurious):
    with pytest.raises(ValueError, match="0 <= spurious < core <= 1"):
        Thresholds(core=core, spurious=spurious)


def test_nan_presence_is_an_error():
    with pytest.raises(ValueError, match="NaN"):
        verdict(float("nan"))


def test_verdicts_of_a_tensor_and_a_list():
    expected = ["core", "uncertain", "spurious"]
    assert verdicts(torch.tensor([0.7, 0.3, 0.1])) == expected
    assert verdicts([0.7, 0.3, 0.1], Thresholds()) == expected
    with pytest.raises(ValueError, match="1-D"):
        verdicts(torch.zeros(2, 2))


@pytest.mark.parametrize(
    ("class_name", "expected"),
    [
        ("tench", "a tench"),
        ("n01440764 tench", "a tench"),
        ("tench, Tinca tinca", "a tench"),
        ("n01440764 tench, Tinca tinca", "a tench"),
        ("n01530575_brambling", "a brambling"),
        ("great_white_shark", "a great white shark"),
        ("  red   fox ", "a red fox"),
        ("n1234 robot", "a n1234 robot"),  # not a WordNet id (8 digits): kept
    ],
)
def test_object_query_takes_the_readable_first_name(class_name, expected):
    assert object_query(class_name) == expected


def test_object_query_template():
    assert object_query("tench, Tinca tinca", "a photo of a {}") == "a photo of a tench"
    with pytest.raises(ValueError, match="must contain"):
        object_query("tench", "a photo of a fish")
    with pytest.raises(ValueError, match="no readable name"):
        object_query("n01440764")


@pytest.mark.parametrize(
    ("seeds", "expected"),
    [
        (["core"], "core"),
        (["core", "core", "spurious"], "core"),
        (["spurious", "uncertain", "spurious"], "spurious"),
        (["core", "core", "spurious", "uncertain"], "core"),  # the most common one wins
        (["core", "spurious"], "uncertain"),  # tie
        (["core", "spurious", "uncertain"], "uncertain"),
        (["core", "core", "spurious", "spurious", "uncertain"], "uncertain"),
    ],
)
def test_aggregate_majority_and_ties(seeds, expected):
    assert aggregate(seeds) == expected


def test_aggregate_rejects_empty_and_unknown():
    with pytest.raises(ValueError, match="at least one"):
        aggregate([])
    with pytest.raises(ValueError, match="unknown"):
        aggregate(["core", "maybe"])


def test_probe_rates():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.6, 0.2, 0.49], [0.1, 0.3, 0.7], [0.8, 0.0, 0.2]])
    torch.testing.assert_close(probe_rates(scores), torch.tensor([0.75, 0.0, 0.5]))
    torch.testing.assert_close(probe_rates(scores, threshold=0.15), torch.tensor([0.75, 0.5, 1.0]))
    with pytest.raises(ValueError, match=r"\[B, Q\]"):
        probe_rates(torch.zeros(0, 3))


def test_effect_size_numbers():
    a = torch.tensor([0.9, 0.8, 0.7])
    b = torch.tensor([0.1, 0.2, 0.3])
    # Both groups have unbiased variance 0.01, so the pooled sd is 0.1 and d = 0.6 / 0.1.
    result = effect_size(a, b)
    assert isinstance(result, EffectSize)
    assert result.mean_difference == pytest.approx(0.6)
    assert result.cohens_d == pytest.approx(6.0)
    assert (result.n_a, result.n_b) == (3, 3)
    assert effect_size(b, a).cohens_d == pytest.approx(-6.0)


def test_effect_size_unequal_groups():
    a = torch.tensor([1.0, 0.0])  # mean 0.5, sum of squares 0.5
    b = torch.tensor([0.0, 0.0, 0.0, 0.4])  # mean 0.1, sum of squares 0.12
    result = effect_size(a, b)
    assert result.mean_difference == pytest.approx(0.4)
    assert result.cohens_d == pytest.approx(0.4 / math.sqrt(0.62 / 4))


def test_effect_size_degenerate_cases():
    assert math.isnan(effect_size(torch.tensor([0.9]), torch.tensor([0.1])).cohens_d)
    assert effect_size(torch.ones(3), torch.zeros(2)).cohens_d == math.inf
    assert effect_size(torch.ones(3), torch.ones(2)).cohens_d == 0.0
    with pytest.raises(ValueError, match="both groups"):
        effect_size(torch.ones(3), torch.zeros(0))


class FakeSegmenter:
    def probe(self, images, queries):
        # Presence of query j in image b: the mean of channel j, so the answer is known.
        return torch.stack([images[:, j].mean(dim=(1, 2)) for j in range(len(queries))], dim=1)


def test_run_probes_and_rates():
    images = torch.zeros(4, 3, 8, 8)
    images[:3, 0] = 1.0  # "a watermark" in three images of four
    images[:, 1] = 0.3  # "water" nowhere above 0.5
    result = run_probes(FakeSegmenter(), images, ("a watermark", "water"))
    assert isinstance(result, ProbeResult)
    assert result.queries == ["a watermark", "water"]
    assert result.scores.shape == (4, 2)
    assert result.rates() == {"a watermark": 0.75, "water": 0.0}


def test_probe_result_checks_its_shape():
    with pytest.raises(ValueError, match="one column per query"):
        ProbeResult(queries=["a", "b"], scores=torch.zeros(4, 3))
