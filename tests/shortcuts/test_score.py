"""Scoring the shortcut test on hand-made logits: a planted lift is found, nothing else is."""

import math

import pytest
import torch

from dxray.shortcuts.score import FindingRule, centred, lift_rows, paired_lift, scene_lifts
from dxray.shortcuts.vocabulary import parse_vocabulary

SCENES = ["water", "grass", "sand", "snow"]


def _records(logits_of, seeds=16, overlay=None, overlay_logits_of=None):
    """Image records of every scene (and the overlay on every scene), all kept."""
    rows = []
    for scene in SCENES:
        for seed in range(seeds):
            rows.append(_record(scene, None, seed, logits_of(scene, seed)))
            if overlay is not None:
                rows.append(_record(scene, overlay, seed, overlay_logits_of(scene, seed)))
    return rows


def _record(scene, overlay, seed, logits, status="kept", variant="object_free", class_index=None):
    return {
        "variant": variant,
        "scene": scene,
        "overlay": overlay,
        "class_index": class_index,
        "seed": seed,
        "status": status,
        "logits": logits,
    }


def _noise(scene, seed, classes=4, scale=0.3):
    g = torch.Generator().manual_seed(hash((scene, seed)) % 2**31)
    return (torch.randn(classes, generator=g) * scale).tolist()


def _found(rows):
    return {(r["class_index"], r["attribute"]) for r in rows if r["finding"]}


def test_a_planted_scene_lift_is_found_and_nothing_else():
    def logits(scene, seed):
        z = _noise(scene, seed)
        if scene == "sand":
            z[2] += 2.5  # class 2 fires on sand alone
        return z

    attributes, _ = parse_vocabulary(SCENES)
    rows = lift_rows(_records(logits), attributes, num_classes=4)
    assert _found(rows) == {(2, "sand")}
    sand = next(r for r in rows if r["class_index"] == 2 and r["attribute"] == "sand")
    # Centred and measured over the mean scene: 2.5 * (1 - 1/4 classes) * (1 - 1/4 scenes)
    assert sand["lift"] == pytest.approx(2.5 * 0.75 * 0.75, abs=0.2)
    assert sand["low"] < sand["lift"] < sand["high"]
    assert sand["images"] == 16 and sand["rendered"] == 16


def test_a_constant_classifier_finds_nothing():
    attributes, _ = parse_vocabulary(SCENES)
    rows = lift_rows(_records(lambda s, k: [1.0, 5.0, -2.0, 0.0]), attributes, num_classes=4)
    assert not _found(rows)
    assert all(r["lift"] == pytest.approx(0.0, abs=1e-9) for r in rows)


def test_noise_alone_finds_nothing():
    attributes, _ = parse_vocabulary(SCENES)
    rows = lift_rows(_records(lambda s, k: _noise(s, k, scale=1.0)), attributes, num_classes=4)
    assert not _found(rows)


def test_saturation_does_not_hide_a_lift():
    """Class 0 is certain on every image (p ~ 1): water adds nothing to its probability but 2
    nats to its logit. The test scores logits, so it is found."""

    def logits(scene, seed):
        z = [30.0, 0.0, 0.0, 0.0]
        z[0] += 2.0 if scene == "water" else 0.0
        return [v + e for v, e in zip(z, _noise(scene, seed, scale=0.1), strict=True)]

    probs = torch.tensor([logits("water", 0), logits("grass", 0)]).softmax(1)[:, 0]
    assert float(probs[0] - probs[1]) < 1e-9  # the probability cannot see it
    attributes, _ = parse_vocabulary(SCENES)
    rows = lift_rows(_records(logits), attributes, num_classes=4)
    assert (0, "water") in _found(rows)


def test_an_overlay_is_scored_by_paired_differences():
    def base(scene, seed):
        z = _noise(scene, seed)
        z[3] += {"water": 4.0, "grass": -4.0}.get(scene, 0.0)  # scenes differ a lot ...
        return z

    def marked(scene, seed):
        z = base(scene, seed)
        z[3] += 1.6  # ... the watermark adds the same on each: pairing removes the scenes
        return z

    attributes, _ = parse_vocabulary([*SCENES, {"name": "a mark", "overlay": "with a mark"}])
    rows = lift_rows(_records(base, overlay="a mark", overlay_logits_of=marked), attributes, 4)
    mark = next(r for r in rows if r["class_index"] == 3 and r["attribute"] == "a mark")
    assert mark["lift"] == pytest.approx(1.6 * 0.75, abs=1e-6)  # centred over 4 classes
    assert mark["images"] == 4 * 16 and mark["kind"] == "overlay"
    assert (3, "a mark") in _found(rows)


def test_dropped_images_do_not_count_and_too_few_give_a_note():
    def logits(scene, seed):
        z = _noise(scene, seed)
        z[1] += 5.0 if scene == "snow" else 0.0
        return z

    rows = _records(logits)
    for r in rows:
        if r["scene"] == "snow" and r["seed"] >= 3:
            r["status"] = "object"  # the generator slipped an object in: not object-free
    attributes, _ = parse_vocabulary(SCENES)
    out = lift_rows(rows, attributes, num_classes=4)
    snow = next(r for r in out if r["class_index"] == 1 and r["attribute"] == "snow")
    assert snow["images"] == 3 and snow["dropped_object"] == 13
    assert not snow["finding"]  # a large lift, but on 3 images: the rule wants 4
    assert "3 usable images of 16" in snow["note"] and "failed the object check" in snow["note"]


def test_an_attribute_never_found_has_no_lift_and_says_why():
    rows = _records(lambda s, k: _noise(s, k))
    for r in rows:
        if r["scene"] == "snow":
            r["status"] = "no attribute"
    attributes, _ = parse_vocabulary(SCENES)
    out = lift_rows(rows, attributes, num_classes=4)
    snow = [r for r in out if r["attribute"] == "snow"]
    assert all(r["lift"] is None and not r["finding"] for r in snow)
    assert "the segmenter did not find it" in snow[0]["note"]
    # The other scenes are still scored against each other
    assert all(r["lift"] is not None for r in out if r["attribute"] != "snow")


def test_with_object_rows_cover_only_the_classes_rendered_with_their_object():
    attributes, _ = parse_vocabulary(SCENES)
    rows = _records(lambda s, k: _noise(s, k))
    for scene in SCENES:
        for seed in range(8):
            z = _noise(scene, seed + 100)
            z[2] += 10.0 + (1.0 if scene == "water" else 0.0)
            rows.append(_record(scene, None, seed, z, variant="with_object", class_index=2))
    out = lift_rows(rows, attributes, num_classes=4)
    beside = [r for r in out if r["method"] == "with_object"]
    assert {r["class_index"] for r in beside} == {2} and len(beside) == len(SCENES)
    water = next(r for r in beside if r["attribute"] == "water")
    assert water["lift"] == pytest.approx(0.75 * 0.75, abs=0.25)


def test_intervals_are_reproducible_and_cover_the_mean():
    z = {"a": torch.randn(16, 3, dtype=torch.float64), "b": torch.randn(16, 3).double()}
    one, two = scene_lifts(z), scene_lifts(z)
    assert torch.equal(one["a"].low, two["a"].low) and torch.equal(one["a"].high, two["a"].high)
    assert bool((one["a"].low <= one["a"].lift).all() and (one["a"].lift <= one["a"].high).all())
    paired = paired_lift(torch.randn(20, 3, dtype=torch.float64))
    assert bool((paired.low <= paired.lift).all())
    empty = paired_lift(torch.zeros((0, 3), dtype=torch.float64))
    assert empty.images == 0 and math.isnan(float(empty.lift[0]))


def test_centred_logits_ignore_what_every_class_gets():
    logits = torch.tensor([[1.0, 2.0, 3.0], [11.0, 12.0, 13.0]])
    assert torch.allclose(centred(logits)[0], centred(logits)[1])
    with pytest.raises(ValueError, match="C >= 2"):
        centred(torch.zeros(3, 1))


def test_the_finding_rule():
    rule = FindingRule()
    assert rule.finds(1.2, 0.3, 16)
    assert not rule.finds(0.9, 0.5, 16)  # below 1 nat
    assert not rule.finds(1.5, -0.1, 16)  # interval reaches 0
    assert not rule.finds(3.0, 2.0, 3)  # too few images
    assert not rule.finds(math.nan, math.nan, 16)
    with pytest.raises(ValueError):
        FindingRule(confidence=1.0)


def test_object_free_explanations_single_out_what_the_top_images_share():
    from dxray.shortcuts.discover import candidates

    n = 40
    # pool: "water" in every 4th image, "sand" in three of every four (those too)
    presence = torch.zeros(n, 2)
    presence[::4, 0] = 0.9
    presence[:, 1] = 0.9
    presence[1::4, 1] = 0.0
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(0)) * 0.1
    z[::4, 1] += 3.0  # class 1 fires on the water images
    rows = candidates(z, presence, ["water", "sand"], top=8)
    leads = {(r["class_index"], r["attribute"]) for r in rows if r["candidate"]}
    # water: in all 8 of class 1's top images vs 25% of the pool. Sand is in those images too,
    # but it is in 75% of the pool: 25 points above is not enough
    water = next(r for r in rows if r["class_index"] == 1 and r["attribute"] == "water")
    assert water["rate"] == 1.0 and water["pool_rate"] == 0.25
    assert (1, "water") in leads and (1, "sand") not in leads
    assert all(c == 1 for c, _ in leads)
    # an image that may not be chosen (an object left after erasing) is never chosen
    usable = torch.ones(n, dtype=torch.bool)
    usable[::4] = False
    rows = candidates(z, presence, ["water", "sand"], top=8, usable=usable)
    assert not any(r["candidate"] and r["attribute"] == "water" for r in rows)
    assert all(set(r["chosen"]).isdisjoint(range(0, n, 4)) for r in rows)


def test_the_candidate_rule_asks_for_enrichment_and_a_lift_across_the_pool():
    """Water is in 65% of the pool: 8 of 8 of a class's best images is enriched (0.65^8 = 3%),
    7 of 8 is not (17%). Snow is in 1%: 2 of 8 is enriched (the share rule of >= 75% never
    singled out a rare attribute or one of two ties). Either way the class's score must rise
    with the attribute across the pool by the test's 1 nat."""
    from dxray.shortcuts.discover import CandidateRule, binomial_tail

    assert binomial_tail(8, 8, 0.65) == pytest.approx(0.65**8)
    assert binomial_tail(0, 8, 0.3) == pytest.approx(1.0)
    rule = CandidateRule()
    assert rule.singles_out(8, 8, 0.65, 1.5) and not rule.singles_out(7, 8, 0.65, 1.5)
    assert rule.singles_out(2, 8, 0.01, 1.2) and not rule.singles_out(1, 8, 0.01, 1.2)
    assert not rule.singles_out(8, 8, 0.65, 0.4)  # common among its best, no lift: no lead
    assert not rule.singles_out(8, 8, 0.01, math.nan)
    assert not rule.singles_out(0, 8, 0.0, 2.0)


def test_a_class_with_two_ties_has_both_singled_out():
    """Class 1 fires on water (every 4th image) and on snow (2 images of 80): its 8 best share
    them (6 and 2); both are candidates, with their pool lifts."""
    from dxray.shortcuts.discover import candidates

    n = 80
    presence = torch.zeros(n, 3)
    presence[::4, 0] = 0.9  # water
    presence[[2, 3], 1] = 0.9  # snow
    presence[:, 2] = 0.9  # grass everywhere but in the water and snow images
    presence[::4, 2] = 0.0
    presence[[2, 3], 2] = 0.0
    z = torch.randn(n, 3, generator=torch.Generator().manual_seed(0)) * 0.1
    z[::4, 1] += 3.0
    z[[2, 3], 1] += 3.5
    rows = candidates(z, presence, ["water", "snow", "grass"], top=8)
    got = {(r["class_index"], r["attribute"]): r for r in rows}
    assert got[(1, "water")]["candidate"] and got[(1, "snow")]["candidate"]
    assert got[(1, "water")]["rate"] == 0.75 and got[(1, "snow")]["rate"] == 0.25
    assert got[(1, "snow")]["pool_lift"] > 2.5
    assert not got[(1, "grass")]["candidate"] and got[(1, "grass")]["pool_lift"] < 0
    assert not any(r["candidate"] for r in rows if r["class_index"] != 1)
