"""Benchmarks of the explain engine: time per target-iteration at several batch sizes.

A benchmark prints ratios measured in one run (this machine is noisy); it is not a timed test.
`engine_timing` is shared by `dxray bench engine` (tiny models, CPU) and
`benchmarks/gpu_engine.py` (the real SD1.5/LCM architecture with random weights, on a GPU).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import torch

from dxray.explain.objective import ClassLogit
from dxray.explain.optimize import ExplainConfig, explain


@dataclass
class Timing:
    batch: int
    seconds_per_iteration: float  # median over the timed iterations
    peak_gib: float | None = None  # CUDA only

    @property
    def seconds_per_target_iteration(self) -> float:
        return self.seconds_per_iteration / self.batch


def engine_timing(
    generator, classifier, batch: int, config: ExplainConfig, *, warmup: int = 2, timed: int = 5
) -> Timing:
    """Run `warmup + timed` iterations of the real loop on `batch` rows; time each iteration."""
    cuda = generator.device.type == "cuda"
    stamps: list[float] = []

    def tick(_iteration: int, _active: int) -> None:
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    n = classifier.num_classes
    objectives = [ClassLogit(i % n) for i in range(batch)]
    cfg = replace(config, iterations=warmup + timed, stop_prob=None)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    explain(generator, classifier, objectives, list(range(batch)), cfg, progress=tick)
    # Iteration i ends at stamps[i]; the first `warmup` are discarded.
    ends = [start, *stamps]
    durations = sorted(ends[i + 1] - ends[i] for i in range(warmup, warmup + timed))
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return Timing(batch, durations[len(durations) // 2], peak)


def iteration_flops(generator, classifier, config: ExplainConfig, batch: int = 1) -> float:
    """Model FLOPs of one optimisation iteration (forward + backward) for `batch` rows,
    counted by torch's FlopCounterMode (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    from dxray.explain import prompt as sp
    from dxray.explain.sampler import decode, draw_noise, sample

    tok, enc = generator.tokenizer, generator.text_encoder
    layout = sp.layout(tok, config.template, config.n_vectors)
    vectors = torch.stack([sp.init_random(enc, config.n_vectors, s) for s in range(batch)])
    vectors.requires_grad_(True)
    noise = draw_noise(generator.latent_shape, config.sampler.steps, list(range(batch)))
    noise = noise.to(generator.device)
    counter = FlopCounterMode(display=False)
    with counter:
        cond = sp.encode(enc, layout, vectors)
        latents = sample(generator, cond, noise, config.sampler)
        images = decode(generator, latents, tiny=config.decoder == "tiny")
        classifier.outputs(images).logits[:, 0].sum().backward()
    return float(counter.get_total_flops())


def tiny_models(seed: int = 0):
    """The seeded tiny generator + classifier that `dxray bench engine` measures."""
    from dxray.models.build import GeneratorArch, build_generator
    from dxray.models.classifier import Classifier, Preprocessing

    generator = build_generator(GeneratorArch(), seed=seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    )
    pre = Preprocessing(input_size=(16, 16), mean=(0.5,) * 3, std=(0.25,) * 3)
    return generator, Classifier(net.eval().requires_grad_(False), pre)


def scale_timing(
    spec, workers: int, *, catalog: str, limit: int | None = None, batch_size: int = 8
) -> dict:
    """The same audit on `workers` CPU workers (1 torch thread each) into a fresh catalog:
    targets per minute, counting from the run's start (Ray start and model loads included).
    Batches must be smaller than the target count / workers, or a worker sits idle."""
    from dxray.run.pipeline import run_audit
    from dxray.spec.parse import with_overrides

    spec = with_overrides(
        spec,
        **{
            "ray.workers": workers,
            "ray.num_cpus_per_worker": 1,
            "engine.batch_size": batch_size,
            "output.catalog": catalog,
            "output.run_id": f"bench-scale-{workers}",
        },
    )
    summary = run_audit(spec, limit=limit)
    return {
        "workers": workers,
        "targets": summary.computed,
        "seconds": summary.seconds,
        "targets_per_minute": 60 * summary.computed / summary.seconds,
    }
