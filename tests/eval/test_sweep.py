"""`dxray sweep` end to end at the smallest settings that run every step: two random worlds on
the tiny zoo's generator and segmenter, classifiers trained for a few steps, truth on a few
scenes, a two-iteration audit with a small shortcut test; then resume (nothing redone), the
pooled table and the SWEEP line through the CLI. Plumbing, not quality (docs/EVALUATION.md)."""

import json

import pytest
from typer.testing import CliRunner

from dxray.eval.sweep import (
    RESULT_FILE,
    SweepSettings,
    read_sweep,
    run_sweep,
    sweep_spec,
    world_dir,
)
from dxray.spec.model import AuditSpec
from dxray.toyworld.train_classifier import ToyClassifierConfig

SEED = 5
# The CLI's recipe with --classifier-steps 20 (the zoo's classifier, 20 steps), so that the
# CLI below finds these results by their key
TINY = SweepSettings(
    seeds=1,
    classifier=ToyClassifierConfig(hide_object=0.1, steps=20),
    truth_n=8,
    truth_k=1,
    spurious_k=3,
)


@pytest.fixture(scope="module")
def base_zoo(tmp_path_factory):
    import shutil

    from dxray.models.build import DEFAULT_WORDS, GeneratorArch, build_generator, build_tokenizer
    from dxray.toyworld.scenes import caption_words
    from dxray.toyworld.world import default_world
    from dxray.toyworld.zoo import build_tiny_zoo

    zoo = build_tiny_zoo(tmp_path_factory.mktemp("base-zoo"))
    # A tiny generator whose tokenizer knows every caption word of the default world's
    # visuals (the tiny zoo's knows a few): a shared generator is checked for them.
    words = sorted({*DEFAULT_WORDS, *caption_words(default_world())})
    shutil.rmtree(zoo / "generator")
    tokenizer = build_tokenizer(words, max_length=16)
    build_generator(GeneratorArch(latent_size=8), seed=0, tokenizer=tokenizer).save_pretrained(
        zoo / "generator"
    )
    return zoo


@pytest.fixture(scope="module")
def spec_dict(base_zoo):
    return {
        "name": "tiny",
        "generator": str(base_zoo / "generator"),
        "classifier": str(base_zoo / "classifier"),
        "segmenter": str(base_zoo / "segmenter"),
        "engine": {"iterations": 2, "template": "a {}", "sampler": {"steps": 1},
                   "batch_size": 16, "stop_prob": None},
        "judge": {"probes": ["water"]},
        "shortcuts": {"enabled": True, "template": "{}", "seeds": 2, "pool": 6, "top": 2,
                      "min_images": 1, "with_object": "none", "batch_size": 16},
        "ray": {"workers": 1, "num_cpus_per_worker": 1},
    }  # fmt: skip


@pytest.fixture(scope="module")
def swept(base_zoo, spec_dict, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweeps")
    lines: list[str] = []
    spec = AuditSpec.from_dict(spec_dict)
    results = run_sweep(
        spec, out=out, seed=SEED, worlds=2, base_zoo=base_zoo, settings=TINY,
        progress=lines.append,
    )  # fmt: skip
    return out, results, lines, spec


def test_every_world_gets_its_config_zoo_truth_and_result(swept, base_zoo):
    from dxray.toyworld.random_worlds import random_world
    from dxray.toyworld.zoo import zoo_part, zoo_world

    out, results, _, _ = swept
    assert [r["world"] for r in results] == [f"sweep-{SEED}-0", f"sweep-{SEED}-1"]
    for index, result in enumerate(results):
        folder = world_dir(out, SEED, index)
        world = zoo_world(folder)
        assert world.correlations == random_world(SEED, index).correlations
        # the visuals' models are the base zoo's, shared; the classifier is the world's own
        assert zoo_part(folder, "generator").resolve() == (base_zoo / "generator").resolve()
        assert zoo_part(folder, "classifier") == folder / "classifier"
        units = (folder / "truth" / "units.csv").read_text().strip().splitlines()[1:]
        truth = json.loads((folder / "truth" / "truth.json").read_text())
        assert truth["spurious_k"] == 3
        wide = [u for u in result["units"] if u["selection"] == "wide"]
        assert len(wide) == truth["wide_units"] and all(u["truth"] == "spurious" for u in wide)
        assert len(result["units"]) == len(units) and all(u["seeds"] == 1 for u in result["units"])
        assert all(u["truth"] in ("core", "spurious") for u in result["units"])
        assert all(set(u["seed_verdicts"]) == {"0"} for u in result["units"])
        # every (class, factor) pair: 5 classes x (5 contexts + the watermark), with the test's
        # call (a lift needs images the untrained tiny segmenter may not confirm)
        pairs = result["pairs"]
        assert len(pairs) == 30 and all(p["shortcut_found"] in (True, False) for p in pairs)
        assert {p["planted"] for p in pairs} == {True, False}
        planted = {f"{p['class_name']}-{p['factor']}" for p in pairs if p["planted"]}
        assert planted == {c.name for c in world.correlations}
        assert json.loads((folder / RESULT_FILE).read_text())["key"] == TINY.key(swept[3])


def test_the_audit_is_the_worlds_own(swept):
    out, _, _, spec = swept
    folder = world_dir(out, SEED, 0)
    audit = sweep_spec(spec, folder, TINY)
    assert audit.classifier.source == str(folder / "classifier")
    assert audit.targets.units.csv.endswith("units.csv") and audit.targets.seeds == (0,)
    assert audit.shortcuts.enabled and "a watermark" in str(audit.shortcuts.attributes)


def test_a_rerun_resumes_and_the_cli_prints_the_table(swept, base_zoo, spec_dict, tmp_path):
    import yaml

    from dxray.cli.main import app

    out, results, _, _ = swept
    before = read_sweep(out, SEED)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict))
    got = CliRunner().invoke(
        app,
        ["sweep", str(spec_path), "--worlds", "2", "--seed", str(SEED), "--out", str(out),
         "--base-zoo", str(base_zoo), "--seeds", "1", "--classifier-steps", "20",
         "--truth-n", "8", "--truth-k", "1", "--spurious-k", "3",
         "--scatter", str(tmp_path / "s.png"), "--json", str(tmp_path / "t.json"),
         "--rescore"],
    )  # fmt: skip
    assert got.exit_code == 0, got.output
    assert got.output.count("done (result.json)") == 2
    assert got.output.count("[dxray sweep] rescored") == 2
    rescored = read_sweep(out, SEED)
    assert [r["pairs"] for r in rescored] == [r["pairs"] for r in before]
    assert all("activation" in u for r in rescored for u in r["units"])
    assert "SWEEP: 2 worlds; class shortcuts found" in got.output.splitlines()[-1]
    assert (tmp_path / "s.png").read_bytes().startswith(b"\x89PNG")
    table = json.loads((tmp_path / "t.json").read_text())
    lifts = [p for r in results for p in r["pairs"] if p["shortcut_lift"] is not None]
    assert table["calibration"]["pairs"] == len(lifts)
    assert len(read_sweep(out, SEED)) == 2


def test_stability_reruns_compare_every_verdict(swept):
    from dxray.eval.sweep import STABILITY_VARIANTS, read_stability

    out, results, lines, _ = swept
    rows = read_stability(out, SEED)  # world 0 only (run_sweep's default)
    assert {r["world"] for r in rows} == {"world-0"}
    assert {r["variant"] for r in rows} == set(STABILITY_VARIANTS)
    for r in rows:
        assert r["units"] == len(results[0]["units"]) and r["classes"] == 5
        assert 0 <= r["unit_changes"] == len(r["changes"]) <= r["units"]
    assert any("stability rerun [workers 2]" in line for line in lines)


def test_cached_results_are_read_not_redone(swept):
    out, results, _, spec = swept
    lines: list[str] = []
    again = run_sweep(
        spec, out=out, seed=SEED, worlds=2, base_zoo=".", settings=TINY, progress=lines.append
    )
    assert [r["run_id"] for r in again] == [r["run_id"] for r in results]
    assert all(line.endswith("done (result.json)") for line in lines)
