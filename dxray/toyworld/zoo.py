"""The toy zoo: every model of the toy world, trained, gated and described in one folder.

    <zoo>/generator/         SD-family generator (diffusers layout)   train_generator
    <zoo>/classifier/        the audited, biased classifier            train_classifier
    <zoo>/classifier-fixed/  its release with a correlation removed
    <zoo>/oracle/            independent judge (object, context, cue)  never used by the engine
    <zoo>/segmenter/         CLIPSeg trained on the world              train_segmenter
    <zoo>/truth/, truth-fixed/  ground truth Parquet                   truth.compute_truth
    <zoo>/gates.json         `check_zoo` results

`dxray zoo train` builds it, `dxray zoo check` prints the gate table, `dxray zoo truth` writes
the ground truth. The committed default zoo is in dxray/toyworld/zoo/default.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dxray.toyworld.data import class_names, colour_names, context_names, sample_specs
from dxray.toyworld.scenes import SceneSpec, caption, render_batch
from dxray.toyworld.world import World

DEFAULT_ZOO = Path(__file__).parent / "zoo" / "default"
GATES_FILE = "gates.json"


@dataclass(frozen=True)
class GateRow:
    group: str  # generator | segmenter | classifier
    name: str
    value: float
    threshold: float
    op: str
    passed: bool


def _rows(group: str, gates) -> list[GateRow]:
    return [
        GateRow(group, g.name, float(g.value), float(g.threshold), getattr(g, "op", ">="), g.passed)
        for g in gates
    ]


def _check(group: str, name: str, value: float, op: str, threshold: float) -> GateRow:
    """op ">=" or "<"; "info" is a measurement reported beside the gates, not a gate."""
    passed = {"info": True, ">=": value >= threshold, "<": value < threshold}[op]
    return GateRow(group, name, float(value), threshold, op, bool(passed))


@torch.no_grad()
def generator_gates(
    world: World, generator, oracle, *, steps: int = 2, guidance_scale: float = 1.0, seeds: int = 1
) -> list[GateRow]:
    """The generator, judged by the oracle at the engine's sampler setting.

    - object / context recognised in samples of every "a <colour> <shape> on <context>";
    - context-only captions ("water") give no object;
    - the ceiling: the oracle on VAE reconstructions of real scenes (shapes lost in the
      latents cannot come back in samples).
    """
    from dxray.toyworld.nets import oracle_predict
    from dxray.toyworld.train_generator import sample_captions

    classes, contexts = class_names(world), context_names(world)
    specs = [
        SceneSpec(shape=s, colour=c, size=0.6, position=(0.5, 0.5), rotation=0.0, context=x,
                  cue=None, seed=0)
        for s in classes for c in colour_names(world) for x in contexts
    ]  # fmt: skip
    captions = [caption(s) for s in specs] * seeds
    seed_list = list(range(len(captions)))
    images = sample_captions(
        generator, captions, seed_list, steps=steps, guidance_scale=guidance_scale
    )
    pred = oracle_predict(oracle, images)
    want_object = torch.tensor([classes.index(s.shape) for s in specs] * seeds)
    want_context = torch.tensor([contexts.index(s.context) for s in specs] * seeds)
    rows = [
        _check("generator", "object_recognised", (pred["object"] == want_object).float().mean(),
               ">=", 0.8),
        _check("generator", "context_recognised",
               (pred["context"] == want_context).float().mean(), ">=", 0.95),
    ]  # fmt: skip
    empty = contexts * max(4, seeds)
    images = sample_captions(
        generator, empty, list(range(len(empty))), steps=steps, guidance_scale=guidance_scale
    )
    none = (oracle_predict(oracle, images)["object"] == -1).float().mean()
    rows.append(_check("generator", "context_only_no_object", none, ">=", 0.9))
    # Ceiling: real scenes through the VAE and back.
    real = sample_specs(world, 256, seed=123, mode="unbiased")
    scenes, _, _ = render_batch(world, real)
    vae = generator.vae
    latents = vae.encode(scenes.to(generator.device, generator.dtype) * 2 - 1).latent_dist.mean
    recon = (vae.decode(latents).sample / 2 + 0.5).clamp(0, 1).float().cpu()
    got = oracle_predict(oracle, recon)
    truth_object = torch.tensor([classes.index(s.shape) for s in real])
    ceiling = (got["object"] == truth_object).float().mean()
    rows.append(_check("generator", "vae_reconstruction_object (ceiling)", ceiling, "info", 0.0))
    return rows


def check_zoo(zoo: str | Path, world: World, *, steps: int = 2, guidance_scale: float = 1.0):
    """Every gate of the zoo at `zoo`; written to gates.json and returned."""
    from dxray.models.classifier import load_classifier
    from dxray.models.generator import load_generator
    from dxray.models.segmenter import load_segmenter
    from dxray.toyworld.train_segmenter import segmenter_gates
    from dxray.toyworld.truth import classifier_gates

    zoo = Path(zoo)
    started = time.perf_counter()
    oracle = load_classifier(zoo / "oracle")
    rows: list[GateRow] = []
    rows += _rows(
        "classifier",
        classifier_gates(
            world,
            load_classifier(zoo / "classifier"),
            fixed=load_classifier(zoo / "classifier-fixed"),
            oracle=oracle,
        ),
    )
    if (zoo / "segmenter").is_dir():
        rows += _rows("segmenter", segmenter_gates(load_segmenter(zoo / "segmenter"), world))
    if (zoo / "generator").is_dir():
        generator = load_generator(zoo / "generator")
        rows += generator_gates(
            world, generator, oracle, steps=steps, guidance_scale=guidance_scale
        )
    record = {
        "world": world.name,
        "sampler": {"steps": steps, "guidance_scale": guidance_scale},
        "seconds": round(time.perf_counter() - started, 1),
        "gates": [row.__dict__ for row in rows],
    }
    (zoo / GATES_FILE).write_text(json.dumps(record, indent=2))
    return rows


def format_gates(rows: list[GateRow]) -> str:
    lines = [f"{'group':<11} {'gate':<40} {'value':>8}  {'target':>10}  result"]
    for r in rows:
        info = r.op == "info"
        target = "" if info else f"{r.op} {r.threshold:g}"
        result = "info" if info else "pass" if r.passed else "FAIL"
        lines.append(f"{r.group:<11} {r.name:<40} {r.value:8.3f}  {target:>10}  {result}")
    gates = [r for r in rows if r.op != "info"]
    failed = sum(not r.passed for r in gates)
    lines.append(f"gates: {len(gates) - failed} passed, {failed} failed")
    return "\n".join(lines)


def build_tiny_zoo(root: str | Path, world: World | None = None) -> Path:
    """A deliberately tiny, untrained zoo (generator, classifier, segmenter) in the real
    formats, built in seconds: for tests and smoke runs of the platform, not for verdicts."""
    from dxray.models.build import GeneratorArch, build_generator
    from dxray.models.classifier import Preprocessing, save_classifier
    from dxray.toyworld.nets import toy_cnn
    from dxray.toyworld.train_segmenter import ToySegmenterConfig, build_toy_segmenter
    from dxray.toyworld.world import default_world

    root, world = Path(root), world or default_world()
    build_generator(GeneratorArch(latent_size=8), seed=0).save_pretrained(root / "generator")
    torch.manual_seed(0)
    kwargs = dict(num_classes=len(world.classes), width=4, hidden=8, depth=1, grid=2)
    save_classifier(
        root / "classifier",
        toy_cnn(**kwargs),
        factory="dxray.toyworld.nets:toy_cnn",
        factory_kwargs=kwargs,
        preprocessing=Preprocessing((16, 16), (0.5,) * 3, (0.5,) * 3),
        class_names=class_names(world),
    )
    config = ToySegmenterConfig(
        image_size=16, patch_size=4, vision_hidden=16, vision_layers=2, vision_heads=2,
        extract_layers=(1,), text_hidden=16, text_heads=2, projection_dim=16, reduce_dim=8,
        decoder_heads=2,
    )  # fmt: skip
    build_toy_segmenter(world, config, seed=0).save_pretrained(root / "segmenter")
    return root
