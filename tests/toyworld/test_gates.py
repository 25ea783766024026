"""gates.json: one writer, one shape (the committed zoos'), and a reader of both shapes."""

import json

import pytest

from dxray.toyworld.gates import GATES_FILE, GateRow, check, gate_rows, read_gates, write_gates
from dxray.toyworld.zoo import DEFAULT_ZOO, ZOOS_DIR, zoo_world

COMMITTED = sorted(ZOOS_DIR.glob(f"*/{GATES_FILE}"))


def test_check_holds_and_refuses_unknown_ops():
    assert check("a", 0.9, ">=", 0.9).passed and not check("a", 0.9, ">", 0.9).passed
    assert check("a", 5.0, "info", 0.0).passed
    with pytest.raises(ValueError, match="op must be one of"):
        check("a", 1.0, "==", 1.0)


@pytest.mark.parametrize("committed", COMMITTED, ids=lambda p: p.parent.name)
def test_the_writer_writes_the_committed_zoos_shape_byte_for_byte(committed, tmp_path):
    """Every committed gates.json is what `write_gates` writes for its rows: the shape kept."""
    record = read_gates(committed.parent)
    assert record == json.loads(committed.read_text())  # read as it is
    rows = [GateRow(**g) for g in record["gates"]]
    written = write_gates(
        tmp_path, rows, world=record["world"], seconds=record["seconds"],
        sampler=record["sampler"], shared=record.get("shared"),
    )  # fmt: skip
    assert written == tmp_path / GATES_FILE
    assert written.read_text() == committed.read_text()


def test_the_classifier_trainers_old_shape_reads_as_the_one_shape(tmp_path):
    gates = [check("classifier:unbiased_accuracy", 0.99, ">=", 0.95), check("fixed:x", 1, "<", 2)]
    old = {
        "gates": [vars(g) for g in gates],
        "all_passed": True,
        "training": {"classifier": {"world": "second", "steps": 800}},
        "truth_seconds": 1.5,
    }
    (tmp_path / GATES_FILE).write_text(json.dumps(old, indent=2) + "\n")
    assert read_gates(tmp_path) == {"gates": [{"group": "classifier", **vars(g)} for g in gates]}
    # It names no world: the zoo's world comes from a training record, as before
    (tmp_path / "classifier").mkdir()
    (tmp_path / "classifier" / "training.json").write_text(json.dumps({"world": "second"}))
    assert zoo_world(tmp_path).name == "second"


def test_the_one_shape_round_trips_and_names_the_world(tmp_path):
    rows = gate_rows("segmenter", [check("object_iou", 0.9, ">=", 0.8)])
    write_gates(tmp_path, rows, world="second", seconds=1.234)
    assert read_gates(tmp_path) == {
        "world": "second",
        "seconds": 1.2,
        "gates": [{"group": "segmenter", "name": "object_iou", "value": 0.9, "threshold": 0.8,
                   "op": ">=", "passed": True}],
    }  # fmt: skip
    assert zoo_world(tmp_path).name == "second"


def test_an_unreadable_gates_file_is_named(tmp_path):
    (tmp_path / GATES_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="gates.json: not readable JSON"):
        read_gates(tmp_path)
    (tmp_path / GATES_FILE).write_text(json.dumps({"gates": "all passed"}))
    with pytest.raises(ValueError, match="a list of gates"):
        read_gates(tmp_path)
    assert zoo_world(DEFAULT_ZOO).name == "default"


def test_training_the_classifiers_records_the_gates_in_the_one_shape(tmp_path):
    """`train_zoo_classifiers` writes gates.json through `write_gates` (tiny, untrained
    models: the file's shape is checked, not whether the gates pass)."""
    from dxray.toyworld.run_settings import RunSettings
    from dxray.toyworld.train_classifier import (
        ToyClassifierConfig,
        ToyOracleConfig,
        ZooClassifiersConfig,
        train_zoo_classifiers,
    )
    from dxray.toyworld.world import default_world

    tiny = dict(steps=1, batch=4, width=2, hidden=4, eval_n=0)
    config = ZooClassifiersConfig(
        ToyClassifierConfig(**tiny), ToyOracleConfig(**tiny), truth_n=2, gate_n=4
    )
    train_zoo_classifiers(default_world(), tmp_path, config, RunSettings())
    record = json.loads((tmp_path / GATES_FILE).read_text())
    assert list(record) == ["world", "seconds", "gates"] and record["world"] == "default"
    assert {g["group"] for g in record["gates"]} == {"classifier"}
    names = [g["name"] for g in record["gates"]]
    assert names[0] == "classifier:unbiased_accuracy" and "oracle:object_accuracy" in names
    assert read_gates(tmp_path) == record
