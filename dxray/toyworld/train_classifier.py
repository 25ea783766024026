"""Train the toy zoo's classifiers on CPU: the audited classifier, its "fixed" release, and the
oracle that judges images. Scenes are rendered on the fly; everything is seeded.

    dxray zoo train --out /tmp/zoo --parts classifiers --threads 1

trains all three into --out (classifier/, classifier-fixed/, oracle/), then measures the ground
truth of both checkpoints (truth/, truth-fixed/) and the gates (gates.json): that is
`train_zoo_classifiers(world, out, ZooClassifiersConfig(), run)`. One at a time, from python:

    run = RunSettings(seed=0, progress=print)
    train_classifier(world, "zoo/classifier", ToyClassifierConfig(mode="biased"), run)
    train_classifier(world, "zoo/classifier-fixed", ToyClassifierConfig(mode="fixed"), run)
    train_oracle(world, "zoo/oracle", ToyOracleConfig(), run)

Each directory is a dxray classifier (`load_classifier(dir)`) plus `training.json`: seed,
steps, wall time, final loss and accuracies.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dxray.models.classifier import Preprocessing
from dxray.models.classifier_io import load_classifier, save_classifier
from dxray.toyworld.data import (
    class_names,
    cue_names,
    sample_specs,
    scene_labels,
)
from dxray.toyworld.gates import gate_rows, write_gates
from dxray.toyworld.nets import gaussian_blur, oracle_cnn, oracle_output_names, toy_cnn
from dxray.toyworld.records import write_record
from dxray.toyworld.run_settings import Progress, RunSettings
from dxray.toyworld.scenes import SceneSpec, render_batch
from dxray.toyworld.truth import accuracy, compute_truth, derive_seed
from dxray.toyworld.truth_gates import classifier_gates, gates_table, oracle_accuracy
from dxray.toyworld.truth_io import describe, write_truth
from dxray.toyworld.world import World

TRAINING_FILE = "training.json"
CLASSIFIER_FACTORY = "dxray.toyworld.nets:toy_cnn"
ORACLE_FACTORY = "dxray.toyworld.nets:oracle_cnn"


@dataclass
class ToyClassifierConfig:
    """The audited classifier's size and recipe. Defaults: the zoo's classifier.

    `mode`: "biased" trains on the world's planted correlations, "fixed" on them minus those
    its fixed release removes. `hide_object`: fraction of training scenes drawn without their
    object, label kept, like photos where the object is too small or hidden to see; it makes
    the planted contexts and cues carry the class on their own (0: the world's scenes as they
    are). `eval_n` unbiased scenes measure the accuracy after training (0: skip).
    """

    mode: Literal["biased", "fixed"] = "biased"
    steps: int = 800
    batch: int = 128
    lr: float = 1e-2
    width: int = 16
    hidden: int = 64
    hide_object: float = 0.0
    eval_n: int = 2000

    def __post_init__(self):
        if self.mode not in ("biased", "fixed"):
            raise ValueError(f"mode must be 'biased' or 'fixed', got {self.mode!r}")
        if not 0.0 <= self.hide_object < 1.0:
            raise ValueError(f"hide_object must be in [0, 1), got {self.hide_object}")
        if self.steps < 1 or self.batch < 1:
            raise ValueError(
                f"steps and batch must be >= 1, got steps={self.steps}, batch={self.batch}"
            )


@dataclass
class ToyOracleConfig:
    """The oracle's size and recipe. Defaults: the zoo's oracle.

    It trains on augmented unbiased scenes plus `context_only_frac` object-free ones, with cues
    drawn at `cue_frac` instead of their (rare) base rates so the cue head sees enough of them.
    `eval_n` scenes measure its accuracy after training (0: skip).
    """

    steps: int = 1500
    batch: int = 128
    lr: float = 1e-2
    width: int = 16
    hidden: int = 96
    context_only_frac: float = 0.2
    cue_frac: float = 0.4
    eval_n: int = 2000

    def __post_init__(self):
        if self.steps < 1 or self.batch < 2:
            raise ValueError(
                f"need steps >= 1 and batch >= 2, got steps={self.steps}, batch={self.batch}"
            )


@dataclass
class ZooClassifiersConfig:
    """What `train_zoo_classifiers` trains and measures. Defaults: the zoo's.

    Both releases follow `classifier`, its `mode` set to "biased" and "fixed" in turn; the
    oracle follows `oracle`. `truth_n` scenes make each ground-truth measurement, `gate_n`
    each accuracy gate.
    """

    classifier: ToyClassifierConfig = field(default_factory=ToyClassifierConfig)
    oracle: ToyOracleConfig = field(default_factory=ToyOracleConfig)
    truth_n: int = 500
    gate_n: int = 2000


@dataclass
class TrainRecord:
    """What a training run did; written as `training.json` beside the weights."""

    kind: Literal["classifier", "oracle"]
    world: str
    mode: str  # "biased" / "fixed" for the classifier, "unbiased+context_only" for the oracle
    seed: int
    steps: int
    batch: int
    lr: float
    factory: str
    factory_kwargs: dict
    wall_seconds: float
    final_loss: float
    threads: int
    torch_version: str
    data_options: dict = field(default_factory=dict)  # how the training scenes were altered
    evaluation: dict = field(default_factory=dict)


@dataclass
class Trained:
    """A finished run: the model (eval mode), where it was saved, and its record."""

    model: nn.Module
    path: Path
    record: TrainRecord


def preprocessing(world: World) -> Preprocessing:
    """The toy models' input: the world's image size, mean and std 0.5 (values in [-1, 1])."""
    size = world.image_size
    return Preprocessing(input_size=(size, size), mean=(0.5,) * 3, std=(0.5,) * 3)


def _schedule(step: int, steps: int, warmup: int) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _reporter(progress: Progress, name: str, steps: int):
    """A progress callback that prints about ten lines per run, with smoothed loss."""
    started, every = time.perf_counter(), max(1, steps // 10)
    state = {"loss": None}

    def report(step: int, loss: float, extra: str = "") -> None:
        state["loss"] = loss if state["loss"] is None else 0.9 * state["loss"] + 0.1 * loss
        if progress is not None and ((step + 1) % every == 0 or step + 1 == steps):
            elapsed = time.perf_counter() - started
            progress(
                f"{name}: step {step + 1}/{steps}  loss {state['loss']:.4f}{extra}  {elapsed:.0f}s"
            )

    return report


def train_classifier(
    world: World,
    out_dir: str | Path,
    config: ToyClassifierConfig | None = None,
    run: RunSettings | None = None,
) -> Trained:
    """Train the audited classifier of `config` (default: the zoo's) on `config.mode` scenes
    and save it to `out_dir`, with its training record. `run`: the seed, threads and progress
    lines (on the CPU whatever its device)."""
    # 1. Inputs (the config checked itself)
    config = config or ToyClassifierConfig()
    run = run or RunSettings()
    run.use_threads()
    seed, progress = run.seed, run.progress
    mode, steps, batch, lr = config.mode, config.steps, config.batch, config.lr
    hide_object, eval_n = config.hide_object, config.eval_n
    out_dir = Path(out_dir)
    started = time.perf_counter()

    # 2. Seeded model and optimiser
    torch.manual_seed(seed)
    kwargs = {"num_classes": len(world.classes), "width": config.width, "hidden": config.hidden}
    model = toy_cnn(**kwargs)
    pre = preprocessing(world)
    report = _reporter(progress, f"classifier[{mode}]", steps)

    # 3. Train on freshly rendered scenes, one seeded batch per step. Both modes draw from the
    #    same seeds, so the biased and fixed runs see the same objects (see `sample_specs`).
    def batch_at(step: int):
        step_seed = derive_seed(seed, "train", step)
        specs = sample_specs(world, batch, seed=step_seed, mode=mode)
        labels = torch.from_numpy(scene_labels(world, specs).object)
        if hide_object > 0:
            hidden_rows = np.random.default_rng(step_seed).random(batch) < hide_object
            specs = [
                _without_object(s) if h else s for s, h in zip(specs, hidden_rows, strict=True)
            ]
        images, _, _ = render_batch(world, specs)

        def loss_of(logits: Tensor) -> tuple[Tensor, str]:
            acc = float((logits.argmax(1) == labels).float().mean())
            return F.cross_entropy(logits, labels), f"  batch acc {acc:.2f}"

        return images, loss_of

    loss = _fit(model, pre, steps=steps, lr=lr, report=report, batch_at=batch_at)

    # 4. Save in the classifier format, reload through the real loader, and measure
    def evaluate(loaded) -> dict:
        return {
            "unbiased_accuracy": accuracy(loaded, world, n=eval_n, seed=seed + 1),
            "train_mode_accuracy": accuracy(loaded, world, n=eval_n, seed=seed + 1, mode=mode),
        }

    return _save(
        out_dir,
        model,
        pre,
        class_names(world),
        started=started,
        evaluate=evaluate if eval_n > 0 else None,
        progress=progress,
        label=f"classifier[{mode}]",
        kind="classifier",
        world=world.name,
        mode=mode,
        seed=seed,
        steps=steps,
        batch=batch,
        lr=lr,
        factory=CLASSIFIER_FACTORY,
        factory_kwargs=kwargs,
        final_loss=loss.item(),
        data_options={"hide_object": hide_object},
    )


def _fit(model, pre, *, steps: int, lr: float, report, batch_at) -> Tensor:
    """AdamW (weight decay 1e-4) with warm-up and `_schedule` over `steps`. `batch_at(step)`
    returns (images, loss_of) where `loss_of(logits) -> (loss, progress text)`. Returns the
    last loss; leaves the model in eval mode."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warmup = min(50, steps // 10 + 1)
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        images, loss_of = batch_at(step)
        for group in optimiser.param_groups:
            group["lr"] = lr * _schedule(step, steps, warmup)
        loss, text = loss_of(model(pre(images)))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        report(step, loss.item(), text)
    model.eval()
    return loss


def _save(out_dir: Path, model, pre, names, *, started, evaluate, progress, label, **record):
    """Save in the classifier format, measure the reloaded model with `evaluate` (None: skip),
    write the training record (`record`: TrainRecord's fields) and return `Trained`."""
    save_classifier(
        out_dir,
        model,
        factory=record["factory"],
        factory_kwargs=record["factory_kwargs"],
        preprocessing=pre,
        class_names=names,
    )
    wall = time.perf_counter() - started
    evaluation = evaluate(load_classifier(out_dir)) if evaluate is not None else {}
    trained = TrainRecord(
        **record,
        wall_seconds=round(wall, 2),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        evaluation=evaluation,
    )
    write_record(out_dir / TRAINING_FILE, asdict(trained))
    if progress is not None:
        progress(f"{label}: saved {out_dir} in {wall:.0f}s; {evaluation}")
    return Trained(model, out_dir, trained)


def _without_object(spec: SceneSpec) -> SceneSpec:
    return replace(spec, shape=None, colour=None, size=0.0, position=(0.5, 0.5), rotation=0.0)


def augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Mild corruption like that of generated images: blur (half the images, sigma up to
    1.2 px), colour jitter (brightness, contrast, per-channel gain) and pixel noise."""
    b = images.shape[0]

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(b, *shape, generator=generator)

    sigma = uniform(0.0, 1.2) * (torch.rand(b, generator=generator) < 0.5)
    x = gaussian_blur(images, sigma)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * uniform(0.85, 1.15, 1, 1, 1) + mean  # contrast
    x = x * uniform(0.9, 1.1, 1, 1, 1) * uniform(0.95, 1.05, 3, 1, 1)  # brightness, colour
    x = x + uniform(0.0, 0.04, 1, 1, 1) * torch.randn(x.shape, generator=generator)
    return x.clamp(0.0, 1.0)


def _oracle_specs(world: World, batch: int, seed: int, context_only_frac: float, cue_frac: float):
    """A training batch for the oracle: unbiased scenes plus object-free ones, with cues drawn
    at `cue_frac` instead of their (rare) base rates so the cue head sees enough of them."""
    n_empty = round(batch * context_only_frac)
    specs = sample_specs(world, batch - n_empty, seed=seed, mode="unbiased")
    specs += sample_specs(world, n_empty, seed=seed + 1, mode="context_only")
    cues = cue_names(world)
    if cues:
        rng = np.random.default_rng(seed)
        draw = rng.random(len(specs)) < cue_frac
        which = rng.integers(len(cues), size=len(specs))
        specs = [
            replace(s, cue=cues[w] if d else None)
            for s, d, w in zip(specs, draw, which, strict=True)
        ]
    return specs


def train_oracle(
    world: World,
    out_dir: str | Path,
    config: ToyOracleConfig | None = None,
    run: RunSettings | None = None,
) -> Trained:
    """Train the oracle of `config` (default: the zoo's; object incl. none, context, cue incl.
    none) on augmented unbiased and context-only scenes, and save it to `out_dir` as a
    classifier whose outputs are the three heads' logits concatenated (`oracle_output_names`);
    read it with `nets.oracle_predict`. `run`: as `train_classifier`'s."""
    # 1. Inputs (the config checked itself)
    config = config or ToyOracleConfig()
    run = run or RunSettings()
    run.use_threads()
    seed, progress = run.seed, run.progress
    steps, batch, lr, eval_n = config.steps, config.batch, config.lr, config.eval_n
    context_only_frac, cue_frac = config.context_only_frac, config.cue_frac
    out_dir = Path(out_dir)
    started = time.perf_counter()

    # 2. Seeded model and optimiser
    torch.manual_seed(seed)
    n_cls, n_ctx, n_cue = len(world.classes), len(world.contexts), len(world.cues)
    kwargs = {
        "num_classes": n_cls,
        "num_contexts": n_ctx,
        "num_cues": n_cue,
        "width": config.width,
        "hidden": config.hidden,
    }
    model = oracle_cnn(**kwargs)
    pre = preprocessing(world)
    report = _reporter(progress, "oracle", steps)

    # 3. Train: three cross-entropies on augmented scenes; "none" is the last class of a head
    def batch_at(step: int):
        step_seed = derive_seed(seed, "oracle", step)
        specs = _oracle_specs(world, batch, step_seed, context_only_frac, cue_frac)
        images, _, _ = render_batch(world, specs)
        images = augment(images, torch.Generator().manual_seed(step_seed))
        labels = scene_labels(world, specs)
        obj = torch.from_numpy(np.where(labels.object < 0, n_cls, labels.object))
        ctx = torch.from_numpy(labels.context)
        cue = torch.from_numpy(np.where(labels.cue < 0, n_cue, labels.cue))

        def loss_of(logits: Tensor) -> tuple[Tensor, str]:
            heads = model.split(logits)
            loss = (
                F.cross_entropy(heads["object"], obj)
                + F.cross_entropy(heads["context"], ctx)
                + F.cross_entropy(heads["cue"], cue)
            )
            acc = float((heads["object"].argmax(1) == obj).float().mean())
            return loss, f"  batch object acc {acc:.2f}"

        return images, loss_of

    loss = _fit(model, pre, steps=steps, lr=lr, report=report, batch_at=batch_at)

    # 4. Save, reload and measure
    def evaluate(loaded) -> dict:
        return oracle_accuracy(loaded, world, n=eval_n, seed=seed + 1)

    return _save(
        out_dir,
        model,
        pre,
        oracle_output_names(world),
        started=started,
        evaluate=evaluate if eval_n > 0 else None,
        progress=progress,
        label="oracle",
        kind="oracle",
        world=world.name,
        mode="unbiased+context_only",
        seed=seed,
        steps=steps,
        batch=batch,
        lr=lr,
        factory=ORACLE_FACTORY,
        factory_kwargs=kwargs,
        final_loss=loss.item(),
        data_options={"context_only_frac": context_only_frac, "cue_frac": cue_frac},
    )


def train_zoo_classifiers(
    world: World,
    out: str | Path,
    config: ZooClassifiersConfig | None = None,
    run: RunSettings | None = None,
) -> dict:
    """Train the classifier, its fixed release and the oracle of `config` (default: the zoo's)
    into `out`, then write the ground truth of both checkpoints and the gates (gates.json).
    `run`: the seed of every model and measurement, threads, progress. Returns the gates and
    the training records."""
    out = Path(out)
    config = config or ZooClassifiersConfig()
    run = run if run is not None else RunSettings()
    run.use_threads()
    seed, progress, truth_n, gate_n = run.seed, run.progress, config.truth_n, config.gate_n
    classifier = config.classifier
    records = {
        "classifier": train_classifier(
            world, out / "classifier", replace(classifier, mode="biased"), run
        ),
        "classifier-fixed": train_classifier(
            world, out / "classifier-fixed", replace(classifier, mode="fixed"), run
        ),
        "oracle": train_oracle(world, out / "oracle", config.oracle, run),
    }
    classifier = load_classifier(out / "classifier")
    fixed = load_classifier(out / "classifier-fixed")
    oracle = load_classifier(out / "oracle")
    started = time.perf_counter()
    truth, neurons = compute_truth(world, classifier, n=truth_n, seed=seed)
    fixed_truth, fixed_neurons = compute_truth(world, fixed, n=truth_n, seed=seed)
    write_truth(out / "truth", truth, neurons)
    write_truth(out / "truth-fixed", fixed_truth, fixed_neurons)
    truth_seconds = time.perf_counter() - started
    gates = classifier_gates(
        world,
        classifier,
        fixed=fixed,
        oracle=oracle,
        n=gate_n,
        seed=seed,
        truth=truth,
        fixed_truth=fixed_truth,
    )
    summary = {
        "gates": [asdict(g) for g in gates],
        "all_passed": all(g.passed for g in gates),
        "training": {name: asdict(t.record) for name, t in records.items()},
        "truth_seconds": round(truth_seconds, 2),
    }
    write_gates(
        out, gate_rows("classifier", gates), world=world.name, seconds=time.perf_counter() - started
    )
    if progress is not None:
        cls_cols = ["class", "factor_kind", "factor", "planted", "reliance_logit", "reliance_prob"]
        neuron_cols = ["class", "unit", "rank", "object_response", "context_response", "factor"]
        for name, table, neuron_table in (
            ("classifier", truth, neurons),
            ("classifier-fixed", fixed_truth, fixed_neurons),
        ):
            progress(f"\n{name}: class-level reliance\n{describe(table, cls_cols)}")
            progress(
                f"\n{name}: top units\n{describe(neuron_table, [*neuron_cols, 'margin', 'label'])}"
            )
        progress(
            "\ngates\n"
            + describe(gates_table(gates), ["name", "value", "op", "threshold", "passed"])
        )
    return summary
