"""A spec and a classifier's class names expand into the target rows of docs/PLATFORM.md."""

from pathlib import Path

import pytest
import yaml

from dxray.run.targets import TARGET_KEYS, expand_targets, objective_for
from dxray.spec.model import AuditSpec, SpecError
from dxray.spec.parse import load_spec, with_overrides

NAMES = ["cat", "dog", "boat", "dot"]
MINIMAL = {"name": "t", "generator": "gen", "classifier": "clf", "segmenter": "seg"}


def _spec(tmp_path: Path, **sections) -> AuditSpec:
    path = tmp_path / "audit.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, **sections}, sort_keys=False))
    return load_spec(path)


def _rank(class_index: int, k: int) -> list[tuple[str, int]]:
    """A fake ranking: class c's best units are channels 10c, 10c+1, ... of "penultimate"."""
    return [("penultimate", 10 * class_index + r) for r in range(k)]


def test_rows_hold_exactly_the_catalogs_target_fields(tmp_path):
    from dxray.catalog.schema import schema

    rows = expand_targets(_spec(tmp_path, targets={"units": {"units": ["a:1"]}}), NAMES, "r")
    assert {tuple(row) for row in rows} == {TARGET_KEYS}
    assert tuple(schema("explanations").names[: len(TARGET_KEYS)]) == TARGET_KEYS


def test_classes_by_name_and_index_in_listed_order(tmp_path):
    spec = _spec(tmp_path, targets={"classes": [2, "cat", "3"]})
    rows = expand_targets(spec, NAMES, "run-1")
    assert [r["target_id"] for r in rows] == ["class:2", "class:0", "class:3"]
    assert [r["class_name"] for r in rows] == ["boat", "cat", "dot"]
    assert all(r["kind"] == "class" and r["layer"] is None and r["channel"] is None for r in rows)


def test_all_classes_in_index_order(tmp_path):
    rows = expand_targets(_spec(tmp_path), NAMES, "run-1")
    assert [r["class_index"] for r in rows] == [0, 1, 2, 3]


def test_unknown_class_name_suggests_close_names(tmp_path):
    spec = _spec(tmp_path, targets={"classes": ["cat", "dgo"]})
    with pytest.raises(SpecError) as info:
        expand_targets(spec, NAMES, "run-1")
    message = str(info.value)
    assert "targets.classes[1]" in message and "'dog'" in message
    assert str(spec.source_path) in message


def test_class_index_out_of_range_and_aliases_are_errors(tmp_path):
    with pytest.raises(SpecError, match=r"targets.classes\[0\]: class index 4 out of range"):
        expand_targets(_spec(tmp_path, targets={"classes": [4]}), NAMES, "run-1")
    with pytest.raises(SpecError, match=r"targets.classes\[1\]: 'dog' is class 1"):
        expand_targets(_spec(tmp_path, targets={"classes": [1, "dog"]}), NAMES, "run-1")


def test_top_k_units_come_from_the_ranking_callback(tmp_path):
    calls = []

    def rank(class_index, k):
        calls.append((class_index, k))
        return _rank(class_index, k)

    spec = _spec(tmp_path, targets={"classes": [1, 2], "units": {"top_k": 2}})
    rows = expand_targets(spec, NAMES, "run-1", unit_ranking=rank)
    assert calls == [(1, 2), (2, 2)]
    units = [r for r in rows if r["kind"] == "unit"]
    assert [r["target_id"] for r in units] == [
        "unit:penultimate:10:1",
        "unit:penultimate:11:1",
        "unit:penultimate:20:2",
        "unit:penultimate:21:2",
    ]
    assert units[0]["class_index"] == 1 and units[0]["class_name"] == "dog"
    assert units[0]["layer"] == "penultimate" and units[0]["channel"] == 10
    with pytest.raises(ValueError, match="unit_ranking"):
        expand_targets(spec, NAMES, "run-1")
    with pytest.raises(ValueError, match="returned 3 units"):
        expand_targets(spec, NAMES, "run-1", unit_ranking=lambda c, k: _rank(c, k + 1))


def test_listed_units_belong_to_no_class(tmp_path):
    spec = _spec(tmp_path, targets={"classes": [0], "units": {"units": ["features.conv1:3"]}})
    rows = expand_targets(spec, NAMES, "run-1")
    assert [r["target_id"] for r in rows] == ["class:0", "unit:features.conv1:3:-"]
    unit = rows[1]
    assert unit["class_index"] is None and unit["class_name"] is None
    assert (unit["layer"], unit["channel"]) == ("features.conv1", 3)


def test_csv_units_relative_to_the_spec_file(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labels.csv").write_text(
        "class_index,feature_index,label\n0,7,core\n2,5,spurious\n\n1,9,core\n0,7,core\n"
    )
    targets = {"classes": [0, 2], "units": {"layer": "avgpool", "csv": "data/labels.csv"}}
    spec = _spec(tmp_path, targets=targets)
    monkeypatch.chdir(tmp_path / "data")  # resolved against the spec, not the working directory
    rows = expand_targets(spec, NAMES, "run-1")
    # class 1 is not audited; the repeated 0,7 row is one target
    assert [r["target_id"] for r in rows] == [
        "class:0",
        "class:2",
        "unit:avgpool:7:0",
        "unit:avgpool:5:2",
    ]
    assert rows[3]["class_name"] == "boat" and rows[3]["objective"] == "Unit('avgpool', 5)"


def test_a_csv_class_out_of_range_is_named_with_its_line(tmp_path):
    (tmp_path / "units.csv").write_text("class_index,feature_index\n0,1\n9,1\n")
    spec = _spec(tmp_path, targets={"units": {"layer": "avgpool", "csv": "units.csv"}})
    with pytest.raises(SpecError, match="line 3: class index 9 out of range"):
        expand_targets(spec, NAMES, "run-1")


def test_seeds_multiply_without_duplicates_in_a_stable_order(tmp_path):
    (tmp_path / "u.csv").write_text("class_index,feature_index\n1,10\n1,12\n")
    targets = {
        "classes": [1, 0],
        "units": {"top_k": 2, "layer": "penultimate", "csv": "u.csv", "units": ["conv:1"]},
        "seeds": [3, 1],
    }
    spec = _spec(tmp_path, targets=targets)
    rows = expand_targets(spec, NAMES, "run-7", unit_ranking=_rank)
    # classes, listed unit, ranked units (10 and 11 for class 1; 0 and 1 for class 0), then the
    # CSV's 12 for class 1 (its 10 was ranked already)
    expected_targets = [
        "class:1",
        "class:0",
        "unit:conv:1:-",
        "unit:penultimate:10:1",
        "unit:penultimate:11:1",
        "unit:penultimate:0:0",
        "unit:penultimate:1:0",
        "unit:penultimate:12:1",
    ]
    assert [(r["target_id"], r["seed"]) for r in rows] == [
        (t, s) for t in expected_targets for s in (3, 1)
    ]
    keys = [(r["target_id"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert expand_targets(spec, NAMES, "run-7", unit_ranking=_rank) == rows
    assert all(r["run_id"] == "run-7" for r in rows)
    assert all(
        list(r)
        == [
            "run_id",
            "target_id",
            "kind",
            "class_index",
            "class_name",
            "layer",
            "channel",
            "objective",
            "seed",
        ]
        for r in rows
    )


def test_objective_repr_is_the_engines(tmp_path):
    from dxray.explain.objective import ClassCE, ClassLogit, Unit

    spec = _spec(tmp_path, targets={"classes": [3], "units": {"units": ["layer4.2:17"]}})
    rows = expand_targets(spec, NAMES, "run-1")
    assert rows[0]["objective"] == repr(ClassCE(3)) == "ClassCE(3)"
    assert rows[1]["objective"] == repr(Unit("layer4.2", 17))
    assert objective_for(spec, rows[0]) == ClassCE(3)
    logit = with_overrides(spec, **{"targets.objective": "logit"})
    rows = expand_targets(logit, NAMES, "run-1")
    assert rows[0]["objective"] == repr(ClassLogit(3))


def test_class_queries_must_name_classes(tmp_path):
    spec = _spec(tmp_path, judge={"class_queries": {"dgo": "a small dog"}})
    with pytest.raises(SpecError, match=r"judge.class_queries.dgo: .*did you mean .*'dog'"):
        expand_targets(spec, NAMES, "run-1")
    spec = _spec(tmp_path, judge={"class_queries": {"dog": "a small dog"}})
    assert spec.judge.object_query("dog") == "a small dog"
    assert spec.judge.object_query("n01440764 tench, Tinca tinca") == "a tench"


def test_a_unit_ranked_for_two_classes_is_one_work_whose_rows_sit_together(tmp_path):
    """Classes 0 and 1 both rank channel 5 first: its two targets (one per class) share an
    objective, so per seed they are one work, and `by_work` puts their rows side by side
    (the rest keep their order)."""
    from dxray.run.targets import by_work, work_key

    def rank(class_index, k):
        return [("penultimate", 5), ("penultimate", 10 + class_index)][:k]

    spec = _spec(tmp_path, targets={"classes": [0, 1], "units": {"top_k": 2}, "seeds": [0, 1]})
    rows = expand_targets(spec, NAMES, "r", unit_ranking=rank)
    units = [r for r in rows if r["kind"] == "unit"]
    assert len(units) == 8 and len({work_key(r) for r in units}) == 6
    shared = [r for r in rows if r["channel"] == 5]
    assert {r["target_id"] for r in shared} == {"unit:penultimate:5:0", "unit:penultimate:5:1"}
    assert work_key(shared[0]) == work_key(shared[2]) == ("Unit('penultimate', 5)", 0)

    grouped = by_work(rows)
    assert sorted(map(str, grouped)) == sorted(map(str, rows))  # the same rows
    keys = [work_key(r) for r in grouped]
    assert all(k not in keys[: i - 1] for i, k in enumerate(keys) if i and k != keys[i - 1])
    assert [r["target_id"] for r in grouped[4:8]] == [
        "unit:penultimate:5:0", "unit:penultimate:5:1",  # seed 0 of both classes
        "unit:penultimate:5:0", "unit:penultimate:5:1",  # then seed 1
    ]  # fmt: skip
    assert [r["seed"] for r in grouped[4:8]] == [0, 0, 1, 1]
    assert by_work(grouped) == grouped
