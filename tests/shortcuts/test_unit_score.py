"""The unit-shortcut test's scoring on hand-made renders: the factor, the object, the verdict."""

import math

import pytest

from dxray.shortcuts.unit_score import UnitRule, UnitTarget, unit_rows
from dxray.shortcuts.vocabulary import Attribute

WATER = Attribute("water", "scene", "water")
SAND = Attribute("sand", "scene", "sand")
MARK = Attribute("a watermark", "overlay", "with a watermark")


def _render(variant, scene, values, overlay=None, class_index=None, status="kept"):
    return {"variant": variant, "scene": scene, "overlay": overlay, "class_index": class_index,
            "status": status, "unit_means": [("fc", values)]}  # fmt: skip


def _world(water, sand, obj_water, obj_sand, n=8, mark=0.0):
    renders = []
    for i in range(n):
        jitter = 0.01 * i
        renders.append(_render("object_free", "water", [water + jitter, 1.0]))
        renders.append(_render("object_free", "sand", [sand + jitter, 1.0]))
        renders.append(_render("object_free", "sand", [mark + jitter, 1.0], overlay="a watermark"))
        renders.append(_render("with_object", "water", [obj_water + jitter, 5.0], class_index=0))
        renders.append(_render("with_object", "sand", [obj_sand + jitter, 5.0], class_index=0))
    return renders


def test_a_unit_that_water_drives_more_than_the_object_is_spurious():
    rows = unit_rows(_world(3.0, 0.1, 0.5, 0.4), [UnitTarget(0, "fc", 0)], [WATER, SAND], {})
    (row,) = rows
    assert row["verdict"] == "spurious" and row["factor"] == "water"
    assert row["factors_from"] == "vocabulary"
    assert row["margin"] == pytest.approx(3.0 - 0.45, abs=0.01)
    assert 0 < row["low"] <= row["margin"] <= row["high"]
    assert (row["factor_images"], row["object_images"]) == (8, 16)


def test_a_unit_its_object_drives_is_core_and_a_tie_is_uncertain():
    core = unit_rows(_world(0.2, 0.1, 2.0, 2.1), [UnitTarget(0, "fc", 0)], [WATER, SAND], {})
    assert core[0]["verdict"] == "core" and core[0]["high"] < 0
    # channel 1: 1.0 on every object-free image, 5.0 with the object
    assert (
        unit_rows(_world(0, 0, 0, 0), [UnitTarget(0, "fc", 1)], [WATER], {})[0]["verdict"] == "core"
    )
    tie = unit_rows(_world(1.0, 1.0, 1.0, 1.0), [UnitTarget(0, "fc", 0)], [WATER, SAND], {})
    assert tie[0]["verdict"] == "uncertain" and tie[0]["low"] <= 0 <= tie[0]["high"]


def test_the_class_findings_are_its_factors_and_their_scenes_leave_the_object_side():
    # Sand drives the unit, but the class's finding is water: the unit is judged on water,
    # and the object on water (the factor beside the object) is left out of the object side
    renders = _world(water=0.3, sand=4.0, obj_water=9.0, obj_sand=0.1)
    (row,) = unit_rows(renders, [UnitTarget(0, "fc", 0)], [WATER, SAND], {0: ["water"]})
    assert row["factors_from"] == "findings" and row["factor"] == "water"
    assert row["object_response"] == pytest.approx(0.1 + 0.035, abs=1e-6)
    assert row["verdict"] == "spurious"
    # an overlay factor reads its object-free images (the watermark on a scene)
    (mark,) = unit_rows(_world(0, 0, 0.2, 0.2, mark=2.0), [UnitTarget(0, "fc", 0)],
                        [WATER, SAND, MARK], {0: ["a watermark"]})  # fmt: skip
    assert mark["factor"] == "a watermark" and mark["verdict"] == "spurious"


def test_too_few_images_or_none_is_uncertain_with_a_note():
    few = unit_rows(_world(3.0, 0.1, 0.5, 0.4, n=1), [UnitTarget(0, "fc", 0)], [WATER], {})
    assert few[0]["verdict"] == "uncertain" and few[0]["note"] == "too few usable images"
    rejected = [dict(r, status="object") for r in _world(3.0, 0.1, 0.5, 0.4)]
    (none,) = unit_rows(rejected, [UnitTarget(0, "fc", 0)], [WATER], {})
    assert none["verdict"] == "uncertain" and "no usable" in none["note"]
    other_class = unit_rows(_world(3.0, 0.1, 0.5, 0.4), [UnitTarget(1, "fc", 0)], [WATER], {})
    assert other_class[0]["note"] == "no usable images of the class's object"


def test_the_rule_and_the_interval_are_reproducible():
    rule = UnitRule()
    assert rule.verdict(0.1, 0.5, (8, 8)) == "spurious"
    assert rule.verdict(-0.5, -0.1, (8, 8)) == "core"
    assert rule.verdict(-0.1, 0.1, (8, 8)) == "uncertain"
    assert rule.verdict(0.1, 0.5, (3, 8)) == "uncertain"
    assert rule.verdict(math.nan, 0.5, (8, 8)) == "uncertain"
    args = (_world(1.2, 0.1, 1.0, 0.9), [UnitTarget(0, "fc", 0)], [WATER, SAND], {})
    assert unit_rows(*args) == unit_rows(*args)


def test_object_seeds_reads_the_same_number_of_object_images_for_every_class():
    """With `object_seeds`, only the with-object images of seeds below it count: a class whose
    findings made more of them (all 16 seeds) is read on as many as the others."""
    renders = []
    for seed in range(16):
        renders.append({**_render("object_free", "water", [3.0 + 0.01 * seed]), "seed": seed})
        # the object drives the unit on the first 4 seeds only
        value = 6.0 if seed < 4 else 0.1
        renders.append(
            {**_render("with_object", "sand", [value + 0.01 * seed], class_index=0), "seed": seed}
        )
    unit = [UnitTarget(0, "fc", 0)]
    every = unit_rows(renders, unit, [WATER, SAND], {})[0]
    first4 = unit_rows(renders, unit, [WATER, SAND], {}, object_seeds=4)[0]
    assert every["object_images"] == 16 and first4["object_images"] == 4
    assert every["factor_images"] == first4["factor_images"] == 16  # object-free: all kept
    assert first4["verdict"] == "core" and every["verdict"] == "spurious"
