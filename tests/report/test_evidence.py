"""Which renders a finding's strips show first: the least object, pairs kept side by side."""

from __future__ import annotations

from dxray.report.shortcuts import evidence


def _render(render_id, scene, seed, presence, overlay=None, variant="object_free", c=None):
    return {
        "render_id": render_id,
        "variant": variant,
        "scene": scene,
        "overlay": overlay,
        "class_index": c,
        "seed": seed,
        "object_presence": presence,
    }


def test_scene_strips_show_the_least_object_first():
    renders = [
        _render("w0", "water", 0, 0.45),
        _render("w1", "water", 1, None),  # not scored: last
        _render("w2", "water", 2, 0.02),
        _render("g0", "grass", 0, 0.30),
        _render("g1", "grass", 1, 0.01),
        _render("s0", "sand", 0, 0.20),
        _render("o0", "water", 0, 0.9, variant="with_object", c=1),
    ]
    strips = dict(evidence({"attribute": "water", "class_index": 1, "kind": "scene"}, renders))
    assert [r["render_id"] for r in strips["water, no object (least object first)"]] == [
        "w2",
        "w0",
        "w1",
    ]
    # the other scenes take turns, each scene's cleanest first
    assert [r["render_id"] for r in strips["the other scenes"]] == ["g1", "s0", "g0"]
    assert [r["render_id"] for r in strips["beside the object: on water"]] == ["o0"]


def test_overlay_strips_keep_their_pairs_in_the_same_order():
    mark = "a watermark"
    renders = [
        _render("m0", "water", 0, 0.40, overlay=mark),
        _render("m1", "water", 1, 0.05, overlay=mark),
        _render("m2", "grass", 0, 0.10, overlay=mark),
        _render("m3", "grass", 1, 0.00, overlay=mark),  # its plain pair was dropped
        _render("m4", "water", 4, 0.06, overlay=mark),
        _render("p0", "water", 0, 0.01),
        _render("p1", "water", 1, 0.30),
        _render("p2", "grass", 0, 0.02),
        _render("p4", "water", 4, 0.02),
    ]
    strips = dict(evidence({"attribute": mark, "class_index": 2, "kind": "overlay"}, renders))
    with_it = strips[f"with {mark}, no object (least object first)"]
    without = strips["the same scenes and seeds without it"]
    # the least object first, the scenes in turn (not water, water, grass)
    assert [r["render_id"] for r in with_it] == ["m1", "m2", "m4", "m0"]
    assert [(r["scene"], r["seed"]) for r in without] == [(r["scene"], r["seed"]) for r in with_it]
