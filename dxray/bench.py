"""Benchmarks of the explain engine: time per target-iteration at several batch sizes.

A benchmark prints ratios measured in one run (this machine is noisy); it is not a timed test.
`engine_timing` is shared by `dxray bench engine` (tiny models, CPU) and
`benchmarks/gpu_engine.py` (the real SD1.5/LCM architecture with random weights, on a GPU).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

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


# ---------------------------------------------------------------------------------------------
# A whole audit, two trees side by side (`dxray bench audit`)
# ---------------------------------------------------------------------------------------------

# The stages of an audit as its catalog dates them: each ends with the last row it wrote.
AUDIT_STAGES = ("targets", "vocabulary", "pool", "with_object")


@dataclass
class AuditTiming:
    """One `dxray audit` of a spec by one source tree, into a fresh catalog."""

    tree: str
    spec: str
    wall: float  # the process, start to exit (imports, planning and Ray start included)
    run_seconds: float  # the run's own wall_seconds (planning done, to the finished row)
    # per stage (AUDIT_STAGES): seconds from the run's start to its last row (stages may
    # overlap), and the workers' compute seconds (the sum of its rows' `seconds`)
    stages: dict[str, tuple[float, float]]
    verdicts: dict[tuple[str, int], str | None]  # (target_id, seed) -> verdict
    findings: set[tuple[str, str, str]]  # (class_name, attribute, method) with a finding
    candidates: set[tuple[str, str]]  # (class_name, attribute) singled out by the pool
    rows: dict[str, dict] = field(default_factory=dict)  # table -> key -> what a row computed


# What makes two runs' rows the same: per table, its key and the columns a worker computed
# (images by a hash of their PNG bytes)
ROW_COLUMNS = {
    "explanations": (("target_id", "seed"), ("status", "steps", "objective_value", "probability")),
    "verdicts": (("target_id", "seed"), ("verdict", "presence", "kept")),
    "images": (("target_id", "seed"), ("png",)),
    "shortcut_images": (("render_id",), ("status", "logits", "png")),
    "shortcut_pool": (("render_id",), ("status", "logits", "png")),
}


def time_audit(
    tree: str | Path, spec: str | Path, catalog: str | Path, log: str | Path
) -> AuditTiming:
    """Run `python -m dxray.cli audit SPEC --catalog CATALOG` with the dxray of `tree` (its
    directory is the working directory, so the spec's relative model paths are the tree's),
    its output into `log`; then read what it wrote."""
    import os
    import subprocess
    import sys

    tree, catalog = Path(tree).resolve(), Path(catalog).resolve()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "dxray.cli", "audit", str(Path(spec).resolve()),
               "--catalog", str(catalog)]  # fmt: skip
    started = time.perf_counter()
    with open(log, "w") as out:
        subprocess.run(command, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
                       check=True)  # fmt: skip
    wall = time.perf_counter() - started
    return read_audit_timing(catalog, tree=str(tree), spec=str(spec), wall=wall)


def read_audit_timing(catalog: Path, *, tree: str, spec: str, wall: float) -> AuditTiming:
    """The stage times, verdicts, findings and candidates of the one run in `catalog`, read from
    its Parquet files (not the views: any version of dxray's catalog reads the same)."""
    import pyarrow.parquet as pq

    def rows(table: str) -> list[dict]:
        files = sorted((catalog / table).glob("run_id=*/part-*.parquet"))
        return [r for f in files for r in pq.read_table(f).to_pylist()]

    runs = rows("runs")
    start = min(r["created_at"] for r in runs)
    final = max(runs, key=lambda r: r["updated_at"])
    images = rows("shortcut_images")
    of_stage = {
        "targets": rows("explanations"),
        "vocabulary": [r for r in images if r["variant"] == "object_free"],
        "pool": rows("shortcut_pool"),
        "with_object": [r for r in images if r["variant"] == "with_object"],
    }
    stages = {
        stage: (
            (max(r["created_at"] for r in made) - start).total_seconds(),
            sum(r["seconds"] or 0.0 for r in made),
        )
        for stage, made in of_stage.items()
        if made
    }
    verdicts = {}
    for r in sorted(rows("verdicts"), key=lambda r: r["created_at"]):
        verdicts[(r["target_id"], int(r["seed"]))] = r["verdict"]
    scores = rows("shortcuts")
    latest = max((r["score_id"] for r in scores), default=None)
    findings = {
        (r["class_name"], r["attribute"], r["method"])
        for r in scores
        if r["score_id"] == latest and r.get("finding")
    }
    leads = rows("shortcut_candidates")
    latest = max((r["score_id"] for r in leads), default=None)
    candidates = {
        (r["class_name"], r["attribute"])
        for r in leads
        if r["score_id"] == latest and r.get("candidate")
    }
    computed = {}
    for table, (key, columns) in ROW_COLUMNS.items():
        computed[table] = {
            tuple(r[k] for k in key): tuple(
                hashlib.sha256(r[c]).hexdigest() if isinstance(r[c], bytes) else r[c]
                for c in columns
            )
            for r in sorted(rows(table), key=lambda r: r["created_at"])
        }
    return AuditTiming(tree, spec, wall, final["wall_seconds"] or 0.0, stages, verdicts,
                       findings, candidates, computed)  # fmt: skip


def compare_audits(baseline: AuditTiming, new: AuditTiming) -> list[str]:
    """The lines `dxray bench audit` prints: each tree's seconds per stage, the ratios, and
    whether the two runs reached the same verdicts, findings and candidates."""
    lines = [
        "seconds          done at (since the run's start)   compute (its rows' worker seconds)",
        f"{'':<14}{'baseline':>10}{'new':>10}{'ratio':>8}   {'baseline':>10}{'new':>10}{'ratio':>8}",
    ]

    def cells(a: float | None, b: float | None) -> str:
        ratio = f"{b / a:8.2f}" if a and b is not None else f"{'-':>8}"
        fa = f"{a:10.1f}" if a is not None else f"{'-':>10}"
        fb = f"{b:10.1f}" if b is not None else f"{'-':>10}"
        return f"{fa}{fb}{ratio}"

    for stage in AUDIT_STAGES:
        a, b = baseline.stages.get(stage, (None, None)), new.stages.get(stage, (None, None))
        lines.append(f"{stage:<14}{cells(a[0], b[0])}   {cells(a[1], b[1])}")
    lines.append(f"{'run':<14}{cells(baseline.run_seconds, new.run_seconds)}")
    lines.append(f"{'process':<14}{cells(baseline.wall, new.wall)}")
    keys = baseline.verdicts.keys() | new.verdicts.keys()
    differ = sorted(k for k in keys if baseline.verdicts.get(k) != new.verdicts.get(k))
    lines.append(
        f"verdicts: {len(keys) - len(differ)} of {len(keys)} (target, seed) the same"
        + (f"; differ: {differ[:6]}" if differ else "")
    )
    lines.append(
        "findings: " + ("the same" if baseline.findings == new.findings else
                        f"baseline {sorted(baseline.findings)}, new {sorted(new.findings)}")
    )  # fmt: skip
    lines.append(
        "candidates: " + ("the same" if baseline.candidates == new.candidates else
                          f"baseline {sorted(baseline.candidates)}, new {sorted(new.candidates)}")
    )  # fmt: skip
    for table in ROW_COLUMNS:
        a, b = baseline.rows.get(table, {}), new.rows.get(table, {})
        same = sum(a[k] == b.get(k) for k in a)
        lines.append(f"rows of {table}: {same} of {len(a)} identical ({len(b)} in the new run)")
    lines.append(f"ratio (process wall, new / baseline): {new.wall / baseline.wall:.2f}")
    return lines
