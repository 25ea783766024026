"""The release gate end to end: on the committed zoo's two releases (real audits on embedded
Ray), and in scans (`dxray scan --gate`, with finished runs faked in the catalog: no Ray).

The committed zoo's classifier was trained with the star-watermark shortcut planted, its
"fixed" release without it (dxray/toyworld/worlds/default.yaml): fixed -> biased must fail
the gate with star <- a watermark gained; biased -> fixed must pass and report it removed.
"""

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dxray.catalog.writer import CatalogWriter
from dxray.cli.main import app
from dxray.run.checkpoints import classifier_sha256
from dxray.run.scan import _spec_for, main_scan, scan
from dxray.run.scan_gates import GatesFailed, gate_path
from dxray.spec.model import AuditSpec
from dxray.spec.parse import with_overrides

ZOO = Path(__file__).resolve().parents[2] / "dxray" / "toyworld" / "zoo" / "default"


def _gate_cli(*args):
    return CliRunner().invoke(app, ["gate", *map(str, args)])


# ---------------------------------------------------------------------------------------------
# The committed zoo: fixed release -> biased release, and back
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """One catalog with an audit of each release: one class target (star) and its top unit,
    one seed, 2 iterations, and the shortcut test with 8 seeds of the world's water, sand and
    grass and its watermark, no pool, no with-object renders. Measured: ~22 s per audit on
    2 shared cores; star <- a watermark: biased 2.11 [1.96, 2.24], fixed -0.33 [-0.42, -0.25]."""
    from dxray.run.pipeline import run_audit
    from dxray.run.session import ray_session

    catalog = tmp_path_factory.mktemp("releases")

    def spec(classifier: str) -> AuditSpec:
        return AuditSpec.from_dict({
            "name": "zoo", "generator": str(ZOO / "generator"),
            "classifier": str(ZOO / classifier), "segmenter": str(ZOO / "segmenter"),
            "targets": {"classes": ["star"], "seeds": [0],
                        "units": {"top_k": 1, "layer": "penultimate"}},
            "engine": {"iterations": 2, "template": "a {}", "sampler": {"grad_mode": "last"},
                       "batch_size": 4, "stop_prob": None},
            "judge": {"probes": ["water", "a watermark"]},
            "shortcuts": {"enabled": True, "template": "{}", "seeds": 8, "pool": 0,
                          "with_object": "none",
                          "attributes": ["water", "sand", "grass",
                                         {"name": "a watermark", "overlay": "with a watermark"}]},
            "output": {"catalog": str(catalog)},
            "ray": {"workers": 1, "num_cpus_per_worker": 1},
        })  # fmt: skip

    fixed, biased = spec("classifier-fixed"), spec("classifier")
    with ray_session(fixed):  # one session for both audits: only the classifier is swapped
        runs = {name: run_audit(s) for name, s in (("fixed", fixed), ("biased", biased))}
    assert all(r.status == "finished" for r in runs.values())
    return catalog, runs["fixed"].run_id, runs["biased"].run_id


def test_fixed_to_biased_fails_the_gate_with_star_watermark_gained(releases, tmp_path):
    catalog, fixed, biased = releases
    run = _gate_cli(catalog, "--baseline", fixed, "--candidate", biased,
                    "--json", tmp_path / "g.json", "--junit", tmp_path / "g.xml")  # fmt: skip
    assert run.exit_code == 1, run.output
    assert run.stdout.startswith("gate FAILED: 1 of 21 checks fail")
    assert "FAIL  shortcut star <- a watermark: gained" in run.stdout
    document = json.loads((tmp_path / "g.json").read_text())
    assert [(c["name"], c["change"]) for c in document["checks"] if c["status"] == "fail"] == [
        ("star <- a watermark", "gained")
    ]
    suite = ET.parse(tmp_path / "g.xml").getroot().find("testsuite")
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["star <- a watermark"]
    # every class x the 4 attributes, and the star's top unit
    assert int(suite.get("tests")) == 5 * 4 + 1 == len(document["checks"])


def test_biased_to_fixed_passes_and_reports_the_shortcut_removed(releases):
    catalog, fixed, biased = releases
    run = _gate_cli(catalog, "--baseline", biased, "--candidate", fixed)
    assert run.exit_code == 0, run.output
    assert run.stdout.startswith(f"gate PASSED: {biased} -> {fixed}")
    assert "PASS  shortcut star <- a watermark: removed" in run.stdout
    # the two shortcuts the fixed release keeps are kept, not gained
    assert "PASS  shortcut circle <- water: kept" in run.stdout
    assert "PASS  shortcut triangle <- sand: kept" in run.stdout


def test_a_run_against_itself_passes(releases):
    catalog, _, biased = releases
    run = _gate_cli(catalog, "--baseline", biased, "--candidate", biased)
    assert run.exit_code == 0, run.output
    assert "gained" not in run.stdout and "removed" not in run.stdout


# ---------------------------------------------------------------------------------------------
# dxray scan --gate (finished runs faked in the catalog: no Ray)
# ---------------------------------------------------------------------------------------------

CLASSES = ("circle", "square", "triangle", "star", "cross")  # the tiny zoo's world


@pytest.fixture
def gate_spec(tiny_spec):
    return AuditSpec.from_dict({**tiny_spec, "targets": {"classes": [0], "seeds": [0]}})


def _checkpoint(source: Path, dest: Path, *, age_hours: float, scale: float) -> Path:
    """A copy of the classifier folder with scaled weights (new bytes), dated `age_hours` ago."""
    import os
    import time

    from safetensors.torch import load_file, save_file

    shutil.copytree(source, dest)
    weights = load_file(dest / "model.safetensors")
    save_file({k: v * scale for k, v in weights.items()}, dest / "model.safetensors")
    stamp = time.time() - age_hours * 3600
    for file in [dest, *dest.rglob("*")]:
        os.utime(file, (stamp, stamp))
    return dest


def _finished_run(spec: AuditSpec, checkpoint: Path, watermark: float | None) -> str:
    """A finished run of `checkpoint` as a scan would have audited it, with shortcut results:
    star <- a watermark lifts `watermark` [-0.4, +0.4] (None: no shortcut test)."""
    sha = classifier_sha256(str(checkpoint))
    ckpt_spec = _spec_for(spec, checkpoint)
    run_id = ckpt_spec.run_id_for(sha)
    writer = CatalogWriter(spec.output.catalog)
    writer.write_run(run_id, name=spec.name, spec_yaml=ckpt_spec.to_yaml(),
                     classifier=str(checkpoint), classifier_sha256=sha, num_targets=0)  # fmt: skip
    if watermark is not None:
        rows = []
        for c, name in enumerate(CLASSES):
            lift = watermark if name == "star" else 0.0
            rows.append({"score_id": "s", "class_index": c, "class_name": name,
                         "attribute": "a watermark", "kind": "overlay", "method": "object_free",
                         "lift": lift, "low": lift - 0.4, "high": lift + 0.4, "images": 16,
                         "finding": lift >= 1, "note": ""})  # fmt: skip
        writer.write("shortcuts", rows, run_id)
    writer.finish_run(run_id, "finished")
    return run_id


def test_a_scan_with_gate_gates_each_checkpoint_against_the_one_before(
    gate_spec, tiny_zoo, tmp_path
):
    watch = tmp_path / "checkpoints"
    watch.mkdir()
    source = tiny_zoo / "classifier"
    steps = [_checkpoint(source, watch / f"step-{i}", age_hours=4 - i, scale=1 + i / 4)
             for i in range(3)]  # fmt: skip
    a, b, c = (_finished_run(gate_spec, s, w) for s, w in zip(steps, (0.0, 2.0, 2.1), strict=True))
    catalog = Path(gate_spec.output.catalog)

    # 1. Nothing to audit (all finished); the diffs and the gates of a -> b and b -> c
    lines = []
    result = scan(watch, gate_spec, gate=True, progress=lines.append)
    assert result.audited == [] and len(result.diffs) == 2
    assert result.gates == [gate_path(catalog, a, b), gate_path(catalog, b, c)]
    assert result.gate_failures == [f"{a} -> {b}: shortcut star <- a watermark gained"]
    assert any(line.startswith(f"gate  {a} -> {b}: FAILED") for line in lines)
    assert any(line.startswith(f"gate  {b} -> {c}: passed") for line in lines)
    document = json.loads(gate_path(catalog, a, b).read_text())
    assert document["verdict"] == "fail" and document["thresholds"]["from"].endswith("(gate:)")
    junit = ET.parse(gate_path(catalog, a, b, ".xml")).getroot()
    assert junit.find("testsuite").get("failures") == "1"

    # 2. A gate is written once: the next scan gates nothing and does not fail again
    spec_file = tmp_path / "scan.yaml"
    spec_file.write_text(yaml.safe_dump(gate_spec.to_dict()))
    assert main_scan(str(watch), spec_file, gate=True)[-1].endswith("0 gate(s), 0 failed")
    cli = CliRunner().invoke(
        app, ["scan", "--watch", str(watch), "--spec", str(spec_file), "--gate"]
    )
    assert cli.exit_code == 0, cli.output

    # 3. ... unless its file is gone (a crash between the diff and the gate): then that scan
    #    writes it and exits 1, as cron and CI see it
    gate_path(catalog, a, b).unlink()
    cli = CliRunner().invoke(
        app, ["scan", "--watch", str(watch), "--spec", str(spec_file), "--gate"]
    )
    assert cli.exit_code == 1
    assert "gate failed: 1 gate(s) failed" in cli.stderr and gate_path(catalog, a, b).exists()

    # 4. Without --gate nothing is gated, whatever is missing
    gate_path(catalog, a, b).unlink()
    assert scan(watch, gate_spec).gates == [] and not gate_path(catalog, a, b).exists()


def test_a_pair_the_gate_cannot_compare_fails_the_scan_and_is_tried_again(
    gate_spec, tiny_zoo, tmp_path
):
    watch = tmp_path / "checkpoints"
    watch.mkdir()
    source = tiny_zoo / "classifier"
    old = _checkpoint(source, watch / "old", age_hours=2, scale=1.0)
    new = _checkpoint(source, watch / "new", age_hours=1, scale=1.5)
    a, b = _finished_run(gate_spec, old, 0.0), _finished_run(gate_spec, new, None)
    result = scan(watch, gate_spec, gate=True)
    assert result.gates == [] and len(result.gate_failures) == 1
    assert (
        f"{a} -> {b}: cannot gate: run {b} has no shortcut test results"
        in (result.gate_failures[0])
    )
    assert not gate_path(gate_spec.output.catalog, a, b).exists()
    spec_file = tmp_path / "scan.yaml"
    spec_file.write_text(yaml.safe_dump(gate_spec.to_dict()))
    with pytest.raises(GatesFailed, match="1 gate\\(s\\) failed.*cannot gate"):
        main_scan(str(watch), spec_file, gate=True)  # still failing: tried again


def test_changing_a_gate_threshold_re_audits_nothing(gate_spec, tiny_zoo, tmp_path):
    watch = tmp_path / "checkpoints"
    watch.mkdir()
    step = _checkpoint(tiny_zoo / "classifier", watch / "step-1", age_hours=1, scale=1.0)
    run_id = _finished_run(gate_spec, step, 0.0)
    stricter = with_overrides(gate_spec, **{"gate.lift_margin": 0.0, "gate.units": False})
    assert _spec_for(stricter, step).run_id_for(classifier_sha256(str(step))) == run_id
    result = scan(watch, stricter, dry_run=True)
    assert result.planned == []
    assert result.skipped == [(step, f"already audited: run {run_id}")]
    changed = with_overrides(gate_spec, **{"engine.iterations": 3})  # an audit setting does
    assert [p for p, _ in scan(watch, changed, dry_run=True).planned] == [step]
