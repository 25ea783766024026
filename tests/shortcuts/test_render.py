"""Rendering from text and the checks that decide which images count."""

import torch

from dxray.explain.sampler import SamplerConfig
from dxray.shortcuts.render import check_images, render_text

OBJECTS = ["a cat", "a dog", "a boat"]


class FakeClassifier:
    """Logits are the image's first pixel row: image i says what it wants to be."""

    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self, logits):
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def outputs(self, images, layers=()):
        return type("Out", (), {"logits": self.logits[: images.shape[0]]})()


class FakeSegmenter:
    """presence[i][query]: what image i shows; everything else is absent. Counts queries."""

    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self, presence):
        self.presence = presence
        self.asked = []

    def probe(self, images, queries):
        self.asked.append(list(queries))
        return torch.tensor([[self.presence[i].get(q, 0.0) for q in queries] for i in range(4)])


def test_an_image_with_an_object_is_dropped_and_one_without_the_attribute_too():
    seg = FakeSegmenter(
        [
            {"water": 0.9},  # object-free and shows water: kept
            {"water": 0.9, "a dog": 0.8},  # a dog slipped in: dropped
            {"water": 0.1},  # no water: dropped
            {"water": 0.9, "a boat": 0.3},  # a faint boat, under the cut: kept
        ]
    )
    clf = FakeClassifier([[0.0, 1.0, 2.0]] * 4)
    out = check_images(clf, seg, torch.zeros(4, 3, 8, 8), ["water"] * 4, OBJECTS)
    assert out.status == ["kept", "object", "no attribute", "kept"]
    assert out.object_query[1] == "a dog" and abs(float(out.object_presence[1]) - 0.8) < 1e-6
    assert out.logits.shape == (4, 3)
    # One probe call: every object and the attribute, each image encoded once
    assert seg.asked == [[*OBJECTS, "water"]]


def test_top_k_checks_only_the_likeliest_classes():
    seg = FakeSegmenter([{"sand": 1.0, "a cat": 0.9}] * 4)
    # the classifier thinks "boat" then "dog": the cat is not checked
    clf = FakeClassifier([[-5.0, 1.0, 2.0]] * 4)
    out = check_images(clf, seg, torch.zeros(4, 3, 8, 8), ["sand"] * 4, OBJECTS, top_k=2)
    assert out.status == ["kept"] * 4
    assert sorted(seg.asked[0][:-1]) == ["a boat", "a dog"]
    all_of_them = check_images(clf, seg, torch.zeros(4, 3, 8, 8), ["sand"] * 4, OBJECTS)
    assert all_of_them.status == ["object"] * 4


def test_a_with_object_image_needs_its_own_object():
    seg = FakeSegmenter(
        [{"water": 1.0, "a cat": 0.9}, {"water": 1.0}, {"water": 1.0, "a dog": 0.9}, {}]
    )
    clf = FakeClassifier([[0.0, 0.0, 0.0]] * 4)
    own = [0, 0, 0, None]
    out = check_images(clf, seg, torch.zeros(4, 3, 8, 8), ["water"] * 4, OBJECTS, own_object=own)
    assert out.status == ["kept", "no object", "no object", "no attribute"]


def test_render_text_gives_one_image_per_prompt_and_seed(tiny_generator, tiny_tokenizer):
    config = SamplerConfig(steps=1)
    images = render_text(tiny_generator, ["a cat", "a dog", "a cat"], [0, 0, 1], config)
    assert images.shape[0] == 3 and images.min() >= 0 and images.max() <= 1
    alone = render_text(tiny_generator, ["a cat"], [1], config)
    assert torch.allclose(alone[0], images[2], atol=1e-5)  # a row's image is its own
    assert not torch.allclose(images[0], images[2])  # another seed, another image
