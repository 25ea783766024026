"""The answer of a run: shortcut findings, spurious units and leads, in the words every surface
(terminal, report, gate) shares."""

from types import SimpleNamespace

import pytest

from dxray.catalog.findings import Lead, ShortcutFinding, odds_factor, read_answer, run_thresholds
from dxray.catalog.sample import write_sample
from dxray.catalog.views import connect
from dxray.catalog.writer import CatalogWriter


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    write_sample(root)
    return connect(root, read_only=True)


@pytest.mark.parametrize(
    ("lift", "said"), [(0.0, "1.0x"), (1.05, "2.9x"), (2.73, "15x"), (6.0, "403x"), (7.0, "1,100x")]
)
def test_odds_factor(lift, said):
    assert odds_factor(lift) == said


def test_a_finding_is_one_sentence_a_reader_can_forward():
    scene = ShortcutFinding(0, "circle", "water", "scene", 2.73, 2.35, 3.09, 16)
    assert scene.sentence() == (
        "circle: its score rises 2.7 nats (about 15x the odds) on water with no circle in the "
        "image (16 images, 95% interval 2.4 to 3.1)"
    )
    overlay = ShortcutFinding(2, "star", "a watermark", "overlay", 2.11, 2.0, 2.2, 68)
    assert "when a watermark is added to an image with no star (68 pairs" in overlay.sentence()
    assert scene.relation() is None  # the class's explanation was not audited
    shown = ShortcutFinding(
        0, "circle", "water", "scene", 2.7, 2.3, 3.1, 16, object_in_explanation="shown",
        object_shown=2, judged=2,
    )  # fmt: skip
    assert shown.relation().startswith("Its own explanation paints the circle (2 of 2 seeds)")


def test_read_answer_findings_units_and_leads(con):
    a = read_answer(con, "ckpt-a")
    assert [f.label for f in a.findings] == ["circle <- water", "star <- a watermark"]
    circle = a.findings[0]
    assert (circle.lift, circle.low, circle.high, circle.images) == (2.4, 1.9, 2.9, 16)
    assert circle.object_in_explanation == "absent" and circle.singled_out
    assert a.classes_with_shortcuts == 2 and (a.classes, a.units, a.failed_seeds) == (5, 2, 1)
    (unit,) = a.spurious_units
    assert (unit.name, unit.class_name, unit.spurious_seeds, unit.judged) == (
        "features.4:17",
        "circle",
        2,
        2,
    )
    assert unit.kept == pytest.approx(0.925) and unit.activation == pytest.approx(2.0)
    # hexagon <- grass was singled out by the pool and is not a finding: a lead, with the
    # test's numbers; circle <- water was singled out too but is a finding: not a lead
    assert [lead.label for lead in a.leads] == ["hexagon <- grass?"]
    assert a.leads[0].lift == 0.0 and a.leads[0].rate == 0.75
    b = read_answer(con, "ckpt-b")
    assert [f.label for f in b.findings] == ["star <- a watermark", "square <- grass"]
    assert b.spurious_units == [] and b.leads == []


def test_lines_put_findings_first_and_leads_apart(con):
    lines = read_answer(con, "ckpt-a").lines()
    assert lines[0].startswith("Shortcuts: 2 of 5 classes rely on an attribute")
    assert lines[1].startswith("  - circle: its score rises 2.4 nats")
    units = lines.index(next(line for line in lines if line.startswith("Spurious units")))
    leads = lines.index("Leads the test did not confirm (not findings):")
    assert 2 < units < leads
    assert (
        "hexagon <- grass?" in lines[leads + 1]
        and "not a finding (needs 1 nat" in (lines[leads + 1])
    )
    # nothing but findings between the head and the units
    assert all(line.startswith("  - ") and "<-" not in line for line in lines[1:units])


def test_a_run_without_the_test_says_so(tmp_path):
    CatalogWriter(tmp_path).write_run("r1", name="no test", spec_yaml="")
    rows = [{"target_id": "class:0", "kind": "class", "class_index": 0, "class_name": "circle",
             "objective": "ClassCE(0)", "seed": 0, "status": "converged"}]  # fmt: skip
    CatalogWriter(tmp_path).write_batch("r1", rows, [], [])
    answer = read_answer(connect(tmp_path), "r1")
    assert not answer.shortcut_tested and answer.findings == []
    assert answer.lines()[0] == "Shortcuts: not tested (the spec's shortcuts.enabled is off)."


def test_thresholds_come_from_the_run_spec(tmp_path):
    spec = (
        "name: t\ngenerator: g\nclassifier: c\nsegmenter: s\n"
        "targets: {classes: all}\njudge: {keep: 0.7}\nshortcuts: {enabled: true, min_lift: 1.5}\n"
    )
    CatalogWriter(tmp_path).write_run("r1", name="t", spec_yaml=spec)
    CatalogWriter(tmp_path).write_run("r2", name="t", spec_yaml="not: [a spec")
    con = connect(tmp_path)
    limits = run_thresholds(con, "r1")
    assert (limits.keep, limits.min_lift) == (0.7, 1.5)
    assert run_thresholds(con, "r2").keep == 0.5  # unreadable: the defaults
    lead = Lead("square", "water", 1.0, 0.4, 1.2, 0.6, 0.5, 0.8, limits.min_lift)
    assert "needs 1.5 nats with the interval above 0" in lead.sentence()
    assert "1.2 nats higher on those that show it" in lead.sentence()


def test_the_terminal_prints_the_answer(tmp_path, capsys):
    from dxray.cli.audit import _echo_answer

    root = tmp_path / "c"
    write_sample(root)
    _echo_answer(SimpleNamespace(shortcuts=None, catalog=root, run_id="ckpt-a"))
    out = capsys.readouterr().out
    assert "circle: its score rises 2.4 nats (about 11x the odds) on water" in out
    assert out.index("circle: its score") < out.index("Spurious units") < out.index("Leads")
    assert "\x1b[" not in out  # no colour codes when piped


def test_the_unit_test_decides_the_units_it_read(tmp_path):
    """A unit audited for a class with a unit_shortcuts row takes that row's verdict in
    unit_summary (and so in the answer, the gate and diffs); the intervention's stays beside it,
    and units the test did not read keep the intervention's."""
    from datetime import UTC, datetime

    write_sample(tmp_path)
    row = {"run_id": "ckpt-a", "score_id": "9", "class_index": 0, "class_name": "circle",
           "unit": "features.4:17", "layer": "features.4", "channel": 17,
           "factors_from": "vocabulary", "factor": "sand", "factor_response": 0.3,
           "object_response": 2.4, "margin": -2.1, "low": -2.5, "high": -1.7,
           "factor_images": 16, "object_images": 80, "verdict": "core",
           "created_at": datetime.now(UTC)}  # fmt: skip
    before = {u["unit"]: u for u in _unit_rows(connect(tmp_path), "ckpt-a")}
    assert before["features.4:17"]["verdict"] == "spurious"  # the sample's intervention call
    CatalogWriter(tmp_path).write("unit_shortcuts", [row], "ckpt-a")
    con = connect(tmp_path)
    units = {u["unit"]: u for u in _unit_rows(con, "ckpt-a")}
    tested, other = units["features.4:17"], units["features.4:3"]
    assert (tested["verdict"], tested["judged_by"]) == ("core", "unit test")
    assert tested["intervention_verdict"] == "spurious" and tested["unit_margin"] == -2.1
    assert other["judged_by"] == "intervention" and other["unit_factor"] is None
    answer = read_answer(con, "ckpt-a")
    assert answer.unit_test and "features.4:17" not in {u.name for u in answer.spurious_units}
    assert "by the unit-shortcut test" in "\n".join(answer.lines())
    # a spurious call of the test is said with its numbers
    CatalogWriter(tmp_path).write(
        "unit_shortcuts",
        [{**row, "score_id": "99", "factor": "water", "factor_response": 2.5,
          "object_response": 0.4, "margin": 2.1, "low": 1.8, "high": 2.4, "verdict": "spurious"}],
        "ckpt-a",
    )  # fmt: skip
    (unit,) = [u for u in read_answer(connect(tmp_path), "ckpt-a").spurious_units
               if u.name == "features.4:17"]  # fmt: skip
    assert unit.judged_by == "unit test" and unit.sentence() == (
        "unit features.4:17 (a top unit of circle): fires 2.50 on water with no object vs "
        "0.40 on the circle (margin 1.80 to 2.40, 95% interval)"
    )


def _unit_rows(con, run_id):
    cursor = con.execute("SELECT * FROM unit_summary WHERE run_id = ?", [run_id])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
