"""The vocabulary: entries in, attributes and renders out; bad entries skipped with a reason."""

import pytest

from dxray.shortcuts.vocabulary import object_free_renders, parse_vocabulary, with_object_renders

TOY = ["water", "sand", {"name": "a watermark", "overlay": "with a watermark"}]


def test_strings_are_scenes_and_mappings_say_what_they_are():
    attributes, problems = parse_vocabulary(
        [*TOY, {"name": "a dark face", "prompt": "a portrait of a dark-skinned person"}]
    )
    assert problems == []
    assert [(a.name, a.kind, a.phrase) for a in attributes] == [
        ("water", "scene", "water"),
        ("sand", "scene", "sand"),
        ("a watermark", "overlay", "with a watermark"),
        ("a dark face", "scene", "a portrait of a dark-skinned person"),
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("", "an empty string"),
        ("   ", "an empty string"),
        (3, "neither a string"),
        (None, "neither a string"),
        ({"name": "x", "colour": "red"}, "unknown key"),
        ({"overlay": "with x"}, "has no name"),
        ({"name": "x", "prompt": "p", "overlay": "o"}, "pick one"),
        ({"name": ""}, "non-empty string"),
        ("water", "listed twice"),
    ],
)
def test_a_bad_entry_is_skipped_with_a_message(entry, message):
    attributes, problems = parse_vocabulary([*TOY, entry])
    assert [a.name for a in attributes] == ["water", "sand", "a watermark"]
    assert len(problems) == 1 and "attribute [3] skipped" in problems[0]
    assert message in problems[0]


def test_overlays_without_a_scene_cannot_be_rendered():
    attributes, problems = parse_vocabulary([{"name": "a mark", "overlay": "with a mark"}])
    assert attributes == [] and "no scene attribute" in problems[0]


def test_object_free_renders_every_scene_alone_and_with_every_overlay():
    attributes, _ = parse_vocabulary(TOY)
    renders = object_free_renders(attributes, "a photo of {}", seeds=range(3))
    prompts = sorted({r.prompt for r in renders})
    assert prompts == [
        "a photo of sand", "a photo of sand with a watermark",
        "a photo of water", "a photo of water with a watermark",
    ]  # fmt: skip
    assert len(renders) == 4 * 3 and len({r.key for r in renders}) == 12
    marked = [r for r in renders if r.overlay]
    assert {r.attribute for r in marked} == {"a watermark"}
    assert all(r.class_index is None and r.variant == "object_free" for r in renders)


def test_with_object_renders_put_each_class_object_on_every_scene():
    attributes, _ = parse_vocabulary(TOY)
    renders = with_object_renders(attributes, "{}", [0, 1], {0: "a circle", 3: "a star"})
    assert len(renders) == 2 * 4 * 2
    assert {r.prompt for r in renders if r.class_index == 0} == {
        "a circle on water", "a circle on water with a watermark",
        "a circle on sand", "a circle on sand with a watermark",
    }  # fmt: skip
    # class 0 and "no class" must not share keys
    free = object_free_renders(attributes, "{}", [0, 1])
    assert not {r.key for r in renders} & {r.key for r in free}
    assert len({r.key for r in renders}) == len(renders)


def test_a_template_needs_one_slot():
    attributes, _ = parse_vocabulary(TOY)
    with pytest.raises(ValueError, match="exactly once"):
        object_free_renders(attributes, "a photo", [0])


def test_a_very_long_attribute_is_skipped_and_not_echoed_in_full():
    attributes, problems = parse_vocabulary(["water", "w" * 5000, {"name": "x" * 5000}])
    assert [a.name for a in attributes] == ["water"]
    assert len(problems) == 2 and all("longer than 200 characters" in p for p in problems)
    assert all(len(p) < 200 for p in problems)
