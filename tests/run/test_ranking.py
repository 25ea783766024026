"""The platform's unit ranking: head weight x activation on generator renders of the class."""

import torch

from dxray.models.classifier_io import load_classifier
from dxray.models.generator import load_generator
from dxray.run.pipeline import plan
from dxray.run.ranking import head_and_layer, rank_class_units
from dxray.spec.model import AuditSpec


def test_the_layer_feeding_the_head_is_found(tiny_zoo):
    clf = load_classifier(tiny_zoo / "classifier")
    assert head_and_layer(clf, None) == ("head", "penultimate")
    assert head_and_layer(clf, "features") == ("head", "features")


def test_ranking_is_weight_times_activation_on_the_class_renders(tiny_zoo):
    clf = load_classifier(tiny_zoo / "classifier")
    gen = load_generator(tiny_zoo / "generator")
    prompts = ["a circle", "a square", "a triangle", "a star", "a cross"]
    ranked = rank_class_units(clf, gen, prompts, k=3, n=4)
    assert sorted(ranked) == [0, 1, 2, 3, 4]
    from dxray.run.ranking import render_prompts

    images = render_prompts(gen, [prompts[2]], 4)
    act = clf.outputs(images, ["penultimate"]).units["penultimate"].mean(0)
    score = clf.model.head.weight[2] * act
    expected = torch.argsort(score, descending=True, stable=True)[:3].tolist()
    assert [ch for _, ch in ranked[2]] == expected
    assert all(layer == "penultimate" for layer, _ in ranked[2])


def test_plan_expands_top_k_units_per_class(tiny_spec):
    spec = AuditSpec.from_dict({**tiny_spec, "targets": {"units": {"top_k": 2}, "seeds": [0]}})
    run_id, targets, sha, _ = plan(spec)
    kinds = [t["kind"] for t in targets]
    assert kinds.count("class") == 5
    units = [t for t in targets if t["kind"] == "unit"]
    assert len(units) == 10  # 2 per class (a unit top for two classes is a target of each)
    assert all(t["layer"] == "penultimate" and t["class_index"] is not None for t in units)
    assert run_id.startswith("tiny-" + sha[:8])
