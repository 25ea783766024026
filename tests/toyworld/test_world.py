"""World config: the bundled worlds load, and every kind of typo fails with a useful message."""

from pathlib import Path

import pytest
import yaml

from dxray.toyworld.world import WORLDS_DIR, World, WorldConfigError, default_world, load_world


def _write(tmp_path: Path, data: dict, name: str = "world.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _default_data() -> dict:
    return yaml.safe_load((WORLDS_DIR / "default.yaml").read_text())


def _error(tmp_path: Path, data: dict) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(WorldConfigError) as info:
        load_world(path)
    message = str(info.value)
    assert str(path) in message  # every error names the file
    return message


def test_default_world_has_the_planted_correlations():
    world = default_world()
    assert world.image_size == 32
    assert len(world.classes) >= 5 and len(world.contexts) >= 4
    planted = {c.name: c.p for c in world.correlations}
    assert planted["circle-water"] == 0.95
    assert planted["star-watermark"] == 0.9
    assert world.fixed_release_removes == ("star-watermark",)
    assert world.cue_by_name["watermark"].base_rate == 0.1


def test_second_world_differs_and_loads_by_name():
    second = load_world("second")
    assert second == load_world(WORLDS_DIR / "second.yaml")
    assert {c.name for c in second.correlations} != {c.name for c in default_world().correlations}
    assert "square-snow" in {c.name for c in second.correlations}
    assert second.context_by_name["brick"].params["rows"] == 5.0  # override kept
    assert second.cue_by_name["frame"].kind == "border"


@pytest.mark.parametrize("name", ["default", "second"])
def test_world_round_trips_through_a_dict(name):
    world = load_world(name)
    assert World.from_dict(world.to_dict()) == world


def test_fixed_release_drops_only_the_named_correlation():
    world = default_world()
    fixed = world.fixed()
    assert {c.name for c in fixed.correlations} == {"circle-water", "triangle-sand"}
    assert fixed.classes == world.classes and fixed.contexts == world.contexts


def test_typo_in_a_correlation_context_names_the_field_and_suggests(tmp_path):
    data = _default_data()
    data["correlations"][1]["context"] = "sandd"
    message = _error(tmp_path, data)
    assert "correlations[1].context" in message
    assert "did you mean 'sand'" in message
    assert "water" in message  # lists what is allowed


def test_unknown_top_level_key(tmp_path):
    data = _default_data()
    data["corelations"] = data.pop("correlations")
    message = _error(tmp_path, data)
    assert "unknown key 'corelations'" in message
    assert "did you mean 'correlations'" in message


@pytest.mark.parametrize("p", [1.5, -0.1, "high"])
def test_probability_out_of_range(tmp_path, p):
    data = _default_data()
    data["correlations"][0]["p"] = p
    assert "correlations[0].p" in _error(tmp_path, data)


def test_duplicate_class_names(tmp_path):
    data = _default_data()
    data["classes"][1] = {"name": "circle"}
    message = _error(tmp_path, data)
    assert "classes[1].name" in message and "duplicate class name 'circle'" in message


def test_fewer_than_two_classes(tmp_path):
    data = _default_data()
    data["classes"] = [{"name": "circle"}]
    data["correlations"] = [c for c in data["correlations"] if c["class"] == "circle"]
    data.pop("fixed_release")
    assert "classes: needs at least 2 entries" in _error(tmp_path, data)


def test_unknown_texture_parameter_suggests(tmp_path):
    data = _default_data()
    data["contexts"][0]["params"] = {"ripple": 3}
    message = _error(tmp_path, data)
    assert "contexts[0].params.ripple" in message and "did you mean 'ripples'" in message


def test_unknown_shape_and_cue(tmp_path):
    data = _default_data()
    data["classes"].append({"name": "blob"})
    assert "classes[5].shape" in _error(tmp_path, data)
    data = _default_data()
    data["correlations"][2]["cue"] = "watermakr"
    assert "did you mean 'watermark'" in _error(tmp_path, data)


def test_fixed_release_must_name_a_correlation(tmp_path):
    data = _default_data()
    data["fixed_release"]["remove"] = ["star-watermakr"]
    message = _error(tmp_path, data)
    assert "fixed_release.remove[0]" in message and "did you mean 'star-watermark'" in message


def test_two_contexts_for_one_class_conflict(tmp_path):
    data = _default_data()
    data["correlations"].append({"class": "circle", "context": "grass", "p": 0.5})
    assert "already has a planted context" in _error(tmp_path, data)


def test_correlation_needs_exactly_one_target(tmp_path):
    data = _default_data()
    data["correlations"][0]["cue"] = "watermark"
    assert "exactly one of 'context' or 'cue'" in _error(tmp_path, data)


def test_bad_image_size_and_colour(tmp_path):
    data = _default_data()
    data["image_size"] = 40
    assert "image_size" in _error(tmp_path, data)
    data = _default_data()
    data["colours"]["red"] = [300, 0, 0]
    assert "colours.red" in _error(tmp_path, data)


def test_duplicate_yaml_key_is_an_error(tmp_path):
    text = (
        (WORLDS_DIR / "default.yaml")
        .read_text()
        .replace("image_size: 32", "image_size: 32\nimage_size: 64")
    )
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(WorldConfigError, match="duplicate key 'image_size'"):
        load_world(path)


def test_unknown_bundled_world_suggests():
    with pytest.raises(WorldConfigError, match="did you mean 'second'"):
        load_world("secnd")
