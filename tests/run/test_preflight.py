"""Bad inputs fail before any model loads, Ray starts or anything is written: one line that
names what is wrong and what to do, exit 2; a traceback only behind `dxray --debug`."""

import sys

import pytest
import yaml
from typer.testing import CliRunner

from dxray.cli import common
from dxray.cli import main as cli
from dxray.run.preflight import PreflightError, check_before_models, model_path
from dxray.spec.model import AuditSpec, SpecError
from dxray.spec.parse import load_spec


def audit(tmp_path, spec: dict, *args):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return CliRunner().invoke(cli.app, ["audit", str(path), *args])


def one_line_refusal(result, *words):
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_a_catalog_that_is_a_file_is_refused_before_any_model_loads(tiny_spec, tmp_path):
    catalog = tmp_path / "catalog"
    catalog.write_text("not a folder")
    result = audit(tmp_path, {**tiny_spec, "output": {"catalog": str(catalog)}})
    one_line_refusal(result, str(catalog), "is a file", "--catalog")


def test_an_unwritable_catalog_is_refused(tiny_spec, tmp_path, monkeypatch):
    # As a read-only mount or a folder of another user answers (chmod does not bind root).
    from pathlib import Path

    def refuse(self, data):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    spec = AuditSpec.from_dict({**tiny_spec, "output": {"catalog": str(tmp_path / "cat")}})
    with pytest.raises(PreflightError, match=r"cat is not writable \(Permission denied in "):
        check_before_models(spec)


@pytest.mark.parametrize("model", ["generator", "segmenter", "classifier"])
def test_a_missing_model_folder_is_one_line_before_anything_runs(tiny_spec, tmp_path, model):
    spec = {**tiny_spec, model: str(tmp_path / "nowhere" / model)}
    result = audit(tmp_path, spec)
    one_line_refusal(result, model, "does not exist", str(tmp_path / "nowhere" / model))
    assert not any((tmp_path / "catalog").glob("*/run_id=*"))  # nothing written


def test_a_truncated_safetensors_is_named(tiny_zoo, tiny_spec, tmp_path):
    import shutil

    copy = tmp_path / "classifier"
    shutil.copytree(tiny_zoo / "classifier", copy)
    weights = next(copy.rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-100])
    result = audit(tmp_path, {**tiny_spec, "classifier": str(copy)})
    one_line_refusal(result, str(weights), "truncated or corrupt", "again")


def test_hub_ids_and_named_constructors_are_left_to_the_loaders(tmp_path):
    assert model_path("CIDAS/clipseg-rd64-refined") is None
    assert model_path("torchvision:resnet50") is None
    assert model_path("hf:microsoft/resnet-50") is None
    assert model_path({"source": "timm:resnet18"}) is None
    assert model_path("./gone") is not None and model_path("weights.safetensors") is not None


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [("name", "n" * 111, 110), ("output.run_id", "r" * 129, 128)],
)
def test_ids_too_long_for_a_folder_name_are_refused_when_the_spec_loads(
    tiny_spec, tmp_path, field, value, limit
):
    spec = dict(tiny_spec)
    if field == "name":
        spec["name"] = value
    else:
        spec["output"] = {**spec["output"], "run_id": value}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match=f"at most {limit}"):
        load_spec(path)
    result = CliRunner().invoke(cli.app, ["audit", str(path)])
    one_line_refusal(result, f"at most {limit}")
    too_long = CliRunner().invoke(cli.app, ["audit", str(path), "--run-id", "x" * 129])
    assert too_long.exit_code == 2


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(
    tmp_path, monkeypatch, capsys
):
    not_a_catalog = tmp_path / "file"
    not_a_catalog.write_text("x")
    argv = ["dxray", "report", str(not_a_catalog), "--out", str(tmp_path / "r.html")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert err.startswith("error: ") and "--debug" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 2

    monkeypatch.setattr(sys, "argv", ["dxray", "--debug", *argv[1:]])
    with pytest.raises(Exception) as raised:  # the original exception, for its traceback
        cli.main()
    assert not isinstance(raised.value, SystemExit)
    monkeypatch.setattr(common, "_debug", False)


def test_on_a_cluster_only_the_classifier_is_checked_on_the_driver(tiny_spec, tmp_path):
    # The workers load the generator and segmenter, maybe from a volume this driver lacks.
    gone = str(tmp_path / "only-on-the-gpu-nodes")
    spec = {**tiny_spec, "generator": gone, "segmenter": gone}
    check_before_models(AuditSpec.from_dict({**spec, "ray": {"address": "ray://head:10001"}}))
    with pytest.raises(PreflightError, match="does not exist"):
        check_before_models(AuditSpec.from_dict(spec))
    with pytest.raises(PreflightError, match="classifier"):
        check_before_models(
            AuditSpec.from_dict({**spec, "classifier": gone, "ray": {"address": "auto"}})
        )


def test_a_unit_typo_is_refused_before_the_generator_loads_for_ranking(tiny_spec, monkeypatch):
    """With top_k ranking, listed units were checked only after the generator had loaded for
    the ranking (36 s at the toy zoo's size): now first."""
    import dxray.models.generator as generator
    from dxray.run.pipeline import plan

    def no_generator(*args, **kwargs):
        raise AssertionError("the generator was loaded before the units were checked")

    monkeypatch.setattr(generator, "load_generator", no_generator)
    units = {"top_k": 2, "layer": "penultimate", "units": ["penultimat:3"]}
    spec = AuditSpec.from_dict({**tiny_spec, "targets": {**tiny_spec["targets"], "units": units}})
    with pytest.raises(SpecError, match="1 unit.s. are not in the classifier: penultimat:3"):
        plan(spec)
    bad_layer = {"top_k": 2, "layer": "no.such.layer"}
    spec = AuditSpec.from_dict(
        {**tiny_spec, "targets": {**tiny_spec["targets"], "units": bad_layer}}
    )
    with pytest.raises(SpecError, match="no.such.layer:0"):
        plan(spec)
