"""The zoo's gate table: plumbing on tiny untrained models (quality is `dxray zoo check`'s)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from dxray.cli.main import app
from dxray.models.build import GeneratorArch, build_generator
from dxray.models.classifier import Classifier, Preprocessing
from dxray.toyworld.data import class_names
from dxray.toyworld.gates import GateRow, format_gates
from dxray.toyworld.generator_gates import generator_gates
from dxray.toyworld.nets import oracle_cnn
from dxray.toyworld.scenes import caption_words
from dxray.toyworld.world import default_world


def test_generator_gates_rows_on_tiny_models():
    world = default_world()
    arch = GeneratorArch(latent_size=16, scheduler="ddim", words=caption_words(world))
    gen = build_generator(arch, seed=0)
    torch.manual_seed(0)
    n_cls, n_ctx, n_cue = len(world.classes), len(world.contexts), len(world.cues)
    net = oracle_cnn(n_cls, n_ctx, n_cue, width=4, hidden=8, depth=1, grid=2).eval()
    from dxray.toyworld.nets import oracle_output_names

    oracle = Classifier(
        net, Preprocessing((32, 32), (0.5,) * 3, (0.5,) * 3), oracle_output_names(world)
    )
    rows = generator_gates(world, gen, oracle, steps=1)
    assert [r.name for r in rows] == [
        "object_recognised",
        "context_recognised",
        "context_only_no_object",
        "vae_reconstruction_object (ceiling)",
    ]
    assert all(0.0 <= r.value <= 1.0 for r in rows)
    # An untrained generator + oracle cannot pass the recognition gates.
    assert not rows[0].passed and rows[3].op == "info" and rows[3].passed
    assert len(class_names(world)) == n_cls


def test_format_gates_counts_failures_and_keeps_info_rows_out():
    rows = [
        GateRow("generator", "a", 0.9, 0.8, ">=", True),
        GateRow("generator", "b", 0.5, 0.8, ">=", False),
        GateRow("generator", "c", 0.7, 0.0, "info", True),
    ]
    text = format_gates(rows)
    assert "FAIL" in text.splitlines()[2] and "info" in text.splitlines()[3]
    assert text.splitlines()[-1] == "gates: 1 passed, 1 failed"


def test_segmenter_is_also_gated_on_generated_images_against_the_oracle():
    # A stub segmenter that finds every object everywhere: perfect recall, no specificity, so
    # its balanced accuracy on the generated images is exactly 0.5 whatever the oracle sees.
    world = default_world()
    arch = GeneratorArch(latent_size=16, scheduler="ddim", words=caption_words(world))
    gen = build_generator(arch, seed=0)
    torch.manual_seed(0)
    net = oracle_cnn(len(world.classes), len(world.contexts), len(world.cues), width=4,
                     hidden=8, depth=1, grid=2).eval()  # fmt: skip
    from dxray.toyworld.nets import oracle_output_names

    oracle = Classifier(
        net, Preprocessing((32, 32), (0.5,) * 3, (0.5,) * 3), oracle_output_names(world)
    )

    class EverythingEverywhere:
        device, dtype = torch.device("cpu"), torch.float32

        def probe(self, images, queries):
            return torch.ones(images.shape[0], len(queries))

    rows = generator_gates(world, gen, oracle, steps=1, segmenter=EverythingEverywhere())
    gate = next(r for r in rows if r.name == "generated_object_presence_accuracy")
    assert gate.group == "segmenter" and gate.threshold == 0.9
    assert gate.value == 0.5 and not gate.passed


def test_one_gate_check_for_every_part_of_the_zoo():
    from dxray.toyworld.gates import check

    assert check("a", 0.95, ">=", 0.95).passed and not check("a", 0.95, ">", 0.95).passed
    assert check("b", 0.1, "<", 0.5).passed and check("c", 0.0, "info", 1.0).passed
    with pytest.raises(ValueError, match="op must be one of"):
        check("d", 1.0, "=>", 0.5)


def test_zoo_train_cli_trains_and_continues_a_segmenter(tmp_path):
    # The real config for two steps: the CLI's plumbing, its progress and its record.
    runner = CliRunner()
    out = tmp_path / "zoo"
    args = ["zoo", "train", "--out", str(out), "--parts", "segmenter", "--segmenter-steps", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "segmenter step 2" in result.output and "dxray zoo check" in result.output
    record = json.loads((out / "segmenter" / "dxray_train.json").read_text())
    assert record["steps"] == 2 and record["partial"] is False and record["init"] is None
    again = tmp_path / "again"
    init = ["--segmenter-init", str(out / "segmenter"), "--seed", "1"]
    result = runner.invoke(app, [*args[:3], str(again), *args[4:], *init])
    assert result.exit_code == 0, result.output
    record = json.loads((again / "segmenter" / "dxray_train.json").read_text())
    assert record["init"]["steps"] == 2 and record["seed"] == 1


def test_zoo_train_cli_refuses_unknown_parts(tmp_path):
    result = CliRunner().invoke(app, ["zoo", "train", "--out", str(tmp_path), "--parts", "vae"])
    assert result.exit_code != 0 and "unknown part(s) ['vae']" in result.output


def test_zoo_train_cli_trains_a_tiny_generator_and_its_samples(tmp_path):
    args = ["zoo", "train", "--out", str(tmp_path), "--parts", "generator"]
    args += ["--generator-preset", "tiny", "--generator-max-steps", "2"]
    args += ["--generator-batch-size", "4", "--generator-pool-size", "16"]
    result = CliRunner().invoke(app, [*args, "--generator-sample-steps", "1"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "generator" / "dxray_train.json").read_text())
    assert record["steps"]["unet"] == 2 and record["arch"]["unet_channels"] == [16, 32]
    assert (tmp_path / ".generator-training" / "samples.png").is_file()


def test_zoo_train_cli_checks_every_config_before_training(tmp_path):
    result = CliRunner().invoke(app, ["zoo", "train", "--out", str(tmp_path), "--hide-object", "1"])
    assert result.exit_code == 2 and "hide_object must be in [0, 1)" in result.output
    assert not (tmp_path / "classifier").exists()
