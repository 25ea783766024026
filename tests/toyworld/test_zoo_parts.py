"""Zoo parts: own folders first, then the manifest's shared ones, checked against the zoo's
world; the zoo's world; and the committed reshuffled zoo that shares the default's models."""

import json
import os

import pytest
import yaml

from dxray.models.classifier_io import load_classifier
from dxray.run.targets import expand_targets
from dxray.spec.parse import load_spec
from dxray.toyworld.data import class_names
from dxray.toyworld.gates import GATES_FILE
from dxray.toyworld.scenes import caption_words
from dxray.toyworld.truth import NEURON_TRUTH_SCHEMA
from dxray.toyworld.truth_io import UNITS_FILE, read_truth
from dxray.toyworld.world import load_world
from dxray.toyworld.zoo import (
    DEFAULT_ZOO,
    MANIFEST_FILE,
    TRUTH_RECORD,
    ZOOS_DIR,
    ZooError,
    build_tiny_zoo,
    check_shared_part,
    check_zoo,
    has_part,
    read_manifest,
    write_zoo_truth,
    zoo_part,
    zoo_world,
)

RESHUFFLED_ZOO = ZOOS_DIR / "reshuffled"


def _manifest(zoo, **data):
    zoo.mkdir(parents=True, exist_ok=True)
    (zoo / MANIFEST_FILE).write_text(json.dumps(data))
    return zoo


def _tokenizer(folder, words):
    """A tokenizer.json holding `words` as whole-word tokens (and a few byte pieces)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"a": 0, "b": 1} | {f"{w}</w>": i + 2 for i, w in enumerate(words)}
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": vocab}}))


# ---------------------------------------------------------------------------------------------
# zoo_part
# ---------------------------------------------------------------------------------------------


def test_own_part_comes_before_the_shared_one(tmp_path):
    (tmp_path / "other" / "truth").mkdir(parents=True)
    zoo = _manifest(tmp_path / "mine", world="default", shared={"truth": "../other/truth"})
    assert zoo_part(zoo, "truth") == tmp_path / "other" / "truth"  # normalised, no ".."
    assert has_part(zoo, "truth")
    (zoo / "truth").mkdir()
    assert zoo_part(zoo, "truth") == zoo / "truth"


def test_a_missing_part_names_itself_and_how_to_make_it(tmp_path):
    zoo = _manifest(tmp_path / "z", world="reshuffled")
    assert not has_part(zoo, "classifier")
    with pytest.raises(ZooError) as info:
        zoo_part(zoo, "classifier")
    message = str(info.value)
    assert "has no classifier" in message and MANIFEST_FILE in message
    assert f"dxray zoo train --out {zoo} --world reshuffled --parts classifiers" in message
    with pytest.raises(ZooError, match="no oracle"):
        check_zoo(zoo)  # check_zoo finds its parts with zoo_part
    with pytest.raises(ValueError, match="unknown zoo part 'clasifier'"):
        zoo_part(zoo, "clasifier")


def test_a_shared_path_that_is_not_there_is_an_error(tmp_path):
    zoo = _manifest(tmp_path / "z", world="default", shared={"oracle": "../gone/oracle"})
    with pytest.raises(ZooError, match="shared from '../gone/oracle'.*not a folder"):
        zoo_part(zoo, "oracle")


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"wrld": "default"}, "unknown key"),
        ({"shared": {"vae": "../x"}}, "shared.vae: not a part"),
        ({"shared": ["../x"]}, "shared: expected an object"),
        ({"world": 3}, "world: expected"),
    ],
)
def test_bad_manifests_name_the_field(tmp_path, data, expected):
    zoo = _manifest(tmp_path / "z", **data)
    with pytest.raises(ZooError, match=expected):
        read_manifest(zoo)


def test_a_shared_generator_must_know_every_caption_word(tmp_path):
    world = load_world("default")
    _tokenizer(tmp_path / "other" / "generator" / "tokenizer", caption_words(world))
    ok = _manifest(tmp_path / "ok", world="reshuffled", shared={"generator": "../other/generator"})
    assert zoo_part(ok, "generator") == tmp_path / "other" / "generator"
    # The second world draws hearts in the sky: words this generator never learned.
    bad = _manifest(tmp_path / "bad", world="second", shared={"generator": "../other/generator"})
    with pytest.raises(ZooError) as info:
        zoo_part(bad, "generator")
    message = str(info.value)
    assert "'heart'" in message and "'sky'" in message and "world 'second'" in message
    assert "--parts generator" in message


def test_a_shared_oracle_must_have_the_world_outputs():
    with pytest.raises(ZooError, match="world 'second' needs"):
        check_shared_part("oracle", DEFAULT_ZOO / "oracle", load_world("second"))
    check_shared_part("oracle", DEFAULT_ZOO / "oracle", load_world("reshuffled"))
    check_shared_part("classifier", DEFAULT_ZOO / "classifier", load_world("reshuffled"))


# ---------------------------------------------------------------------------------------------
# zoo_world
# ---------------------------------------------------------------------------------------------


def test_zoo_world_of_the_committed_zoos():
    assert zoo_world(DEFAULT_ZOO) == load_world("default")
    assert zoo_world(RESHUFFLED_ZOO) == load_world("reshuffled")


def test_zoo_world_without_a_manifest_reads_the_records(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / GATES_FILE).write_text(json.dumps({"world": "second"}))
    assert zoo_world(tmp_path / "a").name == "second"
    (tmp_path / "b" / "classifier").mkdir(parents=True)
    (tmp_path / "b" / "classifier" / "training.json").write_text(json.dumps({"world": "default"}))
    assert zoo_world(tmp_path / "b").name == "default"
    (tmp_path / "c").mkdir()
    with pytest.raises(ZooError, match="cannot tell its world"):
        zoo_world(tmp_path / "c")
    _manifest(tmp_path / "d", world="nowhere")
    with pytest.raises(ZooError, match="'nowhere' of its zoo.json"):
        zoo_world(tmp_path / "d")


def test_zoo_world_reads_a_yaml_next_to_the_zoo(tmp_path):
    text = (ZOOS_DIR.parent / "worlds" / "second.yaml").read_text()
    (tmp_path / "mine.yaml").write_text(text.replace("name: second", "name: mine"))
    zoo = _manifest(tmp_path / "z", world="../mine.yaml")
    assert zoo_world(zoo).name == "mine"


# ---------------------------------------------------------------------------------------------
# The truth writer on a tiny zoo
# ---------------------------------------------------------------------------------------------


def test_write_zoo_truth_on_a_tiny_zoo(tmp_path):
    zoo = build_tiny_zoo(tmp_path / "zoo")
    assert zoo_world(zoo).name == "default"  # build_tiny_zoo names its world
    [written] = write_zoo_truth(zoo, n=4, seed=0, k=2)  # no classifier-fixed: one folder
    assert written == zoo / "truth"
    _, neurons = read_truth(written)
    assert neurons.schema == NEURON_TRUTH_SCHEMA
    assert (written / UNITS_FILE).read_text().startswith("class_index,feature_index\n")
    record = json.loads((written / TRUTH_RECORD).read_text())
    assert (record["world"], record["classifier"], record["n"], record["k"]) == (
        "default",
        "classifier",
        4,
        2,
    )


# ---------------------------------------------------------------------------------------------
# The reshuffled world and its committed zoo
# ---------------------------------------------------------------------------------------------


def test_reshuffled_world_differs_from_default_only_in_its_shortcuts():
    default, reshuffled = load_world("default"), load_world("reshuffled")
    a, b = default.to_dict(), reshuffled.to_dict()
    assert {k for k in a if a[k] != b[k]} == {
        "name", "description", "correlations", "fixed_release"
    }  # fmt: skip
    assert not {c.name for c in default.correlations} & {c.name for c in reshuffled.correlations}
    assert {c.kind for c in reshuffled.correlations} == {"context", "cue"}
    assert len(reshuffled.fixed_release_removes) == 1
    assert len(reshuffled.fixed().correlations) == len(reshuffled.correlations) - 1
    assert caption_words(reshuffled) == caption_words(default)


def test_reshuffled_zoo_shares_the_default_models_and_has_its_own_classifiers():
    shared = read_manifest(RESHUFFLED_ZOO)["shared"]
    assert set(shared) == {"generator", "segmenter", "oracle"}
    for part in shared:
        assert zoo_part(RESHUFFLED_ZOO, part) == DEFAULT_ZOO / part
        assert not (RESHUFFLED_ZOO / part).exists()  # referenced, not copied
    world = load_world("reshuffled")
    for part in ("classifier", "classifier-fixed"):
        assert zoo_part(RESHUFFLED_ZOO, part) == RESHUFFLED_ZOO / part
        clf = load_classifier(zoo_part(RESHUFFLED_ZOO, part))
        assert clf.class_names == class_names(world)
        record = json.loads((RESHUFFLED_ZOO / part / "training.json").read_text())
        assert record["world"] == "reshuffled"


def test_reshuffled_zoo_truth_and_gates_are_committed():
    for part in ("truth", "truth-fixed"):
        classes, neurons = read_truth(zoo_part(RESHUFFLED_ZOO, part))
        assert neurons.schema == NEURON_TRUTH_SCHEMA
        assert set(neurons.column("selection").to_pylist()) == {"top", "factor"}
        planted = {r["factor"] for r in classes.to_pylist() if r["planted"]}
        assert planted == {"brick", "snow", "watermark"}
    gates = json.loads((RESHUFFLED_ZOO / GATES_FILE).read_text())
    assert gates["world"] == "reshuffled"
    classifier_gates = [g for g in gates["gates"] if g["group"] == "classifier"]
    assert classifier_gates and all(g["passed"] for g in classifier_gates)
    assert os.path.normpath(RESHUFFLED_ZOO / gates["shared"]["generator"]) == str(
        DEFAULT_ZOO / "generator"
    )


@pytest.mark.parametrize("zoo", [DEFAULT_ZOO, RESHUFFLED_ZOO], ids=["default", "reshuffled"])
@pytest.mark.parametrize("part", ["truth", "truth-fixed"])
def test_committed_units_csv_is_what_an_audit_spec_reads(zoo, part, tmp_path):
    folder = zoo_part(zoo, part)
    spec = {
        "name": "truth",
        "generator": "gen",
        "classifier": "clf",
        "segmenter": "seg",
        "targets": {"units": {"layer": "penultimate", "csv": str(folder / UNITS_FILE)}},
    }
    (tmp_path / "audit.yaml").write_text(yaml.safe_dump(spec))
    names = class_names(zoo_world(zoo))
    rows = expand_targets(load_spec(tmp_path / "audit.yaml"), names, "run-1")
    got = [(r["class_name"], f"{r['layer']}:{r['channel']}") for r in rows if r["kind"] == "unit"]
    _, neurons = read_truth(folder)
    assert got == [(r["class"], r["unit"]) for r in neurons.to_pylist()]
    assert "factor" in neurons.column("selection").to_pylist()
