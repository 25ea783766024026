"""Rendering (determinism, exact masks, captions) and spec sampling (planted statistics)."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from dxray.toyworld.data import (
    class_names,
    context_names,
    context_probs,
    cue_probs,
    sample_specs,
    scene_labels,
)
from dxray.toyworld.scenes import (
    SceneSpec,
    _pixel_centres,
    caption,
    caption_words,
    render,
    render_batch,
    shape_mask,
)
from dxray.toyworld.world import SHAPES, default_world, load_world


def _spec(**kw) -> SceneSpec:
    base = dict(
        shape="circle",
        colour="red",
        size=0.5,
        position=(0.5, 0.5),
        rotation=0.0,
        context="water",
        cue=None,
        seed=7,
    )
    return SceneSpec(**{**base, **kw})


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def test_render_is_bit_identical_for_the_same_spec(world):
    for spec in sample_specs(world, 40, seed=3, mode="unbiased"):
        a, b = render(world, spec), render(world, spec)
        assert a.image.tobytes() == b.image.tobytes()
        for key in ("object", "context", "cue"):
            assert np.array_equal(a.masks[key], b.masks[key])


@pytest.mark.parametrize("context", ["water", "grass", "sand", "brick", "sky", "snow"])
def test_different_seeds_give_different_textures(context):
    world = load_world("second") if context == "sky" else default_world()
    a = render(world, _spec(shape=None, colour=None, context=context, seed=1)).image
    b = render(world, _spec(shape=None, colour=None, context=context, seed=2)).image
    assert np.abs(a - b).mean() > 0.01


def test_image_shape_dtype_and_range(world):
    for size in (32, 48, 64):
        scene = render(replace(world, image_size=size), _spec(cue="watermark"))
        assert scene.image.shape == (3, size, size) and scene.image.dtype == np.float32
        assert scene.image.min() >= 0.0 and scene.image.max() <= 1.0
        assert all(m.shape == (size, size) and m.dtype == bool for m in scene.masks.values())


@pytest.mark.parametrize("name", ["default", "second"])
def test_masks_partition_the_image(name):
    world = load_world(name)
    specs = sample_specs(world, 60, seed=0, mode="unbiased")
    specs += sample_specs(world, 20, seed=1, mode="context_only")
    for spec in specs:
        m = render(world, spec).masks
        total = m["object"].astype(int) + m["context"].astype(int) + m["cue"].astype(int)
        assert (total == 1).all(), spec
        assert m["cue"].any() == (spec.cue is not None)
        assert m["object"].any() == (spec.shape is not None)


def test_circle_mask_equals_an_analytic_disc(world):
    spec = _spec(size=0.55, position=(0.43, 0.61))
    mask = render(world, spec).masks["object"]
    n = world.image_size
    # Independent test in pixel units: centre of pixel (i, j) is (j + 0.5, i + 0.5).
    i, j = np.mgrid[0:n, 0:n]
    d2 = (j + 0.5 - 0.43 * n) ** 2 + (i + 0.5 - 0.61 * n) ** 2
    r2 = (0.55 * n / 2) ** 2
    clear = np.abs(d2 - r2) > 1e-6  # skip pixel centres exactly on the rim
    assert np.array_equal(mask[clear], (d2 <= r2)[clear])
    assert abs(mask.sum() - np.pi * r2) < 0.05 * np.pi * r2
    # The object's pixels are exactly the object's colour.
    colour = np.array(world.colours["red"]) / 255.0
    assert np.allclose(render(world, spec).image[:, mask].T, colour, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_fits_its_disc_and_fills_some_of_it(shape):
    x, y = _pixel_centres(64, 64)
    mask = shape_mask(shape, x, y, 0.6, (0.5, 0.5), 33.0)
    r = 0.3 * 64  # `size` is the diameter of the disc every shape fits in
    d = np.hypot(x * 64 - 32, y * 64 - 32)
    assert (d[mask] <= r + 1e-9).all()
    assert 0.25 * np.pi * r**2 < mask.sum() <= 1.02 * np.pi * r**2


def test_rotation_turns_a_triangle_but_not_a_circle(world):
    def obj(**kw):
        return render(world, _spec(**kw)).masks["object"]

    assert not np.array_equal(obj(shape="triangle", rotation=0), obj(shape="triangle", rotation=90))
    assert np.array_equal(obj(rotation=0), obj(rotation=90))
    # Rotating by 90 degrees moves the triangle's apex from the top to the left side.
    rot = obj(shape="triangle", rotation=90, size=0.7)
    cols = np.nonzero(rot.any(axis=0))[0]
    rows = np.nonzero(rot.any(axis=1))[0]
    assert (rows.max() - rows.min()) > (cols.max() - cols.min())  # wider vertically now
    left_col = rot[:, cols.min()]
    assert left_col.sum() <= 2  # a point on the left, a flat side on the right


def test_context_only_scene_and_cue_masks(world):
    plain = render(world, _spec(shape=None, colour=None))
    assert not plain.masks["object"].any() and not plain.masks["cue"].any()
    assert plain.masks["context"].all()
    marked = render(world, _spec(shape=None, colour=None, cue="watermark"))
    cue = marked.masks["cue"]
    rows, cols = np.nonzero(cue)
    n = world.image_size
    assert rows.min() >= n // 2 and cols.min() >= n // 2  # default corner: bottom-right
    assert 10 <= cue.sum() <= 0.1 * n * n
    assert not np.array_equal(plain.image[:, cue], marked.image[:, cue])
    assert np.array_equal(plain.image[:, ~cue], marked.image[:, ~cue])


def test_watermark_visible_on_every_context(world):
    for context in context_names(world):
        plain = render(world, _spec(shape=None, colour=None, context=context))
        marked = render(world, _spec(shape=None, colour=None, context=context, cue="watermark"))
        cue = marked.masks["cue"]
        assert np.abs(marked.image[:, cue] - plain.image[:, cue]).mean() > 0.25, context


def test_cue_is_painted_over_the_object(world):
    # A big circle reaching into the watermark corner: the cue wins those pixels.
    scene = render(world, _spec(size=1.0, position=(0.75, 0.75), cue="watermark"))
    assert not (scene.masks["object"] & scene.masks["cue"]).any()
    disc = render(world, _spec(size=1.0, position=(0.75, 0.75))).masks["object"]
    assert (disc & scene.masks["cue"]).any()


def test_captions_follow_the_grammar(world):
    assert caption(_spec()) == "a red circle on water"
    assert caption(_spec(cue="watermark")) == "a red circle on water with a watermark"
    assert caption(_spec(colour="orange", shape="star")) == "an orange star on water"
    assert caption(_spec(shape=None, colour=None)) == "water"
    assert caption(_spec(shape=None, colour=None, context="grass", cue="watermark")) == (
        "grass with a watermark"
    )
    assert render(world, _spec(cue="watermark")).caption == "a red circle on water with a watermark"


def test_caption_words_cover_every_caption(world):
    words = set(caption_words(world))
    specs = sample_specs(world, 200, seed=0, mode="unbiased")
    specs += sample_specs(world, 50, seed=0, mode="context_only")
    for spec in specs:
        assert set(caption(spec).split()) <= words


def test_render_batch_matches_render(world):
    specs = sample_specs(world, 6, seed=5, mode="biased")
    images, masks, captions = render_batch(world, specs)
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.float32
    assert set(masks) == {"object", "context", "cue"}
    assert all(m.shape == (6, 32, 32) and m.dtype == torch.bool for m in masks.values())
    one = render(world, specs[4])
    assert np.array_equal(images[4].numpy(), one.image)
    assert np.array_equal(masks["cue"][4].numpy(), one.masks["cue"])
    assert captions[4] == one.caption


def test_render_rejects_unknown_names(world):
    with pytest.raises(ValueError, match="did you mean 'water'"):
        render(world, _spec(context="watr"))
    with pytest.raises(ValueError, match="seed"):
        render(world, _spec(seed=-1))


@pytest.mark.parametrize("name", ["default", "second"])
def test_contexts_are_told_apart_by_simple_statistics(name):
    # A nearest-centroid classifier on colour statistics separates the contexts, so a small CNN
    # certainly can; fails if two textures collapse onto each other.
    world = load_world(name)

    def features(context, seed):
        img = render(world, _spec(shape=None, colour=None, context=context, seed=seed)).image
        grad = [np.abs(np.diff(img, axis=a)).mean() for a in (1, 2)]
        return np.concatenate([img.mean(axis=(1, 2)), img.std(axis=(1, 2)), grad])

    contexts = context_names(world)
    train = np.array([[features(c, s) for s in range(10)] for c in contexts])
    centroids, spread = train.mean(axis=1), train.std(axis=(0, 1)) + 1e-6
    for k, c in enumerate(contexts):
        for s in range(100, 110):
            d = (((features(c, s) - centroids) / spread) ** 2).sum(axis=1)
            assert d.argmin() == k, (c, s)


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


def _rate(specs, cls, **factor):
    ((key, value),) = factor.items()
    chosen = [s for s in specs if s.shape == cls]
    return np.mean([getattr(s, key) == value for s in chosen]), len(chosen)


def test_biased_mode_plants_the_correlations(world):
    specs = sample_specs(world, 2000, seed=0, mode="biased")
    p, count = _rate(specs, "circle", context="water")
    assert count > 300 and abs(p - 0.95) < 0.03
    assert abs(_rate(specs, "triangle", context="sand")[0] - 0.9) < 0.04
    assert abs(_rate(specs, "star", cue="watermark")[0] - 0.9) < 0.04
    # Unplanted classes stay uniform over contexts, cue at its base rate.
    assert abs(_rate(specs, "square", context="water")[0] - 0.2) < 0.06
    assert abs(_rate(specs, "square", cue="watermark")[0] - 0.1) < 0.04


def test_unbiased_mode_is_uniform(world):
    specs = sample_specs(world, 2000, seed=0, mode="unbiased")
    assert abs(_rate(specs, "circle", context="water")[0] - 0.2) < 0.06
    assert abs(_rate(specs, "star", cue="watermark")[0] - 0.1) < 0.04
    labels = scene_labels(world, specs)
    assert np.allclose(np.bincount(labels.object) / 2000, 0.2, atol=0.03)
    assert np.allclose(np.bincount(labels.context) / 2000, 0.2, atol=0.03)


def test_fixed_mode_removes_only_the_released_correlation(world):
    specs = sample_specs(world, 2000, seed=0, mode="fixed")
    assert abs(_rate(specs, "star", cue="watermark")[0] - 0.1) < 0.04
    assert abs(_rate(specs, "circle", context="water")[0] - 0.95) < 0.03
    second = load_world("second")
    specs = sample_specs(second, 2000, seed=0, mode="fixed")
    assert abs(_rate(specs, "square", context="snow")[0] - 0.2) < 0.06
    assert abs(_rate(specs, "cross", cue="watermark")[0] - 0.9) < 0.04


def test_context_only_mode(world):
    specs = sample_specs(world, 500, seed=0, mode="context_only")
    assert all(s.shape is None and s.colour is None for s in specs)
    labels = scene_labels(world, specs)
    assert (labels.object == -1).all()
    assert np.allclose(np.bincount(labels.context) / 500, 0.2, atol=0.06)
    assert abs(labels.cue_present.mean() - 0.1) < 0.04


def test_sampling_is_deterministic_by_seed(world):
    assert sample_specs(world, 50, seed=4) == sample_specs(world, 50, seed=4)
    assert sample_specs(world, 50, seed=4) != sample_specs(world, 50, seed=5)
    # All factors are drawn every time, so "biased" and "fixed" share objects and positions.
    biased = sample_specs(world, 50, seed=4, mode="biased")
    fixed = sample_specs(world, 50, seed=4, mode="fixed")
    assert [(s.shape, s.position) for s in biased] == [(s.shape, s.position) for s in fixed]


def test_sampled_factors_respect_the_layout(world):
    specs = sample_specs(world, 300, seed=2, mode="unbiased")
    lo, hi = world.layout.size
    jit = world.layout.jitter
    assert all(lo <= s.size <= hi for s in specs)
    assert all(abs(c - 0.5) <= jit + 1e-4 for s in specs for c in s.position)
    assert all(s.rotation == 0.0 for s in specs if s.shape == "circle")
    assert len({s.rotation for s in specs if s.shape == "star"}) > 10


def test_labels_and_class_restriction(world):
    specs = sample_specs(world, 100, seed=1, classes=["star", "circle"])
    labels = scene_labels(world, specs)
    names = class_names(world)
    assert {names[i] for i in labels.object} == {"star", "circle"}
    assert [names[i] for i in labels.object] == [s.shape for s in specs]
    assert list(labels.cue_present) == [s.cue is not None for s in specs]
    with pytest.raises(ValueError, match="did you mean 'star'"):
        sample_specs(world, 10, seed=0, classes=["sta"])
    with pytest.raises(ValueError, match="mode"):
        sample_specs(world, 10, seed=0, mode="biassed")


def test_probability_tables():
    second = load_world("second")
    ctx = context_probs(second, "biased")
    cue = cue_probs(second, "biased")
    assert np.allclose(ctx.sum(axis=1), 1.0) and np.allclose(cue.sum(axis=1), 1.0)
    ring = class_names(second).index("ring")
    assert cue[ring, 1] == 0.8  # ring-frame planted
    assert cue[ring, 0] == pytest.approx(0.08)  # watermark keeps its base rate beside it
    assert np.allclose(context_probs(second, "unbiased"), 1 / len(second.contexts))
