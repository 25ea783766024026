"""`dxray eval`, `dxray score` and `dxray sweep`: dxray's verdicts scored against a toy zoo's
ground truth, human labels, or random toy worlds (`dxray.eval`).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer

from dxray.cli.common import (
    fail,
    fresh_option,
    resume_mode,
    resume_stale_option,
    verbose_option,
)


def eval_(
    source: Path = typer.Argument(
        ..., help="An audit spec (e.g. pipelines/toy.yaml) to run, or a catalog to read."
    ),
    truth: Path = typer.Option(
        ..., help="The toy zoo with the ground truth, e.g. dxray/toyworld/zoo/default."
    ),
    seeds: int = typer.Option(4, help="Noise seeds per target of the main audit."),
    catalog: Path = typer.Option(
        None, help="Where the audits go (default: catalogs/eval-<world>)."
    ),
    run: str = typer.Option(None, help="With a catalog: the run to evaluate (default: latest)."),
    baseline: bool = typer.Option(True, help="Compare with pixel-space activation maximisation."),
    fixed: bool = typer.Option(True, help="Also audit the zoo's fixed release (bias discovery)."),
    ablations: bool = typer.Option(False, help="Run the ablations (one audit each, ~minutes)."),
    json_out: Path = typer.Option(None, "--json", help="Also write everything as JSON here."),
    fresh: bool = fresh_option(),
    resume_stale: bool = resume_stale_option(),
    verbose: bool = verbose_option(),
) -> None:
    """Score dxray's verdicts against a toy zoo's measured ground truth. Its audits resume runs
    in the catalog that this dxray code computed; --fresh computes them all again. Given a
    catalog, it scores a run already there (and reads its fixed-release run as it is).

    Example: dxray eval pipelines/toy.yaml --truth dxray/toyworld/zoo/default
    """
    import logging

    from dxray.eval.printout import format_text
    from dxray.eval.reads import latest_run, run_row
    from dxray.eval.results import result_json, write_eval
    from dxray.eval.runner import evaluate
    from dxray.report.page import write_report
    from dxray.run.checkpoints import classifier_sha256
    from dxray.spec.model import SpecError
    from dxray.spec.parse import load_spec, recorded_spec
    from dxray.toyworld.zoo import zoo_part, zoo_world

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # Re-scoring a catalog reads what is there, whatever code computed it
    resume = resume_mode(fresh, resume_stale, default="any" if source.is_dir() else "check")
    try:
        world = zoo_world(truth)
        if source.is_dir():
            catalog = source
            # the main audit: the newest run of the zoo's own classifier (the catalog also
            # holds the fixed release's, audited after it)
            main = classifier_sha256(zoo_part(truth, "classifier"))
            run = run or latest_run(catalog, classifier_sha256=main)
            spec = recorded_spec(run_row(catalog, run)["spec_yaml"], f"run {run}")
            if spec is None:
                fail(f"run {run}'s recorded spec does not parse with this dxray: evaluate a spec")
            seeds = len(spec.targets.seeds)
        else:
            spec = load_spec(source)
            catalog = catalog or Path("catalogs") / f"eval-{world.name}"
        with quiet(Path(catalog), "eval", verbose) as say:
            result = evaluate(
                spec,
                truth,
                catalog=catalog,
                seeds=seeds,
                run_id=run,
                baseline=baseline,
                fixed=fixed,
                ablations=ablations,
                progress=lambda line: say(f"[dxray eval] {line}"),
                resume=resume,
            )
    except (SpecError, OSError, ValueError) as err:
        fail(str(err))
    write_eval(result)
    html = write_report(catalog, Path(catalog) / "report.html", result.run_id)
    classes = result.classes + [{**r, "release": "fixed"} for r in result.fixed_classes]
    typer.echo(format_text(result.metrics, result.neurons, classes, result.world))
    if json_out is not None:
        json_out.write_text(result_json(result))
    typer.echo(
        f"evaluated run {result.run_id} in {result.seconds:.0f} s; tables eval_metrics, "
        f"eval_neurons, eval_classes in {catalog}; report {html}"
    )


def score(
    catalog: Path = typer.Argument(..., help="A catalog folder, e.g. catalogs/salient-imagenet."),
    run: str = typer.Option(None, help="The run to score (default: the latest finished)."),
    json_out: Path = typer.Option(None, "--json", help="Also write everything as JSON here."),
) -> None:
    """Score a run's unit verdicts against the human labels stored with it (Salient
    ImageNet's crowd answers, from the spec's unit CSV): agreement, balanced accuracy,
    confusion, coverage, per feature rank. Writes eval_metrics / eval_neurons and the report.

    Example: dxray score catalogs/salient-imagenet
    """
    from dxray.eval.labels import score_run
    from dxray.eval.printout import format_text
    from dxray.eval.reads import latest_run
    from dxray.eval.results import result_json, write_eval
    from dxray.report.page import write_report

    try:
        run = run or latest_run(catalog)
        result = score_run(catalog, run)
    except (ValueError, OSError) as err:
        fail(str(err))
    write_eval(result)
    html = write_report(catalog, Path(catalog) / "report.html", result.run_id)
    typer.echo(format_text(result.metrics, result.neurons, [], result.world))
    if json_out is not None:
        json_out.write_text(result_json(result))
    typer.echo(f"scored run {result.run_id}; tables eval_metrics, eval_neurons in {catalog}; "
               f"report {html}")  # fmt: skip


def sweep(
    spec_path: Path = typer.Argument(
        Path("pipelines/toy.yaml"), help="The audit spec whose engine, judge and shortcut test run."
    ),
    worlds: int = typer.Option(8, help="Random worlds 0..N-1 of the sweep."),
    seed: int = typer.Option(1, help="The sweep's seed: which random worlds (any seed works)."),
    out: Path = typer.Option(Path("sweeps"), help="Where the worlds' folders go."),
    base_zoo: Path = typer.Option(
        Path("dxray/toyworld/zoo/default"),
        help="The zoo whose generator, segmenter and oracle every world shares (its visuals).",
    ),
    seeds: int = typer.Option(1, help="Noise seeds per audited target."),
    threads: int = typer.Option(1, help="torch threads of training and of the Ray worker."),
    fixed: bool = typer.Option(False, help="Also train and measure each world's fixed release."),
    classifier_steps: int = typer.Option(None, help="Classifier steps (default: the zoo's 800)."),
    truth_n: int = typer.Option(500, help="Scenes per truth measurement."),
    truth_k: int = typer.Option(5, help="Truth units per class and per planted tie."),
    spurious_k: int = typer.Option(
        20, help="Also audit the truly spurious units among the top-K of each (0: none)."
    ),
    stability: int = typer.Option(
        0, help="Rerun this world's audit with other batches, threads, workers (-1: none)."
    ),
    rescore: bool = typer.Option(
        False, help="Score the finished worlds again from their catalogs first (no audit)."
    ),
    verbose: bool = verbose_option(),
    scatter: Path = typer.Option(None, help="Write the lift-vs-reliance scatter PNG here."),
    json_out: Path = typer.Option(None, "--json", help="Also write the pooled table as JSON."),
) -> None:
    """Evaluate over random toy worlds: train what is missing, measure the truth, audit with
    the class-shortcut test, pool the scores (docs/EVALUATION.md, "The sweep"). Resumes:
    every world's result is cached in its folder.

    Example: dxray sweep pipelines/toy.yaml --worlds 8 --seed 1
    """
    from dataclasses import replace

    from dxray.eval.sweep import SweepSettings, read_stability, rescore_world, run_sweep, world_dir
    from dxray.eval.sweep_table import pool_sweep
    from dxray.eval.sweep_text import format_sweep, write_scatter
    from dxray.spec.model import SpecError
    from dxray.spec.parse import load_spec

    settings = SweepSettings(seeds=seeds, threads=threads, fixed=fixed, truth_n=truth_n,
                             truth_k=truth_k, spurious_k=spurious_k)  # fmt: skip
    if classifier_steps is not None:
        settings = replace(
            settings, classifier=replace(settings.classifier, steps=classifier_steps)
        )
    try:
        for index in range(worlds) if rescore else ():
            if rescore_world(world_dir(out, seed, index)) is not None:
                typer.echo(f"[dxray sweep] rescored {world_dir(out, seed, index)}")
        with quiet(Path(out) / f"seed-{seed}", "sweep", verbose) as say:
            results = run_sweep(
                load_spec(spec_path), out=out, seed=seed, worlds=worlds, base_zoo=base_zoo,
                settings=settings, stability=None if stability < 0 else stability,
                progress=lambda line: say(f"[dxray sweep] {line}"),
            )  # fmt: skip
    except (SpecError, OSError, ValueError, RuntimeError) as err:
        fail(str(err))
    table = pool_sweep(results, read_stability(out, seed))
    if scatter is not None:
        write_scatter(table, scatter)
    if json_out is not None:
        json_out.write_text(table.to_json())
    typer.echo(format_sweep(table))


@contextmanager
def quiet(folder: Path, command: str, verbose: bool):
    """What Ray and the models print goes to <folder>/logs/<command>-<time>.log (also to the
    terminal with `verbose`); yields the function that prints dxray's own lines."""
    from dxray.run.console import library_output, log_path

    log = log_path(folder, command)
    with library_output(log, verbose=verbose) as terminal:

        def say(line: str) -> None:
            print(line, file=terminal, flush=True)

        say(f"[dxray {command}] library output: {log}")
        yield say
