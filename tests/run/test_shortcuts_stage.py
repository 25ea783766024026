"""The class-shortcut stage of an audit on real Ray with the tiny zoo: rows, views, resume,
bad vocabulary entries."""

import pytest

from dxray.catalog.views import connect
from dxray.run.host import ModelHost
from dxray.run.pipeline import run_audit
from dxray.spec.model import AuditSpec

CLASSES = 5  # the tiny zoo's world: circle, square, triangle, star, cross
VOCABULARY = ["water", "sand", {"name": "a watermark", "overlay": "with a watermark"}, "", 7]


@pytest.fixture
def shortcut_spec(tiny_spec):
    spec = dict(tiny_spec)
    spec["targets"] = {"classes": [0], "seeds": [0]}
    spec["shortcuts"] = {
        "enabled": True,
        "template": "{}",
        "attributes": VOCABULARY,
        "seeds": 2,
        "with_object": "all",
        "batch_size": 8,
        "pool": 6,
        "top": 2,
    }
    return AuditSpec.from_dict(spec)


def _rows(catalog, query):
    con = connect(catalog, read_only=True)
    try:
        cursor = con.execute(query)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    finally:
        con.close()


def test_the_audit_renders_scores_and_resumes(shortcut_spec):
    first = run_audit(shortcut_spec)
    sc = first.shortcuts
    # object-free: 2 scenes x (alone + watermark) x 2 seeds; with the object of every class:
    # 5 classes x the same 8
    assert sc.renders == 8 + CLASSES * 8 and sc.rendered == sc.renders
    # the empty string and the number, each with a reason (+ the pool's, see below)
    assert sum("skipped" in p for p in sc.problems) == 2
    images = _rows(first.catalog, "SELECT * FROM shortcut_images")
    assert len(images) == sc.renders
    assert {r["status"] for r in images} <= {"kept", "object", "no object", "no attribute"}
    assert all(len(r["logits"]) == CLASSES and r["png"].startswith(b"\x89PNG") for r in images)
    prompts = {r["prompt"] for r in images if r["variant"] == "object_free"}
    assert prompts == {"water", "sand", "water with a watermark", "sand with a watermark"}

    report = _rows(first.catalog, "SELECT * FROM class_shortcuts ORDER BY class_index, attribute")
    assert len(report) == CLASSES * 3  # every class x every usable attribute, once
    assert {r["attribute"] for r in report} == {"water", "sand", "a watermark"}
    for r in report:  # the interval brackets the lift wherever there is one
        if r["lift"] is not None:
            assert r["low"] <= r["lift"] <= r["high"]
    skipped = _rows(
        first.catalog,
        "SELECT * FROM shortcuts WHERE method = 'vocabulary' AND attribute LIKE 'attribute%'",
    )
    assert sorted(r["attribute"] for r in skipped) == ["attribute [3]", "attribute [4]"]
    assert all("skipped" in r["note"] for r in skipped)

    # Object-free explanations: 6 pool images, each class's top 2 read out per attribute
    pool = _rows(first.catalog, "SELECT * FROM shortcut_pool")
    assert len(pool) == 6 and all(len(r["logits"]) == CLASSES for r in pool)
    assert all(set(dict(r["probe_scores"])) == {"water", "sand", "a watermark"} for r in pool)
    assert all(0 <= r["erased_fraction"] <= 1 and r["png"].startswith(b"\x89PNG") for r in pool)
    leads = _rows(first.catalog, "SELECT * FROM shortcut_candidates")
    kept = {p["render_id"] for p in pool if p["status"] == "kept"}
    if kept:
        assert len(leads) == CLASSES * 3 and all(r["images"] == min(2, len(kept)) for r in leads)
        assert all(set(r["chosen"]) <= kept for r in leads)
    else:  # the untrained tiny segmenter sees objects everywhere: no candidate, and it says so
        assert leads == [] and all(r["candidate"] is None for r in report)
        notes = _rows(
            first.catalog,
            "SELECT note FROM shortcuts WHERE attribute = 'object-free explanations'",
        )
        assert notes and "none of the 6 pool images" in notes[0]["note"]

    again = run_audit(shortcut_spec)  # nothing rendered twice; a new scoring, the same rows
    assert again.shortcuts.rendered == 0 and again.computed == 0
    assert len(_rows(first.catalog, "SELECT * FROM raw_shortcut_images")) == sc.renders
    assert len(_rows(first.catalog, "SELECT * FROM raw_shortcut_pool")) == 6
    assert len(_rows(first.catalog, "SELECT * FROM class_shortcuts")) == CLASSES * 3
    scorings = _rows(first.catalog, "SELECT DISTINCT score_id FROM raw_shortcuts")
    assert len(scorings) == 2


def test_a_render_that_fails_becomes_an_error_row(shortcut_spec, monkeypatch):
    from dxray.run import shortcut_renders

    host = ModelHost(shortcut_spec.to_dict())
    jobs = [
        {"render_id": f"k{i}", "variant": "object_free", "scene": "water", "overlay": None,
         "class_index": None, "class_name": None, "prompt": "water", "seed": i,
         "attribute": "water"}
        for i in range(3)
    ]  # fmt: skip
    real = shortcut_renders.render_batch

    def flaky(host, batch):
        if any(j["seed"] == 1 for j in batch):
            raise RuntimeError("out of memory")
        return real(host, batch)

    monkeypatch.setattr(shortcut_renders, "render_batch", flaky)
    rows = host.serve("renders", jobs)
    assert [r["status"] == "error" for r in rows] == [False, True, False]
    assert "out of memory" in rows[1]["error"] and rows[1]["logits"] is None


def test_the_cli_says_what_was_found_and_what_was_skipped(capsys, tmp_path):
    """The audit's closing lines: the test's findings as sentences, leads apart, and the
    vocabulary's problems on stderr."""
    from collections import Counter

    from dxray.catalog.sample import write_sample
    from dxray.cli.audit import _echo_answer
    from dxray.run.pipeline import AuditSummary
    from dxray.run.shortcuts import ShortcutSummary

    write_sample(tmp_path)
    summary = AuditSummary("ckpt-a", tmp_path, total=1, skipped=0)
    summary.shortcuts = ShortcutSummary(
        renders=160, rendered=20, statuses=Counter(kept=139, object=21),
        findings=[("circle", "water", 2.4)], candidates=[("hexagon", "grass", 0.75)],
        problems=["attribute [3] skipped: an empty string"],
        notes=["brick: 2 usable images of 16 rendered"],
    )  # fmt: skip
    _echo_answer(summary)
    out, err = capsys.readouterr()
    assert "circle: its score rises 2.4 nats (about 11x the odds) on water" in out
    leads = out.index("Leads the test did not confirm")
    assert out.index("circle: its score") < leads < out.index("hexagon <- grass?")
    assert "attribute [3] skipped" in err and "brick: 2 usable images" in err


def test_scoring_reads_renders_in_a_fixed_order_whatever_the_files_are_called(
    tmp_path, monkeypatch
):
    """The bootstrap resamples by index: rows must not come in the order of the catalog's files,
    whose names are random (two evaluations differed in an interval's second decimal)."""
    from dxray.catalog.writer import CatalogWriter
    from dxray.run import shortcut_plans

    writer = CatalogWriter(tmp_path)
    for batch in (["r3", "r1"], ["r2", "r0"]):
        rows = [
            {"render_id": r, "variant": "object_free", "scene": "water", "prompt": "water",
             "seed": 0, "status": "kept"} for r in batch
        ]  # fmt: skip
        writer.write("shortcut_images", rows, "run")
    columns = ("render_id", "status", "created_at")
    wanted = {"r0", "r1", "r2", "r3"}
    forward = shortcut_plans.latest_rows(writer, "run", "shortcut_images", wanted, columns)
    real = shortcut_plans.part_files
    monkeypatch.setattr(shortcut_plans, "part_files", lambda *a: list(reversed(real(*a))))
    backward = shortcut_plans.latest_rows(writer, "run", "shortcut_images", wanted, columns)
    assert [r["render_id"] for r in forward] == [r["render_id"] for r in backward]
    assert [r["render_id"] for r in forward] == ["r0", "r1", "r2", "r3"]


def test_class_units_get_the_unit_test_and_old_renders_are_rendered_again(shortcut_spec):
    """With units audited for a class, every render reports the units' layer, the class's
    object is drawn on every scene, and each unit gets a unit_shortcuts row. A catalog whose
    renders lack the channel means (the test off, then on) renders them again."""
    import dataclasses

    spec = dataclasses.replace(
        shortcut_spec,
        targets=dataclasses.replace(
            shortcut_spec.targets,
            units=dataclasses.replace(shortcut_spec.targets.units, top_k=1),
        ),
        shortcuts=dataclasses.replace(shortcut_spec.shortcuts, with_object="none", units=False),
    )
    off = run_audit(spec)
    assert off.shortcuts.units_tested == 0
    assert not _rows(off.catalog, "SELECT * FROM unit_shortcuts")
    on = run_audit(
        dataclasses.replace(spec, shortcuts=dataclasses.replace(spec.shortcuts, units=True))
    )
    sc = on.shortcuts
    # 8 object-free renders again (now with means) + class 0's object on 2 scenes x 2 seeds
    assert sc.rendered == 8 + 4
    images = _rows(on.catalog, "SELECT * FROM shortcut_images")
    assert all(r["unit_means"] is not None for r in images)
    units = _rows(on.catalog, "SELECT * FROM unit_shortcuts")
    targets = _rows(on.catalog, "SELECT * FROM explanations WHERE kind = 'unit'")
    assert len(units) == len({t["target_id"] for t in targets}) == sc.units_tested == 1
    (unit,) = units
    assert unit["class_index"] == 0 and unit["verdict"] in {"core", "spurious", "uncertain"}
    layer = unit["layer"]
    means = dict(images[0]["unit_means"])
    assert set(means) == {layer} and unit["channel"] < len(means[layer])
    if unit["margin"] is not None:
        assert unit["low"] <= unit["margin"] <= unit["high"]
    # a rerun renders nothing
    again = run_audit(
        dataclasses.replace(spec, shortcuts=dataclasses.replace(spec.shortcuts, units=True))
    )
    assert again.shortcuts.rendered == 0 and again.shortcuts.units_tested == 1


def test_unit_seeds_sizes_the_unit_tests_object_renders(shortcut_spec):
    """Each class with units gets its object on every scene for the first `unit_seeds` seeds
    only (the renders grow with the classes: a 1,000-class audit's largest shortcut cost)."""
    import dataclasses

    from dxray.run.shortcut_plans import object_on_scenes_plan

    names = ["circle", "square", "triangle"]
    full = object_on_scenes_plan(shortcut_spec, names, {0, 2})
    sc = dataclasses.replace(shortcut_spec.shortcuts, unit_seeds=1)
    fewer = object_on_scenes_plan(dataclasses.replace(shortcut_spec, shortcuts=sc), names, {0, 2})
    seeds = shortcut_spec.shortcuts.seeds
    assert seeds > 1 and len(full) == seeds * len(fewer)
    assert {r.seed for r in fewer} == {0} and {r.class_index for r in fewer} == {0, 2}
    assert {r.key for r in fewer} <= {r.key for r in full}  # the same renders, by key
