"""Audit spec: the presets load, every kind of mistake names its file and field, and the unit CSV
is read when the spec loads (the rows a spec expands into: tests/run/test_targets.py)."""

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import get_args, get_type_hints

import pytest
import yaml

from dxray.run.targets import expand_targets
from dxray.spec.model import (
    CLASSIFIER_SOURCE_KEYS,
    LCM_MAX_STEPS,
    AuditSpec,
    EngineSpec,
    SamplerSpec,
    SpecError,
)
from dxray.spec.parse import load_spec, with_overrides
from dxray.spec.unit_csv import read_units

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"
NAMES = ["cat", "dog", "boat", "dot"]
MINIMAL = {"name": "t", "generator": "gen", "classifier": "clf", "segmenter": "seg"}


def _write(tmp_path: Path, data: dict, name: str = "audit.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _spec(tmp_path: Path, **sections) -> AuditSpec:
    return load_spec(_write(tmp_path, {**MINIMAL, **sections}))


def _error(tmp_path: Path, data: dict) -> str:
    path = _write(tmp_path, data)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message  # every error names the file
    return message


def _rank(class_index: int, k: int) -> list[tuple[str, int]]:
    """A fake ranking: class c's best units are channels 10c, 10c+1, ... of "penultimate"."""
    return [("penultimate", 10 * class_index + r) for r in range(k)]


# --- presets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["toy", "salient-imagenet", "fairface"])
def test_presets_load_and_round_trip(name):
    spec = load_spec(PIPELINES / f"{name}.yaml")
    assert spec.name == name
    assert spec.output.catalog == f"catalogs/{name}"
    again = AuditSpec.from_dict(yaml.safe_load(spec.to_yaml()))
    assert again == spec
    assert again.spec_hash() == spec.spec_hash()


def test_toy_preset_becomes_the_expected_engine_config():
    from dxray.explain.optimize import ExplainConfig
    from dxray.explain.sampler import SamplerConfig

    spec = load_spec(PIPELINES / "toy.yaml")
    assert spec.engine.to_explain_config() == ExplainConfig(
        iterations=60,
        template="a {}",
        init_words=("a",),
        sampler=SamplerConfig(steps=4, grad_mode="last"),
        decoder="tiny",
    )
    assert spec.generator.source == "dxray/toyworld/zoo/default/generator"
    assert spec.targets.classes == "all" and spec.targets.objective == "ce"
    assert spec.targets.units.top_k == 2 and spec.targets.seeds == (0, 1)
    assert "a watermark" in spec.judge.probes
    ray = spec.ray
    assert (ray.address, ray.workers, ray.num_cpus_per_worker, ray.num_gpus_per_worker) == (
        None, 2, 2, 0
    )  # fmt: skip


def test_gpu_presets_say_what_the_design_asks():
    salient = load_spec(PIPELINES / "salient-imagenet.yaml")
    assert salient.generator.source == "SimianLuo/LCM_Dreamshaper_v7"
    assert salient.generator.tiny_decoder == "madebyollin/taesd"
    assert salient.generator.dtype == "bfloat16"
    # the directory the header's `dxray convert` command writes
    assert salient.classifier.source == "models/robust_resnet50"
    header = (PIPELINES / "salient-imagenet.yaml").read_text()
    assert "dxray convert robustness imagenet_l2_3_0.pt models/robust_resnet50" in header
    assert salient.segmenter.source == "CIDAS/clipseg-rd64-refined"
    assert salient.targets.units.csv.endswith(
        "data/salient_imagenet/discover_spurious_features.csv"
    )
    assert salient.engine.sampler.steps == 4 and salient.engine.batch_size == 16
    assert (salient.ray.workers, salient.ray.num_gpus_per_worker) == (8, 1)
    fairface = load_spec(PIPELINES / "fairface.yaml")
    assert fairface.classifier.source == "models/fairface_age"
    assert "models/fairface_age --head age" in (PIPELINES / "fairface.yaml").read_text()
    assert {"a dark-skinned face", "a light-skinned face", "glasses"} <= set(fairface.judge.probes)
    assert fairface.targets.classes == "all"


def test_salient_csv_path_points_into_the_repository_data_folder():
    spec = load_spec(PIPELINES / "salient-imagenet.yaml")
    resolved = (spec.source_path.parent / spec.targets.units.csv).resolve()
    assert resolved == ROOT / "data" / "salient_imagenet" / "discover_spurious_features.csv"


# --- the spec mirrors the engine ----------------------------------------------------------------


def test_engine_defaults_are_the_engines():
    from dxray.explain.optimize import ExplainConfig

    assert EngineSpec().to_explain_config() == ExplainConfig()


def test_choices_and_fields_match_the_engine_and_loaders():
    from dxray.explain import optimize, sampler
    from dxray.models import classifier_io

    assert [f.name for f in dataclasses.fields(SamplerSpec)] == [
        f.name for f in dataclasses.fields(sampler.SamplerConfig)
    ]
    for ours, theirs in [
        (SamplerSpec, sampler.SamplerConfig),
        (EngineSpec, optimize.ExplainConfig),
    ]:
        our_hints, their_hints = get_type_hints(ours), get_type_hints(theirs)
        for name in ("kind", "grad_mode", "init", "decoder"):
            if name in our_hints:
                assert get_args(our_hints[name]) == get_args(their_hints[name]), name
    assert LCM_MAX_STEPS == sampler.LCM_ORIGINAL_STEPS
    assert CLASSIFIER_SOURCE_KEYS == classifier_io.SPEC_KEYS


def test_unit_syntax_agrees_with_the_classifier():
    from dxray.models.classifier import parse_unit
    from dxray.spec.parse import split_unit

    for unit in ["layer4.2:17", "features.block3:0", "a:b:3"]:
        assert split_unit(unit) == parse_unit(unit)
    for bad in ["layer4", ":3", "layer4:-1", "layer4:x"]:
        with pytest.raises(ValueError):
            parse_unit(bad)
        with pytest.raises(ValueError):
            split_unit(bad)


def test_loading_a_spec_does_not_import_torch():
    code = (
        "import sys; from dxray.spec.parse import load_spec; "
        f"load_spec({str(PIPELINES / 'toy.yaml')!r}); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- errors name the file and the field ----------------------------------------------------------


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"engine": {"iteratons": 10}}, ["engine.iteratons", "unknown key", "'iterations'"]),
        ({"targets": {"seeds": "x"}}, ["targets.seeds", "expected a list", "'x'"]),
        ({"engine": {"sampler": {"steps": 0}}}, ["engine.sampler.steps", ">= 1", "got 0"]),
        ({"engine": {"lr": -0.1}}, ["engine.lr", "> 0", "-0.1"]),
        ({"judge": {"core": 0.3, "spurious": 0.3}}, ["judge.spurious", "below judge.core"]),
        ({"engine": {"sampler": {"grad_mode": "fulll"}}}, ["engine.sampler.grad_mode", "'full'"]),
        ({"engine": {"lr": "1e-3"}}, ["engine.lr", "write it as 0.001"]),
        ({"engine": {"iterations": 2.5}}, ["engine.iterations", "expected an integer"]),
        ({"engine": {"hard_prompt": "yes"}}, ["engine.hard_prompt", "true or false"]),
        ({"engine": {"template": "a photo"}}, ["engine.template", "'{}'"]),
        ({"engine": {"sampler": {"kind": "lcm", "steps": 51}}}, ["engine.sampler.steps", "50"]),
        ({"targets": {"classes": "al"}}, ["targets.classes", "'all'"]),
        ({"targets": {"classes": [1, True]}}, ["targets.classes[1]", "class index"]),
        ({"targets": {"seeds": [0, 0]}}, ["targets.seeds[1]", "twice"]),
        ({"targets": {"units": {"units": ["layer4"]}}}, ["targets.units.units[0]", "layer.path"]),
        ({"targets": {"units": {"csv": "u.csv"}}}, ["targets.units.layer", "required"]),
        ({"targets": {"classes": []}}, ["targets.classes", "nothing to audit"]),
        ({"judge": {"probes": ["water", "water"]}}, ["judge.probes[1]", "twice"]),
        ({"judge": {"core": 1.5}}, ["judge.core", "<= 1"]),
        ({"judge": {"units": "interventon"}}, ["judge.units", "'intervention'"]),
        ({"judge": {"keep": 0}}, ["judge.keep", "> 0"]),
        ({"judge": {"remove": "every"}}, ["judge.remove", "one of all, own"]),
        ({"ray": {"workers": 0}}, ["ray.workers", ">= 1"]),
        ({"ray": {"adress": "auto"}}, ["ray.adress", "'address'"]),
        ({"output": {"run_id": "a/b"}}, ["output.run_id", "not a valid id"]),
        ({"name": "my audit"}, ["name:", "not a valid id"]),
        ({"enigne": {}}, ["enigne", "'engine'"]),
        ({"classifier": {"source": "x", "tiny_decoder": "t"}}, ["classifier.tiny_decoder"]),
        ({"classifier": {"source": "w.safetensors", "factory": "m:f"}}, ["classifier.factory"]),
        (
            {"classifier": {"source": {"source": "w.safetensors", "factroy": "m:f"}}},
            ["classifier.source.factroy", "'factory'"],
        ),
        ({"generator": {"source": "g", "dtype": "fp16"}}, ["generator.dtype", "float16"]),
        ({"segmenter": 3}, ["segmenter", "directory or hub id"]),
        ({"shortcuts": {"template": "a photo"}}, ["shortcuts.template", "exactly once"]),
        ({"shortcuts": {"objects": "some"}}, ["shortcuts.objects", "'all' or a number"]),
        ({"shortcuts": {"objects": 0}}, ["shortcuts.objects", ">= 1"]),
        ({"shortcuts": {"with_object": "yes"}}, ["shortcuts.with_object", "findings"]),
        ({"shortcuts": {"attributes": "water"}}, ["shortcuts.attributes", "a list"]),
        ({"shortcuts": {"seeds": 0}}, ["shortcuts.seeds", ">= 1"]),
        ({"shortcuts": {"unit_seeds": 0}}, ["shortcuts.unit_seeds", ">= 1"]),
        ({"shortcuts": {"seeds": 8, "unit_seeds": 9}}, ["shortcuts.unit_seeds", "at most 8"]),
        ({"shortcuts": {"units": "no"}}, ["shortcuts.units", "true or false"]),
        ({"shortcuts": {"confidence": 1.0}}, ["shortcuts.confidence", "<= 0.999"]),
        ({"gate": {"lift_margin": -0.5}}, ["gate.lift_margin", ">= 0"]),
        ({"gate": {"lift_margin": ".5"}}, ["gate.lift_margin", "a number"]),
        ({"gate": {"units": "yes"}}, ["gate.units", "true or false"]),
        ({"gate": {"margin": 1}}, ["gate.margin", "'lift_margin'"]),
    ],
)
def test_field_errors_name_the_file_and_the_field(tmp_path, changes, expected):
    message = _error(tmp_path, {**MINIMAL, **changes})
    for text in expected:
        assert text in message


def test_an_empty_section_means_its_defaults(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text("name: t\ngenerator: g\nclassifier: c\nsegmenter: s\nengine:\nray:\n")
    spec = load_spec(path)
    assert spec.engine == EngineSpec() and spec.ray.workers == 1


def test_a_missing_required_field_is_named(tmp_path):
    data = {key: value for key, value in MINIMAL.items() if key != "classifier"}
    message = _error(tmp_path, data)
    assert "classifier: missing (required)" in message


def test_unreadable_and_malformed_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match="nope.yaml: cannot read"):
        load_spec(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: a\nname: b\n")
    with pytest.raises(SpecError, match="duplicate key 'name'"):
        load_spec(bad)
    bad.write_text("- a list\n")
    with pytest.raises(SpecError, match="bad.yaml: expected a mapping"):
        load_spec(bad)


def test_a_model_is_a_string_or_a_mapping_and_both_mean_the_same(tmp_path):
    short = AuditSpec.from_dict(MINIMAL)
    full = AuditSpec.from_dict({**MINIMAL, "generator": {"source": "gen", "dtype": "float32"}})
    assert short == full and short.spec_hash() == full.spec_hash()
    dict_source = {"source": "w.safetensors", "factory": "pkg.mod:build", "mean": [0.5] * 3}
    spec = AuditSpec.from_dict({**MINIMAL, "classifier": {"source": dict_source}})
    assert spec.classifier.source == dict_source
    assert spec.classifier.source is not dict_source  # a copy: editing the input changes nothing


# --- the unit CSV, read when the spec loads ------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("class,feature_index\n0,1\n", ["line 1", "class_index", "did you mean 'class'"]),
        ("class_index,feature_index\n0,x\n", ["line 2", "column feature_index", "'x'"]),
        ("class_index,feature_index,label\n0,1,maybe\n", ["line 2", "column label"]),
        ("", ["needs a header line"]),
    ],
)
def test_csv_errors_name_the_csv_line_and_column_when_the_spec_loads(tmp_path, text, expected):
    (tmp_path / "units.csv").write_text(text)
    with pytest.raises(SpecError) as info:  # before any model could load
        _spec(tmp_path, targets={"units": {"layer": "avgpool", "csv": "units.csv"}})
    message = str(info.value)
    assert "targets.units.csv" in message and "units.csv'" in message
    for part in expected:
        assert part in message


def test_a_missing_csv_is_an_error_before_the_audit_starts(tmp_path):
    # A spec written for a cluster loads where its CSV is not ...
    spec = _spec(tmp_path, targets={"units": {"layer": "avgpool", "csv": "gone.csv"}})
    # ... and the audit refuses it before loading a model
    with pytest.raises(SpecError, match="gone.csv': cannot read the unit CSV"):
        read_units(spec)
    with pytest.raises(SpecError, match="cannot read the unit CSV"):
        expand_targets(spec, NAMES, "run-1")


def test_thresholds_come_from_the_judge(tmp_path):
    from dxray.judge.verdict import Thresholds

    spec = _spec(tmp_path, judge={"core": 0.6, "spurious": 0.1})
    assert spec.judge.thresholds() == Thresholds(core=0.6, spurious=0.1)


# --- overrides, hashing, YAML --------------------------------------------------------------------


def test_overrides_apply_and_are_validated(tmp_path):
    spec = load_spec(PIPELINES / "toy.yaml")
    changed = with_overrides(spec, **{"engine.iterations": 10, "ray.workers": 2})
    assert (changed.engine.iterations, changed.ray.workers) == (10, 2)
    assert spec.engine.iterations == 60  # the original is untouched
    assert changed.source_path == spec.source_path
    with pytest.raises(SpecError) as info:
        with_overrides(spec, **{"engine.sampler.steps": 0})
    assert "toy.yaml (with overrides): engine.sampler.steps: must be >= 1" in str(info.value)
    with pytest.raises(SpecError, match=r"engine.iteratons: .*'iterations'"):
        with_overrides(spec, **{"engine.iteratons": 10})
    with pytest.raises(SpecError, match="engine.iterations: holds a value, not a section"):
        with_overrides(spec, **{"engine.iterations.x": 1})


def test_spec_hash_ignores_key_order_and_where_it_runs(tmp_path):
    data = {**MINIMAL, "engine": {"iterations": 5, "lr": 0.2}, "targets": {"seeds": [0, 1]}}
    reordered = dict(reversed(list(data.items())))
    reordered["engine"] = {"lr": 0.2, "iterations": 5}
    spec = AuditSpec.from_dict(data)
    assert AuditSpec.from_dict(reordered).spec_hash() == spec.spec_hash()
    assert len(spec.spec_hash()) == 64
    assert with_overrides(spec, **{"engine.iterations": 6}).spec_hash() != spec.spec_hash()
    assert with_overrides(spec, **{"targets.seeds": [0, 2]}).spec_hash() != spec.spec_hash()
    for where in ({"ray.workers": 8}, {"engine.batch_size": 2}, {"output.catalog": "x"}):
        assert with_overrides(spec, **where).spec_hash() == spec.spec_hash()
    # The shortcut test joins a finished run instead of redoing its targets
    shortcuts = {"shortcuts.enabled": True, "shortcuts.seeds": 4}
    assert with_overrides(spec, **shortcuts).spec_hash() == spec.spec_hash()
    # The release gate judges runs, it does not make them: a threshold re-audits nothing
    gate = with_overrides(spec, **{"gate.lift_margin": 2.0, "gate.units": False})
    assert gate.gate.lift_margin == 2.0 and gate != spec
    assert gate.spec_hash() == spec.spec_hash()
    assert gate.run_id_for("abcdef01") == spec.run_id_for("abcdef01")


def test_the_unit_test_can_be_turned_off_and_sized():
    """`shortcuts.units: false` was read as true until 2026-12-05: the parser never read it."""
    spec = AuditSpec.from_dict({**MINIMAL, "shortcuts": {"units": False, "unit_seeds": 8}})
    assert spec.shortcuts.units is False and spec.shortcuts.unit_seeds == 8
    assert AuditSpec.from_dict(spec.to_dict()) == spec
    default = AuditSpec.from_dict(MINIMAL).shortcuts
    assert default.units is True and default.unit_seeds is None


def test_the_shortcut_vocabulary_defaults_to_the_probes_and_keeps_entries_as_written():
    spec = AuditSpec.from_dict({**MINIMAL, "judge": {"probes": ["water", "a watermark"]}})
    assert spec.shortcuts.entries(spec.judge) == ("water", "a watermark")
    # Bad entries are the vocabulary's to report and skip (dxray.shortcuts.vocabulary), not
    # a reason to refuse the whole audit
    entries = ["sand", "", 3, {"name": "a mark", "overlay": "with a mark"}]
    spec = AuditSpec.from_dict({**MINIMAL, "shortcuts": {"attributes": entries, "objects": 5}})
    assert list(spec.shortcuts.entries(spec.judge)) == entries
    assert spec.shortcuts.objects == 5
    assert AuditSpec.from_dict(spec.to_dict()) == spec


def test_run_id_derivation(tmp_path):
    spec = AuditSpec.from_dict(MINIMAL)
    run_id = spec.run_id_for("ABCDEF0123456789")
    assert run_id == f"t-abcdef01-{spec.spec_hash()[:8]}"
    assert spec.run_id_for("abcdef0123456789") == run_id
    assert with_overrides(spec, **{"engine.iterations": 7}).run_id_for("abcdef01") != run_id
    assert with_overrides(spec, **{"output.run_id": "mine"}).run_id_for("abcdef01") == "mine"
    with pytest.raises(ValueError, match="hex digest"):
        spec.run_id_for("not-a-hash")


def test_to_yaml_writes_every_field():
    spec = AuditSpec.from_dict(MINIMAL)
    data = yaml.safe_load(spec.to_yaml())
    assert data["engine"]["sampler"]["steps"] == 4
    assert data["output"]["catalog"] == "catalogs/t"
    assert data["targets"]["seeds"] == [0]
    assert AuditSpec.from_dict(data) == spec


def test_the_unit_csv_is_parsed_once_per_version(tmp_path, monkeypatch):
    from dxray.spec import unit_csv

    calls = []
    real = unit_csv.read_unit_csv
    monkeypatch.setattr(unit_csv, "read_unit_csv", lambda p: calls.append(p) or real(p))
    unit_csv._read_version.cache_clear()
    (tmp_path / "units.csv").write_text("class_index,feature_index\n0,1\n")
    spec = _spec(tmp_path, targets={"units": {"layer": "avgpool", "csv": "units.csv"}})
    first = read_units(spec)
    assert read_units(spec) is first and len(calls) == 1  # loading and planning share one read
    import os

    (tmp_path / "units.csv").write_text("class_index,feature_index\n0,1\n1,2\n")
    os.utime(tmp_path / "units.csv", ns=(1, 10**18))  # a new version, whatever the clock
    assert len(read_units(spec).units) == 2 and len(calls) == 2


def test_a_yaml_alias_bomb_binary_or_huge_spec_is_one_line(tmp_path):
    """Bounded before any value is read: an alias bomb (was: a hang in to_dict), a binary
    file and a NUL byte (were: raw Python errors) and a file over 1 MiB."""
    import time

    from dxray.yamlio import MAX_YAML_BYTES

    bomb = tmp_path / "bomb.yaml"
    lines = ["name: bomb", "generator: g", "classifier: c", "segmenter: s",
             "targets: {classes: all}", "shortcuts:", "  enabled: true", "  attributes:",
             "    - &a0 [water, sand]"]  # fmt: skip
    lines += [f"    - &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 25)]
    bomb.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    with pytest.raises(SpecError, match="expands to more than 100,000 values"):
        load_spec(bomb)
    assert time.perf_counter() - started < 5
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: x\n\xf0\x28\x8c\x28\n")
    with pytest.raises(SpecError, match="must be UTF-8 text"):
        load_spec(binary)
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"name: x\x00\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(nul)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * MAX_YAML_BYTES + "\nname: x\n")
    with pytest.raises(SpecError, match="too large"):
        load_spec(huge)
