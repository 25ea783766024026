"""The toy classifier zoo: training plumbing, the unit ranking, ground truth and gates.

The real zoo is trained by `dxray zoo train --parts classifiers` (minutes); here every
model is either trained for a few steps (plumbing only) or built by hand so that the right
answer is known.
"""

import json

import pyarrow as pa
import pytest
import torch
from torch import nn

from dxray.models.classifier import Classifier, Preprocessing
from dxray.models.classifier_io import load_classifier
from dxray.models.units import rank_units
from dxray.toyworld.data import class_names, context_names, sample_specs
from dxray.toyworld.nets import (
    gaussian_blur,
    oracle_cnn,
    oracle_output_names,
    oracle_predict,
    toy_cnn,
)
from dxray.toyworld.run_settings import RunSettings
from dxray.toyworld.scenes import render_batch
from dxray.toyworld.train_classifier import (
    TRAINING_FILE,
    ToyClassifierConfig,
    ToyOracleConfig,
    train_classifier,
    train_oracle,
)
from dxray.toyworld.truth import CLASS_TRUTH_SCHEMA, NEURON_TRUTH_SCHEMA, compute_truth, top_units
from dxray.toyworld.truth_gates import (
    classifier_gates,
    fixed_release_gates,
    reliance,
    reliance_gates,
)
from dxray.toyworld.truth_io import read_truth, write_truth

IDENTITY = Preprocessing(input_size=(32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@pytest.fixture(scope="module")
def images(world):
    images, _, _ = render_batch(world, sample_specs(world, 6, seed=3, mode="unbiased"))
    return images


# ---------------------------------------------------------------------------------------------
# Training plumbing: a few steps, saved, loaded back through the real loader
# ---------------------------------------------------------------------------------------------


def _tiny_classifier(world, path, seed=0):
    config = ToyClassifierConfig(steps=3, batch=8, width=4, hidden=8, eval_n=0)
    return train_classifier(world, path, config, RunSettings(seed=seed))


def test_tiny_classifier_run_saves_and_loads_with_identical_logits(world, images, tmp_path):
    lines = []
    config = ToyClassifierConfig(steps=3, batch=8, width=4, hidden=8, eval_n=0)
    trained = train_classifier(world, tmp_path / "c", config, RunSettings(progress=lines.append))
    loaded = load_classifier(tmp_path / "c")

    assert loaded.class_names == class_names(world)
    assert loaded.preprocessing.input_size == (32, 32)
    assert loaded.preprocessing.mean == (0.5, 0.5, 0.5)
    with torch.no_grad():
        expected = trained.model(loaded.preprocessing(images))
    assert torch.equal(loaded(images), expected)
    assert loaded.unit_channels("penultimate") == 8

    record = json.loads((tmp_path / "c" / TRAINING_FILE).read_text())
    assert (record["seed"], record["steps"], record["mode"]) == (0, 3, "biased")
    assert record["wall_seconds"] > 0
    assert record["factory"] == "dxray.toyworld.nets:toy_cnn"
    assert any("step 3/3" in line for line in lines)


def test_training_is_deterministic_by_seed(world, tmp_path):
    a = _tiny_classifier(world, tmp_path / "a", seed=1).model.state_dict()
    b = _tiny_classifier(world, tmp_path / "b", seed=1).model.state_dict()
    c = _tiny_classifier(world, tmp_path / "c", seed=2).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_fixed_mode_and_bad_mode(world, tmp_path):
    kwargs = dict(steps=1, batch=4, width=4, hidden=8, eval_n=0)
    fixed = ToyClassifierConfig(mode="fixed", **kwargs)
    trained = train_classifier(world, tmp_path / "f", fixed)
    assert trained.record.mode == "fixed"
    with pytest.raises(ValueError, match="mode"):
        train_classifier(world, tmp_path / "x", ToyClassifierConfig(mode="unbiased", steps=1))
    hide = ToyClassifierConfig(hide_object=0.5, **kwargs)
    hidden = train_classifier(world, tmp_path / "h", hide)
    assert hidden.record.data_options == {"hide_object": 0.5}
    with pytest.raises(ValueError, match="hide_object"):
        train_classifier(world, tmp_path / "x", ToyClassifierConfig(hide_object=1.0, steps=1))


def test_tiny_oracle_run_saves_and_loads(world, images, tmp_path):
    config = ToyOracleConfig(steps=2, batch=8, width=4, hidden=8, eval_n=0)
    trained = train_oracle(world, tmp_path / "o", config)
    oracle = load_classifier(tmp_path / "o")
    assert oracle.class_names == oracle_output_names(world)
    assert oracle.num_classes == len(class_names(world)) + 1 + len(context_names(world)) + 2
    with torch.no_grad():
        assert torch.equal(oracle(images), trained.model(oracle.preprocessing(images)))
    pred = oracle_predict(oracle, images)
    assert set(pred) == {"object", "context", "cue"}
    assert all(v.shape == (len(images),) for v in pred.values())
    assert json.loads((tmp_path / "o" / TRAINING_FILE).read_text())["kind"] == "oracle"


def test_oracle_predict_maps_none_to_minus_one(world, images):
    model = oracle_cnn(num_classes=5, num_contexts=5, num_cues=1, width=4, hidden=8).eval()
    for head, winner in ((model.object_head, 5), (model.context_head, 3), (model.cue_head, 1)):
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        head.bias.data[winner] = 10.0
    pred = oracle_predict(Classifier(model, IDENTITY), images)
    assert pred["object"].tolist() == [-1] * len(images)  # index 5 of 5 classes = none
    assert pred["context"].tolist() == [3] * len(images)
    assert pred["cue"].tolist() == [-1] * len(images)
    model.object_head.bias.data[2] = 20.0
    assert oracle_predict(Classifier(model, IDENTITY), images)["object"].tolist() == [2] * 6


def test_gaussian_blur():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16)
    assert torch.allclose(gaussian_blur(x, 0.0), x, atol=1e-6)
    blurred = gaussian_blur(x, torch.tensor([0.0, 1.0, 2.0]))
    assert torch.allclose(blurred[0], x[0], atol=1e-6)
    # More blur, less variation; a flat image stays flat.
    assert x[1].std() > blurred[1].std() > blurred[2].std()
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(gaussian_blur(flat, 1.5), flat, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The unit ranking: weight x mean activation, on a model whose activations are known
# ---------------------------------------------------------------------------------------------


class FixedUnits(nn.Module):
    """Penultimate units with known values: the same four activations for every image."""

    def __init__(self, values):
        super().__init__()
        self.register_buffer("values", torch.tensor(values))

    def forward(self, x):
        return self.values.expand(x.shape[0], -1) + 0.0 * x.mean()


class KnownNet(nn.Module):
    def __init__(self, values, weight):
        super().__init__()
        self.penultimate = FixedUnits(values)
        self.head = nn.Linear(len(values), len(weight))
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor(weight))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.penultimate(x))


def test_top_units_ranks_by_weight_times_activation(world):
    # activations 1, 2, 0, 0.5: unit 2 has the largest weight of class 0 but never fires.
    weight = [
        [1.0, 1.0, 10.0, -1.0],  # scores 1, 2, 0, -0.5 -> 1, 0, 2
        [3.0, -1.0, 0.0, 4.0],  # scores 3, -2, 0, 2 -> 0, 3, 2
        [0.0, 0.5, 0.0, 4.0],  # scores 0, 1, 0, 2 -> 3, 1, then the tie 0 / 2 to channel 0
        [-1.0, -1.0, -1.0, -1.0],  # scores -1, -2, 0, -0.5 -> 2, 3, 0
        [0.2, 0.0, 0.0, 0.0],  # scores 0.2, 0, 0, 0 -> 0, 1, 2
    ]
    model = KnownNet([1.0, 2.0, 0.0, 0.5], weight).eval()
    clf = Classifier(model, IDENTITY, class_names(world))
    ranked = top_units(clf, world, k=3, n=4, seed=0)

    expected = {"circle": [1, 0, 2], "square": [0, 3, 2], "triangle": [3, 1, 0]}
    expected |= {"star": [2, 3, 0], "cross": [0, 1, 2]}
    assert {c: [u.channel for u in units] for c, units in ranked.items()} == expected
    first = ranked["circle"][0]
    assert (first.unit, first.rank, first.weight, first.activation) == ("penultimate:1", 1, 1, 2)
    assert first.score == pytest.approx(2.0)
    assert [u.rank for u in ranked["square"]] == [1, 2, 3]


def test_rank_units_uses_each_class_row_of_activation():
    weight = torch.ones(2, 3)
    activation = torch.tensor([[0.1, 0.9, 0.5], [0.7, 0.0, 0.2]])
    ranked = rank_units(weight, activation, 2, class_names=["a", "b"], layer="fc")
    assert [u.channel for u in ranked["a"]] == [1, 2]
    assert [u.channel for u in ranked["b"]] == [0, 2]
    assert ranked["b"][0].unit == "fc:0"


def test_top_units_checks_the_head_and_layer(world):
    model = KnownNet([1.0, 2.0, 0.0, 0.5], [[1.0] * 4] * 5).eval()
    clf = Classifier(model, IDENTITY, class_names(world))
    with pytest.raises(ValueError, match="not a Linear"):
        top_units(clf, world, k=2, head="penultimate", n=2)
    with pytest.raises(ValueError, match="classes"):
        top_units(Classifier(model, IDENTITY, list("abcde")), world, k=2, n=2)


# ---------------------------------------------------------------------------------------------
# Ground truth on a hand-made classifier that calls anything blue a circle
# ---------------------------------------------------------------------------------------------


class Readouts(nn.Module):
    """Three hand-made units: blueness (water), object-colour coverage, brightness."""

    def __init__(self, object_colours):
        super().__init__()
        self.register_buffer("colours", torch.tensor(object_colours) / 255.0)  # [K, 3]

    def forward(self, x):
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        blueness = (b - (r + g) / 2).clamp_min(0).mean((1, 2))
        dist = ((x[:, None] - self.colours[None, :, :, None, None]) ** 2).sum(2)  # [B, K, H, W]
        coverage = torch.exp(-dist / (2 * 0.08**2)).amax(1).mean((1, 2))
        brightness = x.mean((1, 2, 3))
        return torch.stack([blueness, coverage, brightness], dim=1)


class BlueIsCircle(nn.Module):
    def __init__(self, world):
        super().__init__()
        self.penultimate = Readouts([list(c) for c in world.colours.values()])
        self.head = nn.Linear(3, 5)
        with torch.no_grad():
            self.head.weight.copy_(
                torch.tensor(
                    [
                        [4.0, 1.0, 0.0],  # circle: blueness and the object
                        [0.0, 1.0, 0.0],  # square: the object
                        [0.0, 1.0, -1.0],  # triangle: the object, and dark contexts
                        [0.0, 1.0, 0.0],  # star
                        [0.0, 1.0, 0.0],  # cross
                    ]
                )
            )
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.penultimate(x))


@pytest.fixture(scope="module")
def blue_classifier(world):
    return Classifier(BlueIsCircle(world).eval(), IDENTITY, class_names(world))


@pytest.fixture(scope="module")
def blue_truth(world, blue_classifier):
    return compute_truth(world, blue_classifier, n=30, seed=0, k=2)


def _row(class_table, cls, factor):
    return next(r for r in class_table.to_pylist() if (r["class"], r["factor"]) == (cls, factor))


def test_truth_tables_have_the_documented_columns(blue_truth, tmp_path):
    class_table, neuron_table = blue_truth
    assert class_table.schema == CLASS_TRUTH_SCHEMA
    assert neuron_table.schema == NEURON_TRUTH_SCHEMA
    for name, kind in [
        ("class", pa.string()),
        ("unit", pa.string()),
        ("selection", pa.string()),
        ("rank", pa.int32()),
        ("object_response", pa.float64()),
        ("context_response", pa.float64()),
        ("margin", pa.float64()),
        ("label", pa.string()),
    ]:
        assert neuron_table.schema.field(name).type == kind
    assert class_table.num_rows == 5 * 6  # classes x (5 contexts + 1 cue)
    selection = neuron_table.column("selection").to_pylist()
    assert selection.count("top") == 5 * 2  # classes x k, then any "factor" units
    assert set(selection) <= {"top", "factor"}
    assert set(neuron_table.column("label").to_pylist()) <= {"core", "spurious"}

    write_truth(tmp_path, class_table, neuron_table)
    back = read_truth(tmp_path)
    assert back[0].equals(class_table) and back[1].equals(neuron_table)


def test_class_level_reliance_finds_the_water_shortcut(world, blue_truth):
    class_table, _ = blue_truth
    water = reliance(class_table, "circle", "context", "water")
    others = [reliance(class_table, "circle", "context", c) for c in context_names(world)]
    others.append(reliance(class_table, "circle", "cue", "watermark"))
    assert water > 0.5
    assert water == max(others) and sorted(others)[-2] < water - 0.5
    row = _row(class_table, "circle", "water")
    assert row["planted"] and row["planted_p"] == 0.95 and row["rank"] == 1
    assert row["reliance_prob"] > 0
    assert row["reliance_logit"] == pytest.approx(row["mean_logit"] - row["baseline_logit"])


def test_with_object_lift_shows_what_a_probability_maximiser_can_gain(world):
    # Beside its object, water lifts the circle's logit (4 x blueness) and, while the object
    # alone leaves the class unsure, its probability too. Make the object alone decisive
    # (weight 60 on coverage) and the same logit lift buys no probability: a ce explanation
    # would have no reason to paint water.
    def truth(object_weight):
        net = BlueIsCircle(world)
        with torch.no_grad():
            net.head.weight[0, 1] = object_weight
        classifier = Classifier(net.eval(), IDENTITY, class_names(world))
        return compute_truth(world, classifier, n=30, seed=0, k=1)[0]

    unsure, decisive = truth(1.0), truth(60.0)
    for table in (unsure, decisive):
        water = _row(table, "circle", "water")
        assert water["with_object_logit"] > 0.3
        others = [_row(table, "circle", c)["with_object_logit"] for c in context_names(world)]
        assert water["with_object_logit"] == max(others)
        # The square's logit does not read blueness: water lifts it by nothing.
        assert abs(_row(table, "square", "water")["with_object_logit"]) < 0.01
    assert _row(unsure, "circle", "water")["with_object_logprob"] > 0.1
    assert abs(_row(decisive, "circle", "water")["with_object_logprob"]) < 1e-3


def test_neuron_level_labels_the_blueness_unit_spurious(blue_truth):
    _, neuron_table = blue_truth
    circle = {r["unit"]: r for r in neuron_table.to_pylist() if r["class"] == "circle"}
    assert set(circle) == {"penultimate:0", "penultimate:1"}
    blue, obj = circle["penultimate:0"], circle["penultimate:1"]
    assert blue["label"] == "spurious" and blue["factor"] == "water"
    assert blue["context_response"] > blue["object_response"] + 0.1
    # Circles are shown off water for the object response (with water it would be ~0.09).
    assert blue["object_response"] < 0.05
    assert blue["margin"] == pytest.approx(blue["context_response"] - blue["object_response"])
    assert obj["label"] == "core" and obj["margin"] < -0.1


def test_reliance_gates_pass_only_for_real_shortcuts(world, blue_truth):
    gates = {g.name: g for g in reliance_gates(world, blue_truth[0])}
    assert set(gates) == {f"reliance_margin:{c.name}" for c in world.correlations}
    assert gates["reliance_margin:circle-water"].passed
    # The triangle fires on dark contexts, and sand is bright: its planted reliance is absent.
    assert not gates["reliance_margin:triangle-sand"].passed
    assert gates["reliance_margin:triangle-sand"].value < 0


def test_fixed_release_gate_wants_the_removed_reliance_to_drop(world, blue_truth):
    table = blue_truth[0]

    def with_star_watermark(value):
        rows = table.to_pylist()
        for r in rows:
            if (r["class"], r["factor"]) == ("star", "watermark"):
                r["reliance_logit"] = value
        return pa.Table.from_pylist(rows, schema=CLASS_TRUTH_SCHEMA)

    [dropped] = fixed_release_gates(world, with_star_watermark(2.0), with_star_watermark(0.3))
    assert dropped.name == "fixed:removed_reliance:star-watermark" and dropped.passed
    [kept] = fixed_release_gates(world, with_star_watermark(2.0), with_star_watermark(1.5))
    assert not kept.passed


def test_classifier_gates_report_rows(world, blue_classifier, blue_truth):
    gates = classifier_gates(world, blue_classifier, n=40, seed=0, truth=blue_truth[0])
    names = [g.name for g in gates]
    assert names[0] == "classifier:unbiased_accuracy"
    assert "classifier:reliance_margin:circle-water" in names
    accuracy_gate = gates[0]
    # Colour coverage cannot tell shapes apart: far below the gate.
    assert accuracy_gate.value < 0.6 and not accuracy_gate.passed
    assert (accuracy_gate.op, accuracy_gate.threshold) == (">=", 0.95)


def test_toy_cnn_names_its_layers():
    model = toy_cnn(5, width=4, hidden=8)
    names = dict(model.named_modules())
    assert {"features.block3", "pool", "penultimate", "head"} <= set(names)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(ValueError, match="num_classes"):
        toy_cnn(1)
