"""diff_runs: checkpoint-to-checkpoint changes of verdicts, probabilities and probe rates."""

import pytest

from dxray.catalog.diff import diff_runs
from dxray.catalog.sample import write_sample
from dxray.catalog.views import connect
from dxray.catalog.writer import CatalogWriter


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    write_sample(root)
    return root


@pytest.fixture(scope="module")
def diff(root):
    return diff_runs(connect(root), "ckpt-a", "ckpt-b")


def test_change_kinds(diff):
    # Units by their intervention verdict; classes by whether their explanation shows the
    # object, which is never called "spurious" (that word is the units' and the shortcuts').
    changes = {
        t: (r["verdict_before"], r["verdict_after"], r["object_before"], r["object_after"],
            r["change"])
        for t, r in diff.by_target().items()
    }  # fmt: skip
    assert changes == {
        "class:0": (None, None, "absent", "shown", "changed"),
        "class:1": (None, None, "shown", "absent", "changed"),
        "class:2": (None, None, "absent", "absent", "unchanged"),
        "class:3": (None, None, "shown", "shown", "unchanged"),
        "class:4": (None, None, "unclear", "shown", "changed"),
        "unit:features.4:17:0": ("spurious", "core", None, None, "resolved"),
        "unit:features.4:3:-": ("uncertain", "uncertain", None, None, "unchanged"),
    }
    assert diff.by_target()["unit:features.4:17:0"]["unit"] == "features.4:17"


def test_probability_and_probe_shifts(diff):
    rows = diff.by_target()
    # square: mean p (0.6 + 0.8) / 2 = 0.7 -> (0.7 + 0.6) / 2 = 0.65
    assert rows["class:1"]["probability_before"] == pytest.approx(0.7)
    assert rows["class:1"]["probability_shift"] == pytest.approx(-0.05)
    # hexagon: 0.35 -> 0.6; circle: 0.8 -> 0.8
    assert rows["class:4"]["probability_shift"] == pytest.approx(0.25)
    assert rows["class:0"]["probability_shift"] == pytest.approx(0.0)
    assert rows["unit:features.4:17:0"]["probability_shift"] is None  # units: no probability
    # circle's water rate 1.0 -> 0.5; its other probes moved less than 0.25
    assert rows["class:0"]["probe_shifts"] == [
        {"probe": "water", "before": 1.0, "after": 0.5, "shift": -0.5}
    ]
    assert rows["class:2"]["probe_shifts"] is None
    assert rows["class:0"]["object_shown_fraction_before"] == 0.0
    assert rows["class:0"]["object_shown_fraction_after"] == 1.0
    assert rows["class:0"]["spurious_fraction_before"] is None  # a unit's word, not a class's
    assert rows["unit:features.4:17:0"]["spurious_fraction_before"] == 1.0


def test_summary(diff):
    s = diff.summary
    assert s["changes"] == {
        "new spurious": 0,
        "resolved": 1,
        "changed": 3,
        "unchanged": 3,
        "added": 0,
        "removed": 0,
    }
    # circle <- water and star <- a watermark before; square <- grass and star after
    assert (s["classes_with_shortcuts_before"], s["classes_with_shortcuts_after"]) == (2, 2)
    assert "spurious_classes_before" not in s
    assert (s["spurious_units_before"], s["spurious_units_after"]) == (1, 0)
    assert s["from_run"]["classifier_sha256"] == "a1" * 32 and s["to_run"]["targets"] == 7
    assert diff.table.num_rows == s["targets"] == 7


def test_class_shortcuts_appear_vanish_and_stay_with_their_lifts(diff, root):
    rows = diff.shortcuts.to_pylist()
    got = [(r["class_name"], r["attribute"], r["change"], r["lift_before"], r["lift_after"])
           for r in rows]  # fmt: skip
    assert got == [
        ("square", "grass", "appeared", 0.4, 1.3),
        ("circle", "water", "vanished", 2.4, 0.6),
        ("star", "a watermark", "kept", 2.0, 2.1),
    ]
    assert diff.summary["shortcuts"] == {"appeared": 1, "vanished": 1, "kept": 1}
    back = diff_runs(connect(root), "ckpt-b", "ckpt-a").summary["shortcuts"]
    assert back == {"appeared": 1, "vanished": 1, "kept": 1}


def test_reverse_direction_swaps_resolved_and_new(root):
    rows = diff_runs(connect(root), "ckpt-b", "ckpt-a").by_target()
    assert rows["unit:features.4:17:0"]["change"] == "new spurious"
    assert (rows["class:1"]["object_before"], rows["class:1"]["object_after"]) == (
        "absent",
        "shown",
    )
    assert rows["class:1"]["probability_shift"] == pytest.approx(0.05)


def test_threshold_and_added_removed(tmp_path):
    writer = CatalogWriter(tmp_path)
    for run_id, target_id, water in (("r1", "class:0", 0.9), ("r2", "class:1", 0.1)):
        row = {"target_id": target_id, "seed": 0}
        writer.write_batch(
            run_id,
            [row | {"kind": "class", "objective": "o", "status": "converged", "probability": 0.5}],
            [row | {"verdict": "core", "presence": 0.9, "probe_scores": {"water": water}}],
        )
    rows = diff_runs(connect(tmp_path), "r1", "r2").by_target()
    assert rows["class:0"]["change"] == "removed" and rows["class:1"]["change"] == "added"
    with pytest.raises(ValueError, match="probe_threshold"):
        diff_runs(connect(tmp_path), "r1", "r2", probe_threshold=2)


def test_unknown_run(root):
    with pytest.raises(ValueError, match="'ckpt-z' is not in the catalog"):
        diff_runs(connect(root), "ckpt-a", "ckpt-z")
