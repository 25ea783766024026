"""`dxray bench engine | audit | scale`: benchmarks that print ratios measured in one run
(`dxray.bench`).
"""

from __future__ import annotations

from pathlib import Path

import typer

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (print ratios measured in one run).")


@bench_app.command("engine")
def bench_engine(
    batch: int = typer.Option(16, help="The batched run's number of targets."),
    iterations: int = typer.Option(8, help="Timed iterations per run (after 2 warm-up)."),
    steps: int = typer.Option(2, help="Sampler steps."),
    threads: int = typer.Option(
        1,
        help="torch threads. Keep it at or below the free cores: 2 threads on 2 busy cores thrash.",
    ),
) -> None:
    """Time the explain loop on tiny seeded models: one target at a time vs `batch` at once.

    Example: dxray bench engine --batch 16 --threads 1
    """
    import torch

    from dxray.bench import engine_timing, tiny_models
    from dxray.explain.optimize import ExplainConfig
    from dxray.explain.sampler import SamplerConfig

    torch.set_num_threads(threads)
    generator, classifier = tiny_models()
    config = ExplainConfig(sampler=SamplerConfig(steps=steps))
    typer.echo(f"tiny models, CPU, {threads} thread(s), {steps} sampler steps, tiny decoder")
    rows = [engine_timing(generator, classifier, b, config, timed=iterations) for b in (1, batch)]
    for t in rows:
        typer.echo(
            f"  B={t.batch:<3d} {1000 * t.seconds_per_iteration:8.2f} ms/iteration  "
            f"{1000 * t.seconds_per_target_iteration:8.2f} ms/target-iteration"
        )
    ratio = rows[0].seconds_per_target_iteration / rows[1].seconds_per_target_iteration
    typer.echo(f"batching speed-up (per target-iteration, B={batch} vs B=1): {ratio:.1f}x")


@bench_app.command("audit")
def bench_audit(
    baseline: Path = typer.Option(..., help="The source tree to compare with (a checkout)."),
    spec: Path = typer.Option(Path("pipelines/toy.yaml"), help="The audit both trees run."),
    baseline_spec: Path = typer.Option(None, help="The baseline's spec, if not --spec."),
    tree: Path = typer.Option(
        Path(__file__).resolve().parents[2], help="The tree to measure (default: this one)."
    ),
    out: Path = typer.Option(None, help="Keep the catalogs and logs here (default: a temp dir)."),
    repeat: int = typer.Option(1, min=1, help="Pairs of runs; every second pair runs new first."),
) -> None:
    """Run the same audit with two source trees, one after the other, each into a fresh
    catalog; print each stage's seconds, the ratio, and whether verdicts and findings agree.

    Example: dxray bench audit --baseline /work/base --spec pipelines/toy.yaml
    """
    import tempfile

    from dxray.bench import compare_audits, time_audit

    root = Path(out or tempfile.mkdtemp(prefix="dxray-bench-audit-"))
    root.mkdir(parents=True, exist_ok=True)
    for i in range(repeat):
        order = [("baseline", baseline), ("new", tree)]
        runs = {}
        for name, where in order if i % 2 == 0 else order[::-1]:
            chosen = baseline_spec if name == "baseline" and baseline_spec else spec
            typer.echo(f"[{i + 1}/{repeat}] {name}: {where} auditing {chosen} ...")
            runs[name] = time_audit(where, chosen, root / f"{name}-{i}", root / f"{name}-{i}.log")
            typer.echo(f"  {runs[name].wall:.0f} s")
        for line in compare_audits(runs["baseline"], runs["new"]):
            typer.echo(line)
    typer.echo(f"catalogs and logs: {root}")


@bench_app.command("scale")
def bench_scale(
    spec_path: Path = typer.Option(Path("pipelines/toy.yaml"), "--spec", help="The audit."),
    workers: str = typer.Option("1,2", help="Worker counts to compare (1 CPU each)."),
    limit: int = typer.Option(None, help="Audit only this many targets per run."),
    batch_size: int = typer.Option(8, help="Targets per worker batch."),
) -> None:
    """The same audit with 1 and 2 CPU workers: targets per minute for each, in one run.

    Example: dxray bench scale --spec pipelines/toy.yaml --limit 16
    """
    import tempfile

    from dxray.bench import scale_timing
    from dxray.spec.parse import load_spec

    spec = load_spec(spec_path)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dxray-bench-") as tmp:
        for n in (int(w) for w in workers.split(",")):
            rows.append(
                scale_timing(spec, n, catalog=f"{tmp}/w{n}", limit=limit, batch_size=batch_size)
            )
    for r in rows:
        typer.echo(
            f"  {r['workers']} worker(s): {r['targets']} targets in {r['seconds']:.0f} s = "
            f"{r['targets_per_minute']:.1f} targets/minute"
        )
    if len(rows) > 1:
        typer.echo(
            f"speed-up {rows[-1]['workers']} vs {rows[0]['workers']} worker(s): "
            f"{rows[-1]['targets_per_minute'] / rows[0]['targets_per_minute']:.2f}x"
        )
