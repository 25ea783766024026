"""Random toy worlds: seeded, within the recipe, valid configs in the existing format."""

from collections import Counter

import pytest

from dxray.toyworld.random_worlds import TieRecipe, random_world, ties_per_class, write_world
from dxray.toyworld.world import World, default_world, load_world


def test_a_world_is_a_pure_function_of_seed_and_index():
    assert random_world(3, 1) == random_world(3, 1)
    assert random_world(3, 1).correlations != random_world(3, 2).correlations
    assert random_world(3, 1).correlations != random_world(4, 1).correlations


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_worlds_follow_the_recipe(seed):
    base = default_world()
    for index in range(10):
        world = random_world(seed, index)
        # the base world's visuals: what the committed generator and segmenter know
        assert (world.classes, world.colours, world.contexts, world.cues) == (
            base.classes, base.colours, base.contexts, base.cues,
        )  # fmt: skip
        counts = ties_per_class(world)
        assert set(counts.values()) <= {0, 1, 2}
        assert 0 in counts.values() and any(counts.values())
        for cls, n in counts.items():
            kinds = sorted(c.kind for c in world.correlations if c.class_name == cls)
            if n == 2:
                assert kinds == ["context", "cue"]
        assert all(0.5 <= c.p <= 0.97 and round(c.p, 2) == c.p for c in world.correlations)
        assert len(world.fixed_release_removes) == 1
        assert world.fixed_release_removes[0] in {c.name for c in world.correlations}
        assert len(world.fixed().correlations) == len(world.correlations) - 1


def test_both_kinds_of_tie_and_graded_strengths_appear():
    worlds = [random_world(1, k) for k in range(20)]
    kinds = Counter(c.kind for w in worlds for c in w.correlations)
    assert kinds["context"] > 10 and kinds["cue"] > 10
    ps = [c.p for w in worlds for c in w.correlations]
    assert min(ps) < 0.6 and max(ps) > 0.9


def test_a_world_round_trips_through_its_yaml(tmp_path):
    world = random_world(2, 5)
    path = write_world(world, tmp_path / "w" / "world.yaml")
    loaded = load_world(path)
    assert loaded.correlations == world.correlations
    assert loaded.fixed_release_removes == world.fixed_release_removes
    assert World.from_dict(world.to_dict()) == World.from_dict(loaded.to_dict())


def test_bad_recipes_and_arguments_are_refused():
    with pytest.raises(ValueError, match="summing to 1"):
        TieRecipe(ties_per_class=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="p_range"):
        TieRecipe(p_range=(0.9, 0.5))
    with pytest.raises(ValueError, match=">= 0"):
        random_world(-1, 0)
