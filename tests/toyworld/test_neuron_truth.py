"""Neuron-level ground truth: the "factor" selection (units that carry a planted shortcut into
the class logit) beside the audit's "top" units, and units.csv as an audit spec reads it."""

import pytest
import torch
import yaml
from torch import nn

from dxray.models.classifier import Classifier, Preprocessing
from dxray.models.classifier_io import load_classifier
from dxray.run.targets import expand_targets
from dxray.spec.parse import load_spec
from dxray.toyworld.data import class_names
from dxray.toyworld.run_settings import RunSettings
from dxray.toyworld.scenes import render_batch
from dxray.toyworld.train_classifier import ToyClassifierConfig, train_classifier
from dxray.toyworld.truth import NEURON_TRUTH_SCHEMA, _factor_scenes, compute_truth
from dxray.toyworld.truth_io import UNITS_FILE, read_truth, unit_pairs, write_truth

IDENTITY = Preprocessing(input_size=(32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


# ---------------------------------------------------------------------------------------------
# A hand-made classifier whose answer is known: the circle logit reads the object mostly and
# water a little, so water's unit is no top-1 unit of the circle but is its water unit.
# ---------------------------------------------------------------------------------------------


class Readouts(nn.Module):
    """Unit 0: blueness (water); unit 1: object-colour coverage; unit 2: brightness."""

    def __init__(self, object_colours):
        super().__init__()
        self.register_buffer("colours", torch.tensor(object_colours) / 255.0)

    def forward(self, x):
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        blueness = (b - (r + g) / 2).clamp_min(0).mean((1, 2))
        dist = ((x[:, None] - self.colours[None, :, :, None, None]) ** 2).sum(2)
        coverage = torch.exp(-dist / (2 * 0.08**2)).amax(1).mean((1, 2))
        return torch.stack([blueness, coverage, x.mean((1, 2, 3))], dim=1)


class MostlyObject(nn.Module):
    def __init__(self, world):
        super().__init__()
        self.penultimate = Readouts([list(c) for c in world.colours.values()])
        self.head = nn.Linear(3, len(world.classes))
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, 20.0, 0.0]] + [[0.0, 1.0, 0.0]] * 4))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.penultimate(x))


@pytest.fixture(scope="module")
def known_truth(world):
    clf = Classifier(MostlyObject(world).eval(), IDENTITY, class_names(world))
    return compute_truth(world, clf, n=30, seed=0, k=1)


def test_the_water_unit_of_the_circle_is_a_spurious_factor_unit(known_truth):
    _, table = known_truth
    assert table.schema == NEURON_TRUTH_SCHEMA
    circle = [r for r in table.to_pylist() if r["class"] == "circle"]
    assert [(r["unit"], r["selection"]) for r in circle] == [
        ("penultimate:1", "top"),  # the object: 20 x coverage beats 1 x blueness
        ("penultimate:0", "factor"),  # on water alone, blueness is what reaches the logit
    ]
    water = circle[1]
    assert (water["rank"], water["factor_kind"], water["factor"]) == (1, "context", "water")
    assert water["label"] == "spurious" and water["margin"] > 0.1
    assert water["margin"] == pytest.approx(water["context_response"] - water["object_response"])
    assert circle[0]["label"] == "core"


def test_factor_rows_only_for_planted_classes_and_never_twice(world, known_truth):
    _, table = known_truth
    rows = table.to_pylist()
    planted = {c.class_name for c in world.correlations}
    assert {r["class"] for r in rows if r["selection"] == "factor"} <= planted
    assert {r["selection"] for r in rows} == {"top", "factor"}
    # k=1 and one planted factor per class: each class has one top row, at most one more
    assert [r["class"] for r in rows if r["selection"] == "top"] == class_names(world)
    pairs = [(r["class"], r["unit"]) for r in rows]
    assert len(pairs) == len(set(pairs))


# ---------------------------------------------------------------------------------------------
# A small trained classifier: factor units are the top units by weight x factor activation
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "classifier"
    config = ToyClassifierConfig(steps=30, batch=32, width=4, hidden=8, eval_n=0)
    train_classifier(world, path, config, RunSettings(seed=0))
    clf = load_classifier(path)
    return clf, compute_truth(world, clf, n=20, seed=0, k=2)


def test_factor_units_of_a_trained_classifier(world, trained):
    clf, (_, table) = trained
    rows = table.to_pylist()
    factor_rows = [r for r in rows if r["selection"] == "factor"]
    assert factor_rows, "a tiny trained classifier has a factor unit outside its top units"
    weight = clf.model.head.weight.detach()
    scenes = _factor_scenes(world, 20, 0)
    names = class_names(world)
    for corr in world.correlations:
        cls, key = corr.class_name, (corr.kind, corr.context or corr.cue)
        images, _, _ = render_batch(world, scenes[key])
        with torch.no_grad():
            acts = clf.outputs(images, ["penultimate"]).units["penultimate"].mean(0)
        score = weight[names.index(cls)] * acts
        want = {f"penultimate:{j}" for j in score.argsort(descending=True)[:2].tolist()}
        mine = {r["unit"]: r for r in rows if r["class"] == cls}
        # every top unit for the factor is listed: as "factor", or as "top" if ranked there
        assert want <= set(mine)
        for unit in want:
            if mine[unit]["selection"] == "factor":
                j = int(unit.split(":")[1])
                assert mine[unit]["score"] == pytest.approx(float(score[j]), rel=1e-4, abs=1e-6)
    unplanted = set(names) - {c.class_name for c in world.correlations}
    assert not [r for r in factor_rows if r["class"] in unplanted]


def test_units_csv_round_trips_through_the_audit_spec(world, trained, tmp_path):
    _, (class_table, neuron_table) = trained
    out = write_truth(tmp_path / "truth", class_table, neuron_table)
    back = read_truth(out)
    assert back[0].equals(class_table) and back[1].equals(neuron_table)
    lines = (out / UNITS_FILE).read_text().splitlines()
    assert lines[0] == "class_index,feature_index"

    spec_yaml = {
        "name": "truth",
        "generator": "gen",
        "classifier": "clf",
        "segmenter": "seg",
        "targets": {"classes": "all", "units": {"layer": "penultimate", "csv": "truth/units.csv"}},
    }
    (tmp_path / "audit.yaml").write_text(yaml.safe_dump(spec_yaml))
    rows = expand_targets(load_spec(tmp_path / "audit.yaml"), class_names(world), "run-1")
    got = [(r["class_name"], f"{r['layer']}:{r['channel']}") for r in rows if r["kind"] == "unit"]
    want = [(r["class"], r["unit"]) for r in neuron_table.to_pylist()]
    assert got == want and len(lines) == 1 + len(want)


def test_unit_pairs_index_classes_in_the_world_order_and_want_one_layer(trained):
    _, (_, table) = trained
    pairs = unit_pairs(table, ["circle", "square", "triangle", "star", "cross"])
    first = table.to_pylist()[0]
    assert pairs[0] == (0, int(first["unit"].split(":")[1])) and first["class"] == "circle"
    with pytest.raises(ValueError, match="not one of"):
        unit_pairs(table, ["circle"])
    rows = table.to_pylist()
    rows[0]["unit"] = "features.block3:1"
    mixed = type(table).from_pylist(rows, schema=table.schema)
    with pytest.raises(ValueError, match="one layer"):
        unit_pairs(mixed, ["circle", "square", "triangle", "star", "cross"])
