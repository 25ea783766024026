"""`dxray eval` end to end on a deliberately small world: tiny models, a classifier trained for
a few seconds, truth measured on a few scenes. Checks the plumbing (audits, tables, types,
report, CLI), not the quality of the verdicts (docs/EVALUATION.md has those)."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from dxray.catalog.views import connect
from dxray.eval import runner
from dxray.eval.printout import format_text
from dxray.eval.results import result_json, write_eval
from dxray.spec.model import AuditSpec


@pytest.fixture(scope="module")
def small_zoo(tmp_path_factory):
    from dxray.toyworld.train_classifier import (
        ToyClassifierConfig,
        ToyOracleConfig,
        train_classifier,
        train_oracle,
    )
    from dxray.toyworld.world import load_world
    from dxray.toyworld.zoo import build_tiny_zoo, write_zoo_truth

    root = build_tiny_zoo(tmp_path_factory.mktemp("small-zoo"))
    world = load_world("default")
    shutil.rmtree(root / "classifier")
    kw = dict(steps=40, batch=32, width=4, hidden=8, eval_n=0)
    train_classifier(world, root / "classifier", ToyClassifierConfig(**kw))
    fixed = ToyClassifierConfig(mode="fixed", **kw)
    train_classifier(world, root / "classifier-fixed", fixed)
    train_oracle(world, root / "oracle", ToyOracleConfig(**kw))
    write_zoo_truth(root, n=16, k=2)
    return root


@pytest.fixture(scope="module")
def evaluated(small_zoo, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("eval-catalog")
    spec = AuditSpec.from_dict(
        {
            "name": "small",
            "generator": str(small_zoo / "generator"),
            "classifier": str(small_zoo / "classifier"),
            "segmenter": str(small_zoo / "segmenter"),
            "engine": {
                "iterations": 2,
                "template": "a {}",
                "sampler": {"steps": 1},
                "batch_size": 16,
                "stop_prob": None,
            },  # fmt: skip
            "judge": {"probes": ["water", "sand", "a watermark"]},
            "ray": {"workers": 1, "num_cpus_per_worker": 1},
        }
    )
    lines: list[str] = []
    result = runner.evaluate(
        spec, small_zoo, catalog=catalog, seeds=2, baseline=True, fixed=True,
        progress=lines.append,
    )  # fmt: skip
    write_eval(result)
    return result, catalog, lines


def test_evaluation_writes_typed_tables(evaluated, small_zoo):
    result, catalog, lines = evaluated
    assert any("fixed release" in line for line in lines)
    con = connect(catalog, read_only=True)
    sections = {r[0] for r in con.execute("SELECT DISTINCT section FROM eval_metrics").fetchall()}
    assert {"neurons", "classes", "success", "bias", "bias-fixed", "baseline"} <= sections
    # Every truth unit was audited with both seeds and got a verdict.
    truth_units = (small_zoo / "truth" / "units.csv").read_text().strip().splitlines()[1:]
    neurons = con.execute("SELECT truth, verdict, seeds, agree FROM eval_neurons").fetchall()
    assert len(neurons) == len(truth_units)
    assert all(t in ("core", "spurious") and s == 2 for t, _, s, _ in neurons)
    assert all(v in ("core", "spurious", "uncertain") for _, v, _, _ in neurons)
    assert all(isinstance(a, bool) for *_, a in neurons)
    releases = {r[0] for r in con.execute("SELECT DISTINCT release FROM eval_classes").fetchall()}
    assert releases == {"biased", "fixed"}


def test_the_shortcut_test_is_scored_on_both_releases(evaluated):
    result, catalog, _ = evaluated
    con = connect(catalog, read_only=True)
    # Every (class, factor) of the truth got the test's call, in both releases
    rows = con.execute(
        "SELECT release, shortcut_found, relied FROM eval_classes WHERE shortcut_found IS NOT NULL"
    ).fetchall()
    assert {r[0] for r in rows} == {"biased", "fixed"}
    biased = [r for r in rows if r[0] == "biased"]
    assert len(biased) == len(result.classes) == 5 * 6  # 5 classes x (5 contexts + 1 cue)
    found = sum(f and relied for _, f, relied in biased)
    false = sum(f and not relied for _, f, relied in biased)
    assert result.get("shortcuts", "default", "found") == found
    assert result.get("shortcuts", "default", "false") == false
    assert result.get("shortcuts", "default", "relied") == sum(r for *_, r in biased)
    assert result.get("shortcuts", "default", "renders") == 5 * 2 * 16  # contexts x (+ cue) x seeds
    assert result.get("classes", "default", "n", judge="shortcuts") == len(biased)
    text = format_text(result.metrics, result.neurons, result.classes, result.world)
    assert f"class shortcuts found {found}/" in text and "counterfactual test" in text


def test_trivial_judges_are_scored_beside_dxray(evaluated):
    result, _, _ = evaluated
    audited = [r for r in result.neurons if r["seeds"]]
    core_share = sum(r["truth"] == "core" for r in audited) / len(audited)
    assert result.get("neurons", "default", "accuracy", judge="always-core") == pytest.approx(
        core_share
    )
    labels = {r["truth"] for r in audited}
    if labels == {"core", "spurious"}:  # a constant judge: balanced accuracy 0.5 exactly
        assert result.get(
            "neurons", "default", "balanced_accuracy", judge="always-core"
        ) == pytest.approx(0.5)
    # The intervention judge ran on every audited unit's images.
    assert result.get("neurons", "default", "n", judge="intervention") == len(audited)
    assert all(r["intervention"] in ("core", "spurious", "uncertain") for r in audited)
    relied = [r["relied"] for r in result.classes]
    assert result.get("classes", "default", "accuracy", judge="never") == pytest.approx(
        1 - sum(relied) / len(relied)
    )
    # The baseline judged both methods and real scenes on the same measures.
    for method in ("diffexplainer", "pixel-am", "real-scenes"):
        assert 0 <= result.get("baseline", method, "oracle_object_recognised") <= 1
        assert result.get("baseline", method, "statistics_distance") >= 0


def test_text_report_and_headline(evaluated):
    result, catalog, _ = evaluated
    text = format_text(result.metrics, result.neurons, result.classes, result.world)
    assert "Verdict agreement" in text and "always-core" in text
    assert text.strip().splitlines()[-1].startswith("HEADLINE: world default")
    from dxray.report.page import write_report

    page = write_report(catalog, catalog / "r.html", result.run_id).read_text()
    assert 'id="evaluation"' in page and "Bias discovery" in page
    assert "<th>intervention</th>" in page
    assert json.loads(result_json(result))["run_id"] == result.run_id


def test_cli_evaluates_a_catalog_without_rerunning(evaluated, small_zoo, tmp_path):
    from dxray.cli.main import app

    result, catalog, _ = evaluated
    out = tmp_path / "eval.json"
    args = ["eval", str(catalog), "--truth", str(small_zoo), "--run", result.run_id,
            "--no-baseline", "--no-fixed", "--json", str(out)]  # fmt: skip
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert "HEADLINE:" in run.output
    again = json.loads(out.read_text())
    assert again["run_id"] == result.run_id
    assert len(again["neurons"]) == len(result.neurons)


def test_a_catalog_without_run_is_scored_on_the_zoos_own_classifiers_latest_run(
    evaluated, small_zoo, tmp_path
):
    """The evaluation's catalog also holds the fixed release's audit, which ran after the main
    one: the newest run of all is that one, which the truth does not describe."""
    from dxray.cli.main import app
    from dxray.eval.reads import latest_run

    result, catalog, _ = evaluated
    assert latest_run(catalog) != result.run_id  # the fixed release's
    out = tmp_path / "eval.json"
    args = ["eval", str(catalog), "--truth", str(small_zoo), "--no-baseline", "--no-fixed",
            "--json", str(out)]  # fmt: skip
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert json.loads(out.read_text())["run_id"] == result.run_id


def test_cli_errors_name_the_problem(small_zoo, tmp_path):
    from dxray.cli.main import app

    run = CliRunner().invoke(app, ["eval", str(tmp_path), "--truth", str(small_zoo)])
    assert run.exit_code == 2 and "no finished run" in run.output
    run = CliRunner().invoke(app, ["eval", str(tmp_path), "--truth", str(tmp_path)])
    assert run.exit_code == 2 and "zoo.json" in run.output


def test_a_zoo_without_a_fixed_release_skips_that_part(evaluated, small_zoo, tmp_path):
    # A copy of the zoo without classifier-fixed; the main audit is read from the catalog.
    result, catalog, _ = evaluated
    zoo = tmp_path / "zoo"
    shutil.copytree(small_zoo, zoo, ignore=shutil.ignore_patterns("classifier-fixed"))
    spec = AuditSpec.from_dict(
        {"name": "small", "generator": str(zoo / "generator"), "classifier": str(zoo / "classifier"),
         "segmenter": str(zoo / "segmenter"), "engine": {"template": "a {}"},
         "judge": {"probes": ["water", "sand", "a watermark"]}}
    )  # fmt: skip
    lines: list[str] = []
    again = runner.evaluate(
        spec, zoo, catalog=catalog, seeds=2, run_id=result.run_id, baseline=False,
        progress=lines.append,
    )  # fmt: skip
    assert any("no classifier-fixed" in line for line in lines)
    assert again.fixed_classes == [] and again.get("neurons", "default", "n") > 0


def test_checking_a_zoo_changes_no_file_unless_asked(small_zoo):
    from dxray.toyworld.gates import GATES_FILE
    from dxray.toyworld.zoo import check_zoo

    gates = small_zoo / GATES_FILE
    gates.unlink(missing_ok=True)
    rows = check_zoo(small_zoo, steps=1)
    assert rows and not gates.exists()
    check_zoo(small_zoo, steps=1, write=True)
    assert json.loads(gates.read_text())["gates"]


def test_the_headline_says_what_the_rows_say(evaluated):
    """The headline's agreement figures, recomputed from the per-unit and per-(class, factor)
    rows the evaluation wrote to the catalog: the headline cannot drift from its evidence."""
    from dxray.eval.printout import headline

    result, catalog, _ = evaluated
    con = connect(catalog, read_only=True)
    try:
        units = con.execute(
            "SELECT truth, verdict FROM eval_neurons WHERE run_id = ? AND seeds > 0",
            [result.run_id],
        ).fetchall()
        classes = con.execute(
            "SELECT relied, flagged FROM eval_classes WHERE run_id = ? AND release = 'biased'",
            [result.run_id],
        ).fetchall()
    finally:
        con.close()

    def percent(hits, n):
        return f"{100 * hits / n:.0f}%"

    def balanced(pairs):  # (truth is positive, call is positive and decided right)
        pos = [right for positive, right in pairs if positive]
        neg = [right for positive, right in pairs if not positive]
        return (sum(pos) / len(pos) + sum(neg) / len(neg)) / 2

    right = [t == v for t, v in units]
    unit_pairs = [(t == "spurious", t == v) for t, v in units]
    line = headline(result.metrics, result.world)
    assert (
        f"neuron agreement {percent(sum(right), len(right))} "
        f"(balanced {100 * balanced(unit_pairs):.0f}%" in line
    ), line
    class_right = [bool(f) == bool(r) for r, f in classes]
    assert f"class-bias agreement {percent(sum(class_right), len(class_right))}" in line, line
