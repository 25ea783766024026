"""The dxray command line.

dxray bench engine            # ms per target-iteration at B=1 vs B=16, and their ratio
dxray demo                    # what `make demo` runs
"""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (print ratios measured in one run).")
app.add_typer(bench_app, name="bench")


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


@app.command()
def demo() -> None:
    """What `make demo` runs. Today: the explain engine on tiny random models.

    The full toy-world audit (trained zoo -> Ray pipeline -> catalog -> HTML report) replaces
    this as the toy world and the platform land.
    """
    typer.echo("dxray demo: the toy-world audit is not built yet; running the engine benchmark.")
    bench_engine(batch=16, iterations=5, steps=2, threads=1)


if __name__ == "__main__":
    app()
