"""The release gate on small synthetic catalogs: every rule, every bad input, the outputs.

Runs are written by the `write_gate_run` fixture (tests/conftest.py): a few rows each, no model
and no Ray. The end-to-end gate on the committed zoo is tests/run/test_gate_scan.py.
"""

import json
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from dxray.catalog.gate import GateInputError, gate_runs
from dxray.catalog.gate_render import FORMAT, render_text, to_json, to_json_text, to_junit
from dxray.catalog.sample import write_sample
from dxray.catalog.views import connect
from dxray.catalog.writer import CatalogWriter
from dxray.cli.main import app
from dxray.spec.model import GateSpec

WATERMARK = ("star", "a watermark")
FOUND = (2.0, 1.6, 2.4)  # a finding: lift >= 1, interval above 0


def _gate(root, baseline, candidate, **options):
    con = connect(root, read_only=True)
    try:
        return gate_runs(con, baseline, candidate, **options)
    finally:
        con.close()


def _check(result, name):
    [check] = [c for c in result.checks if c.name == name]
    return check


def _cli(*args):
    return CliRunner().invoke(app, ["gate", *map(str, args)])


# ---------------------------------------------------------------------------------------------
# Shortcuts
# ---------------------------------------------------------------------------------------------


def test_a_gained_finding_fails_and_a_removed_one_passes(tmp_path, write_gate_run):
    fixed = write_gate_run(tmp_path, "fixed", shortcuts={})
    biased = write_gate_run(tmp_path, "biased", shortcuts={WATERMARK: FOUND})

    worse = _gate(tmp_path, fixed, biased)
    assert not worse.passed and worse.verdict == "fail"
    [failure] = worse.failures
    assert (failure.kind, failure.name, failure.change) == (
        "shortcut",
        "star <- a watermark",
        "gained",
    )
    assert failure.candidate["finding"] and not failure.baseline["finding"]
    assert len(worse.checks) == 3 * 2  # every class x every attribute, once
    assert all(c.change == "none" for c in worse.checks if c is not failure)

    better = _gate(tmp_path, biased, fixed)
    assert better.passed
    assert _check(better, "star <- a watermark").change == "removed"
    assert "removed: lift 0.00 [-0.30, 0.30], a finding in the baseline (2.00" in (
        _check(better, "star <- a watermark").message
    )

    itself = _gate(tmp_path, biased, biased)
    assert itself.passed and _check(itself, "star <- a watermark").change == "kept"


@pytest.mark.parametrize(
    ("after", "margin", "change"),
    [
        ((3.2, 2.95, 3.5), None, "grew"),  # starts 0.55 above the baseline's end: > 0.5
        ((3.0, 2.85, 3.2), None, "kept"),  # 0.45 above: within the margin
        ((3.0, 2.85, 3.2), 0.4, "grew"),  # ... but not a margin of 0.4 (the command line)
        ((4.0, 2.5, 5.5), None, "kept"),  # point lift +2.0, but the intervals say +0.1 at least
        ((1.2, 0.9, 1.5), None, "kept"),  # smaller: never a failure
    ],
)
def test_a_kept_shortcut_fails_only_when_its_intervals_grow_apart_by_the_margin(
    tmp_path, write_gate_run, after, margin, change
):
    a = write_gate_run(tmp_path, "a", shortcuts={WATERMARK: FOUND})
    b = write_gate_run(tmp_path, "b", shortcuts={WATERMARK: after})
    result = _gate(tmp_path, a, b, lift_margin=margin)
    check = _check(result, "star <- a watermark")
    assert check.change == change
    assert result.passed == (change == "kept")
    if change == "grew":
        assert "higher by at least" in check.message and "beyond both intervals" in check.message


def test_a_pair_the_candidate_could_not_measure_is_skipped_not_passed(tmp_path, write_gate_run):
    a = write_gate_run(tmp_path, "a", shortcuts={WATERMARK: FOUND})
    b = write_gate_run(tmp_path, "b", shortcuts={WATERMARK: (None, None, None, 2)})
    result = _gate(tmp_path, a, b)
    check = _check(result, "star <- a watermark")
    assert (check.status, check.change) == ("skip", "untested")
    assert "2 usable images" in check.message and result.passed
    junit = ET.fromstring(to_junit(result))
    assert junit.find("testsuite").get("skipped") == str(
        sum(1 for c in result.checks if c.status == "skip")
    )


def test_a_finding_gained_where_the_baseline_could_not_measure_it_still_fails(
    tmp_path, write_gate_run
):
    a = write_gate_run(tmp_path, "a", shortcuts={WATERMARK: (None, None, None, 1)})
    b = write_gate_run(tmp_path, "b", shortcuts={WATERMARK: FOUND})
    check = _check(_gate(tmp_path, a, b), "star <- a watermark")
    assert check.change == "gained" and "the baseline could not measure it" in check.message


def test_a_borderline_gain_fails_and_says_the_intervals_overlap(tmp_path, write_gate_run):
    a = write_gate_run(tmp_path, "a", shortcuts={WATERMARK: (0.95, 0.5, 1.4)})
    b = write_gate_run(tmp_path, "b", shortcuts={WATERMARK: (1.05, 0.6, 1.5)})
    check = _check(_gate(tmp_path, a, b), "star <- a watermark")
    assert check.status == "fail" and check.overlap is True
    assert "the intervals overlap" in check.message


# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------

UNITS_BEFORE = {
    ("penultimate", 1, "circle"): ["core", "core"],  # -> spurious: gained
    ("penultimate", 2, "circle"): ["spurious", "spurious"],  # -> spurious: kept
    ("penultimate", 3, "square"): ["spurious", "spurious"],  # -> core: resolved
    ("penultimate", 4, "square"): ["core", "core"],  # -> 1 of 3 spurious: core, passes
    ("penultimate", 5, "star"): ["core", "core"],  # -> 1 of 2 spurious: a tie, uncertain
    ("penultimate", 6, "star"): ["spurious", "spurious"],  # -> no seed judged
    ("penultimate", 7, None): ["core"],  # not audited in the candidate
}
UNITS_AFTER = {
    ("penultimate", 1, "circle"): ["spurious", "spurious"],
    ("penultimate", 2, "circle"): ["spurious", "core", "spurious"],
    ("penultimate", 3, "square"): ["core", "core"],
    ("penultimate", 4, "square"): ["spurious", "core", "core"],
    ("penultimate", 5, "star"): ["spurious", "core"],
    ("penultimate", 6, "star"): [None, None],
    ("penultimate", 8, "star"): ["spurious", "spurious"],  # not audited in the baseline: gained
}


def test_units_fail_only_when_spurious_by_majority_and_not_before(tmp_path, write_gate_run):
    a = write_gate_run(tmp_path, "a", units=UNITS_BEFORE)
    b = write_gate_run(tmp_path, "b", units=UNITS_AFTER)
    result = _gate(tmp_path, a, b)
    got = {c.name: (c.status, c.change) for c in result.checks}
    assert got == {
        "penultimate:1 (circle)": ("fail", "gained"),
        "penultimate:2 (circle)": ("pass", "kept"),
        "penultimate:3 (square)": ("pass", "resolved"),
        "penultimate:4 (square)": ("pass", "not_spurious"),
        "penultimate:5 (star)": ("pass", "not_spurious"),
        "penultimate:6 (star)": ("skip", "not_judged"),
        "penultimate:7": ("skip", "not_audited"),
        "penultimate:8 (star)": ("fail", "gained"),
    }
    assert (
        "uncertain (no majority) never fails the gate"
        in _check(result, "penultimate:5 (star)").message
    )
    assert "not audited in the baseline" in _check(result, "penultimate:8 (star)").message
    assert "neither run has the shortcut test: units only" in result.notes
    assert result.counts("unit")["gained"] == 2

    # gate.units: false (the command line's --no-units) gates the shortcuts only
    shortcuts_only = _gate(tmp_path, a, b, units=False)
    assert shortcuts_only.passed and shortcuts_only.checks == []
    assert "units not gated (gate.units is false)" in shortcuts_only.notes
    assert _cli(tmp_path, "--baseline", a, "--candidate", b).exit_code == 1
    assert _cli(tmp_path, "--baseline", a, "--candidate", b, "--no-units").exit_code == 0


# ---------------------------------------------------------------------------------------------
# Thresholds: the candidate's recorded spec, a given spec, the command line
# ---------------------------------------------------------------------------------------------


def test_thresholds_come_from_the_candidates_spec_unless_given(tmp_path, write_gate_run):
    a = write_gate_run(tmp_path, "a", shortcuts={WATERMARK: FOUND})
    strict = {"gate": {"lift_margin": 0.1}}
    b = write_gate_run(tmp_path, "b", shortcuts={WATERMARK: (2.8, 2.6, 3.0)}, spec=strict)

    recorded = _gate(tmp_path, a, b)  # 2.6 - 2.4 = 0.2 > 0.1
    assert recorded.thresholds.lift_margin == 0.1 and not recorded.passed
    assert recorded.thresholds_from == "the candidate run's spec"
    given = _gate(tmp_path, a, b, thresholds=GateSpec(), thresholds_from="release.yaml")
    assert given.passed and given.thresholds_from == "release.yaml"
    overridden = _gate(tmp_path, a, b, lift_margin=0.3)
    assert overridden.passed
    assert overridden.thresholds_from == (
        "the candidate run's spec and the command line (lift_margin)"
    )
    assert "lift margin 0.3 nats" in render_text(overridden)


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit 2
# ---------------------------------------------------------------------------------------------


def test_an_unknown_run_is_named_with_the_known_ones(tmp_path, write_gate_run):
    a = write_gate_run(tmp_path, "release-1", shortcuts={})
    with pytest.raises(GateInputError, match=r"run 'release-0' is not in the catalog; runs, newest first: release-1$"):  # fmt: skip
        _gate(tmp_path, "release-0", a)
    with pytest.raises(GateInputError, match="'nope' is not in the catalog"):
        _gate(tmp_path, a, "nope")
    run = _cli(tmp_path, "--baseline", "release-0", "--candidate", a)
    assert run.exit_code == 2
    assert run.stderr.strip().splitlines() == [
        "error: run 'release-0' is not in the catalog; runs, newest first: release-1"
    ]
    assert _cli(tmp_path / "missing", "--baseline", a, "--candidate", a).exit_code == 2


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        ({"classes": ("circle", "star", "square")}, "class 1 is 'square' in one, 'star' in the other"),
        ({"classes": ("circle", "square", "star", "cross")}, "3 classes against 4 (only in a: none; only in b: cross)"),
        ({"vocabulary": (("water", "scene"),)}, "different vocabularies (only in a: a watermark (overlay); only in b: none)"),
        ({"vocabulary": (("water", "scene"), ("a watermark", "scene"))}, "only in a: a watermark (overlay); only in b: a watermark (scene)"),
        ({"shortcuts": None}, "run b has no shortcut test results and the other run has"),
        ({"spec": {"shortcuts": {"min_lift": 0.5}}}, "call findings differently"),
    ],
)  # fmt: skip
def test_runs_that_cannot_be_compared_are_refused(tmp_path, write_gate_run, candidate, expected):
    a = write_gate_run(tmp_path, "a", shortcuts={WATERMARK: FOUND})
    options = {"shortcuts": {}, **candidate}
    b = write_gate_run(tmp_path, "b", **options)
    with pytest.raises(GateInputError) as err:
        _gate(tmp_path, a, b)
    assert expected in str(err.value) and "\n" not in str(err.value)
    run = _cli(tmp_path, "--baseline", a, "--candidate", b)
    assert run.exit_code == 2 and len(run.stderr.strip().splitlines()) == 1
    assert expected in run.stderr


def test_a_baseline_without_the_shortcut_test_is_refused_too(tmp_path, write_gate_run):
    a = write_gate_run(tmp_path, "a")
    b = write_gate_run(tmp_path, "b", shortcuts={WATERMARK: FOUND})
    with pytest.raises(GateInputError, match="run a has no shortcut test results.*rerun its audit"):
        _gate(tmp_path, a, b)


@pytest.mark.parametrize("status", ["running", "partial", "failed"])
def test_a_run_that_is_not_finished_is_refused_unless_allowed(tmp_path, write_gate_run, status):
    a = write_gate_run(tmp_path, "a", shortcuts={})
    b = write_gate_run(tmp_path, "b", shortcuts={WATERMARK: FOUND}, status=status)
    with pytest.raises(GateInputError, match=f"run b is {status}, not finished.*--allow-partial"):
        _gate(tmp_path, a, b)
    if status == "failed":  # an error of many lines still makes one line
        CatalogWriter(tmp_path).finish_run(b, "failed", error="RuntimeError: boom\n  at line 2")
        with pytest.raises(GateInputError) as err:
            _gate(tmp_path, a, b)
        assert "(RuntimeError: boom)" in str(err.value) and "\n" not in str(err.value)
    assert _cli(tmp_path, "--baseline", a, "--candidate", b).exit_code == 2
    result = _gate(tmp_path, a, b, allow_partial=True)
    assert not result.passed  # what it has still fails the gate
    assert any(n.startswith(f"run b is {status}") for n in result.notes)
    assert _cli(tmp_path, "--baseline", a, "--candidate", b, "--allow-partial").exit_code == 1


def test_a_negative_margin_is_refused(tmp_path, write_gate_run):
    a = write_gate_run(tmp_path, "a", shortcuts={})
    with pytest.raises(GateInputError, match="lift margin is a number of nats >= 0"):
        _gate(tmp_path, a, a, lift_margin=-0.1)
    assert _cli(tmp_path, "--baseline", a, "--candidate", a, "--margin", "-1").exit_code == 2


# ---------------------------------------------------------------------------------------------
# Outputs and the CLI
# ---------------------------------------------------------------------------------------------


def test_the_cli_exits_0_1_and_writes_json_and_junit(tmp_path, write_gate_run):
    fixed = write_gate_run(tmp_path, "fixed", shortcuts={}, units=UNITS_BEFORE)
    biased = write_gate_run(tmp_path, "biased", shortcuts={WATERMARK: FOUND}, units=UNITS_BEFORE)
    out = tmp_path / "out"
    run = _cli(tmp_path, "--baseline", fixed, "--candidate", biased,
               "--json", out / "gate.json", "--junit", out / "gate.xml")  # fmt: skip
    assert run.exit_code == 1
    assert run.stdout.startswith("gate FAILED: 1 of 13 checks fail, fixed -> biased")
    assert "FAIL  shortcut star <- a watermark: gained" in run.stdout

    document = json.loads((out / "gate.json").read_text())
    assert list(document) == ["format", "verdict", "passed", "baseline", "candidate",
                              "thresholds", "counts", "checks", "notes"]  # fmt: skip
    assert document["format"] == FORMAT and document["verdict"] == "fail"
    assert document["thresholds"] == {"lift_margin": 0.5, "units": True,
                                      "from": "the candidate run's spec"}  # fmt: skip
    assert document["counts"]["shortcuts"]["gained"] == 1 and document["counts"]["failures"] == 1
    assert all(set(c) == {"kind", "name", "status", "change", "message", "key", "baseline",
                          "candidate", "overlap"} for c in document["checks"])  # fmt: skip

    suites = ET.parse(out / "gate.xml").getroot()
    [suite] = suites.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(document["checks"]) == 6 + len(UNITS_BEFORE)
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == ["star <- a watermark"] and suite.get("failures") == "1"
    assert {c.get("classname") for c in cases} >= {
        "dxray.gate.shortcut.star",
        "dxray.gate.unit.circle",
    }

    passing = _cli(tmp_path, "--baseline", biased, "--candidate", fixed, "--junit", out / "b.xml")
    assert passing.exit_code == 0 and passing.stdout.startswith("gate PASSED: biased -> fixed")
    assert "PASS  shortcut star <- a watermark: removed" in passing.stdout
    assert _cli(tmp_path, "--baseline", biased, "--candidate", biased).exit_code == 0


def test_a_spec_given_on_the_command_line_sets_the_thresholds(tmp_path, write_gate_run):
    from dxray.spec.model import AuditSpec

    a = write_gate_run(tmp_path, "a", shortcuts={WATERMARK: FOUND})
    b = write_gate_run(tmp_path, "b", shortcuts={WATERMARK: (2.8, 2.6, 3.0)})
    spec = AuditSpec.from_dict(
        {"name": "r", "generator": "g", "classifier": "c", "segmenter": "s",
         "gate": {"lift_margin": 0.1}}
    )  # fmt: skip
    path = tmp_path / "release.yaml"
    path.write_text(spec.to_yaml())
    assert _cli(tmp_path, "--baseline", a, "--candidate", b).exit_code == 0
    run = _cli(tmp_path, "--baseline", a, "--candidate", b, "--spec", path)
    assert run.exit_code == 1 and f"from {path}" in run.stdout
    assert _cli(tmp_path, "--baseline", a, "--candidate", b, "--spec", path, "--margin", "0.3").exit_code == 0  # fmt: skip
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec.to_yaml().replace("lift_margin: 0.1", "lift_margin: -1"))
    run = _cli(tmp_path, "--baseline", a, "--candidate", b, "--spec", bad)
    assert run.exit_code == 2 and "gate.lift_margin" in run.stderr


def test_catalog_text_is_escaped_in_junit_and_json(tmp_path, write_gate_run):
    hostile = ("circle", 'sq<u>are & "co"\x01', "star")
    attribute = "a <watermark> & ]]>"
    vocab = (("water", "scene"), (attribute, "overlay"))
    a = write_gate_run(tmp_path, "a", shortcuts={}, classes=hostile, vocabulary=vocab)
    found = {(hostile[1], attribute): FOUND}
    b = write_gate_run(tmp_path, "b", shortcuts=found, classes=hostile, vocabulary=vocab)
    result = _gate(tmp_path, a, b)
    root = ET.fromstring(to_junit(result))  # parses: the text is escaped
    [failure] = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert failure.get("name") == 'sq<u>are & "co"\ufffd <- a <watermark> & ]]>'
    assert to_junit(result).isascii()
    assert json.loads(to_json_text(result))["checks"] == json.loads(
        json.dumps(to_json(result)["checks"])
    )


def test_the_text_summary_fits_one_screen(tmp_path, write_gate_run):
    classes = tuple(f"class{i}" for i in range(100))
    vocab = tuple((f"scene{i}", "scene") for i in range(3))
    many = {(name, "scene0"): FOUND for name in classes}
    a = write_gate_run(tmp_path, "a", shortcuts={}, classes=classes, vocabulary=vocab)
    b = write_gate_run(tmp_path, "b", shortcuts=many, classes=classes, vocabulary=vocab)
    text = render_text(_gate(tmp_path, a, b))
    lines = text.splitlines()
    assert len(lines) <= 30 and lines[0].startswith("gate FAILED: 100 of 300 checks fail")
    assert lines[-1] == "... and 80 more checks (--json has every one)"


def test_the_sample_catalog_gates_as_its_numbers_say(tmp_path):
    """The sample's ckpt-a -> ckpt-b (dxray/catalog/sample.py): square <- grass appears (fails),
    circle <- water vanishes, star <- a watermark stays; unit 17 of circle is resolved. Its runs
    recorded no readable spec: the thresholds are the defaults, and the gate says so."""
    write_sample(tmp_path)
    result = _gate(tmp_path, "ckpt-a", "ckpt-b")
    assert [(c.name, c.change) for c in result.failures] == [("square <- grass", "gained")]
    assert _check(result, "circle <- water").change == "removed"
    assert _check(result, "star <- a watermark").change == "kept"
    assert _check(result, "features.4:17 (circle)").change == "resolved"
    assert _check(result, "features.4:3").change == "not_spurious"
    assert result.thresholds_from == "the defaults"
    assert any("does not read" in note for note in result.notes)
