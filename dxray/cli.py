"""dxray: audit image classifiers for spurious features with diffusion models.

\b
  dxray audit pipelines/toy.yaml                  run (or resume) an audit on Ray
  dxray sql catalogs/toy "SELECT class_name, attribute, lift FROM class_shortcuts WHERE finding"
  dxray report catalogs/toy --out report.html     one self-contained HTML file
  dxray score catalogs/salient-imagenet           unit verdicts vs the crowd's labels
  dxray diff catalogs/toy --from RUN_A --to RUN_B what changed between two checkpoints
  dxray gate catalogs/toy --baseline A --candidate B   exit 1 if B gained a shortcut
  dxray bench engine                              ms per target-iteration, B=1 vs B=16
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_enable=False
)
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


@bench_app.command("audit")
def bench_audit(
    baseline: Path = typer.Option(..., help="The source tree to compare with (a checkout)."),
    spec: Path = typer.Option(Path("pipelines/toy.yaml"), help="The audit both trees run."),
    baseline_spec: Path = typer.Option(None, help="The baseline's spec, if not --spec."),
    tree: Path = typer.Option(
        Path(__file__).resolve().parents[1], help="The tree to measure (default: this one)."
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


# Set by --debug: an unexpected error shows its traceback instead of one line (see `main`).
_debug = False


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error."),
) -> None:
    global _debug
    _debug = debug


def main() -> None:
    """The `dxray` command: every error is one line on stderr (exit 2 for a bad input, 1 for
    anything else); `dxray --debug ...` shows the traceback of an unexpected one."""
    from dxray.run.session import Interrupted

    try:
        app()
    except (Interrupted, KeyboardInterrupt) as err:
        code = err.exit_code if isinstance(err, Interrupted) else 130
        typer.secho("interrupted: rerun the same command to resume", fg="yellow", err=True)
        raise SystemExit(code) from None
    except Exception as err:  # noqa: BLE001 - the one place that turns errors into a line
        if _debug:
            raise
        from dxray.text import first_line

        typer.secho(
            f"error: {type(err).__name__}: {first_line(err)}",
            fg=typer.colors.RED,
            err=True,
        )
        typer.echo("(rerun as `dxray --debug ...` for the traceback)", err=True)
        raise SystemExit(2 if isinstance(err, _user_errors()) else 1) from None


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that mean a bad input (exit 2), not a bug."""
    from dxray.models.classifier import ClassifierLoadError
    from dxray.models.generator import GeneratorLoadError
    from dxray.models.segmenter import SegmenterLoadError
    from dxray.run.lock import Locked
    from dxray.spec.model import SpecError

    return (SpecError, Locked, ClassifierLoadError, GeneratorLoadError, SegmenterLoadError)


def _fail(message: str) -> None:
    """One line for a bad input, exit 2; with --debug, the traceback of the error being
    handled first."""
    if _debug and sys.exc_info()[1] is not None:
        import traceback

        traceback.print_exc()
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def audit(
    spec_path: Path = typer.Argument(..., help="An audit spec, e.g. pipelines/toy.yaml."),
    catalog: str = typer.Option(None, help="Override output.catalog."),
    run_id: str = typer.Option(None, help="Override output.run_id (default: derived)."),
    address: str = typer.Option(None, help='Ray address; "auto" inside `ray job submit`.'),
    workers: int = typer.Option(None, help="Override ray.workers."),
    iterations: int = typer.Option(None, help="Override engine.iterations."),
    limit: int = typer.Option(
        None, min=1, help="Compute at most this many targets (a rerun resumes)."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show what Ray and the models print (always in the log)."
    ),
) -> None:
    """Run an audit, or resume it: targets already in the catalog are skipped. Prints what it
    will do, a bar per stage and the outcome; what Ray and the models print goes to
    <catalog>/logs/audit-<time>.log.

    Example: dxray audit pipelines/toy.yaml --workers 2
    """
    import logging

    from dxray.spec.model import SpecError
    from dxray.spec.parse import load_spec, with_overrides

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = {
        "output.catalog": catalog,
        "output.run_id": run_id,
        "ray.address": address,
        "ray.workers": workers,
        "engine.iterations": iterations,
    }
    try:
        spec = load_spec(spec_path)
        spec = with_overrides(spec, **{k: v for k, v in overrides.items() if v is not None})
    except (SpecError, OSError) as err:
        _fail(str(err))

    try:
        summary = _run_quietly(spec, "audit", verbose, limit=limit)
    except _user_errors() as err:  # found before Ray starts or anything is written
        _fail(str(err))
    typer.echo(
        f"run {summary.run_id}: {summary.computed} computed, {summary.skipped} already in the "
        f"catalog, {summary.total} in all, {summary.seconds:.0f} s -> {summary.catalog}"
    )
    _echo_answer(summary)
    _exit_for(summary)


def _run_quietly(spec, command: str, verbose: bool, **options):
    """`run_audit` with a bar per stage on the terminal, and what Ray and the models print
    in <catalog>/logs/<command>-<time>.log (also on the terminal with `verbose`)."""
    from dxray.run.console import library_output, log_path
    from dxray.run.pipeline import run_audit
    from dxray.run.preflight import check_before_models
    from dxray.run.progress import TerminalProgress

    check_before_models(spec)  # bad inputs: one line before the log (or anything) is made
    log = log_path(spec.output.catalog, command)
    with library_output(log, verbose=verbose) as terminal:
        # Live bars only when nothing else writes to the terminal meanwhile
        progress = TerminalProgress(terminal, log=log, live=False if verbose else None)
        return run_audit(spec, stages=progress, **options)


def _exit_for(summary) -> None:
    """Say a run that is not finished, and exit 1 when targets failed (cron and CI notice)."""
    if summary.status == "finished":
        return
    if summary.status == "partial":
        typer.secho(f"run {summary.run_id} is partial: {summary.error}", fg="yellow")
        return
    typer.secho(f"run {summary.run_id} failed: {summary.error}", fg="red", err=True)
    raise typer.Exit(1)


def _echo_answer(summary) -> None:
    """What the run found, findings first (`dxray.catalog.findings`), for `audit` and `demo`:
    the class-shortcut findings, the spurious units, then the leads, apart."""
    from dxray.catalog.findings import read_answer
    from dxray.catalog.views import connect

    sc = summary.shortcuts
    for problem in (sc.problems + sc.notes) if sc is not None else []:
        typer.secho(f"shortcuts: {problem}", fg=typer.colors.YELLOW, err=True)
    con = connect(summary.catalog, read_only=True)
    try:
        answer = read_answer(con, summary.run_id)
    finally:
        con.close()
    typer.echo("")
    colours = {"finding": typer.colors.RED, "unit": typer.colors.RED, "lead": None}
    for kind, line in answer.tagged_lines():
        typer.secho(line, fg=colours.get(kind), bold=kind == "head")


@app.command()
def sql(
    catalog: Path = typer.Argument(..., help="A catalog folder, e.g. catalogs/toy."),
    query: str = typer.Argument(..., help="One read-only query (SELECT, WITH, DESCRIBE, ...)."),
    fmt: str = typer.Option("table", "--format", help="table | csv | json | parquet"),
    out: Path = typer.Option(None, help="Write the result here instead of printing it."),
    limit: int = typer.Option(100, min=1, help="Rows shown by the table format."),
) -> None:
    """Query a catalog with DuckDB SQL, read-only. Views: class_shortcuts (what each class
    relies on), class_summary, unit_summary, audit, runs, probe_rates, shortcuts,
    shortcut_images, shortcut_pool, shortcut_candidates, labels, label_agreement,
    explanations, verdicts, images (and *_log: every row), eval_metrics, eval_neurons,
    eval_classes (dxray/catalog/sql/views.sql; docs/PLATFORM.md).

    Example: dxray sql catalogs/toy "SELECT class_name, shortcuts FROM class_summary"
    """
    from dxray.catalog.sql import SqlRefused, run_sql

    if fmt not in ("table", "csv", "json", "parquet"):
        _fail(f"--format must be table, csv, json or parquet, not {fmt!r}")
    if fmt == "parquet" and out is None:
        _fail("--format parquet needs --out FILE")
    try:
        result = run_sql(catalog, query, fmt, out, limit=limit)
    except SqlRefused as err:
        _fail(str(err))
    except Exception as err:  # noqa: BLE001 - DuckDB's own message says what is wrong
        _fail(f"{type(err).__name__}: {err}")
    if out is not None:
        typer.echo(f"wrote {result}")
    else:
        sys.stdout.write(result if result.endswith("\n") else result + "\n")


@app.command(name="eval")
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
) -> None:
    """Score dxray's verdicts against a toy zoo's measured ground truth.

    Example: dxray eval pipelines/toy.yaml --truth dxray/toyworld/zoo/default
    """
    import logging

    from dxray.eval.printout import format_text
    from dxray.eval.reads import latest_run, run_row
    from dxray.eval.results import result_json, write_eval
    from dxray.eval.runner import evaluate
    from dxray.report.page import write_report
    from dxray.spec.model import SpecError
    from dxray.spec.parse import load_spec, recorded_spec
    from dxray.toyworld.zoo import zoo_world

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        world = zoo_world(truth)
        if source.is_dir():
            catalog = source
            run = run or latest_run(catalog)
            spec = recorded_spec(run_row(catalog, run)["spec_yaml"], f"run {run}")
            if spec is None:
                _fail(f"run {run}'s recorded spec does not parse with this dxray: evaluate a spec")
            seeds = len(spec.targets.seeds)
        else:
            spec = load_spec(source)
            catalog = catalog or Path("catalogs") / f"eval-{world.name}"
        result = evaluate(
            spec,
            truth,
            catalog=catalog,
            seeds=seeds,
            run_id=run,
            baseline=baseline,
            fixed=fixed,
            ablations=ablations,
            progress=lambda line: typer.echo(f"[dxray eval] {line}"),
        )
    except (SpecError, OSError, ValueError) as err:
        _fail(str(err))
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


@app.command()
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
        _fail(str(err))
    write_eval(result)
    html = write_report(catalog, Path(catalog) / "report.html", result.run_id)
    typer.echo(format_text(result.metrics, result.neurons, [], result.world))
    if json_out is not None:
        json_out.write_text(result_json(result))
    typer.echo(f"scored run {result.run_id}; tables eval_metrics, eval_neurons in {catalog}; "
               f"report {html}")  # fmt: skip


@app.command()
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
    from dxray.eval.sweep_table import format_sweep, pool_sweep, write_scatter
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
        results = run_sweep(
            load_spec(spec_path), out=out, seed=seed, worlds=worlds, base_zoo=base_zoo,
            settings=settings, stability=None if stability < 0 else stability,
            progress=lambda line: typer.echo(f"[dxray sweep] {line}"),
        )  # fmt: skip
    except (SpecError, OSError, ValueError, RuntimeError) as err:
        _fail(str(err))
    table = pool_sweep(results, read_stability(out, seed))
    if scatter is not None:
        write_scatter(table, scatter)
    if json_out is not None:
        json_out.write_text(table.to_json())
    typer.echo(format_sweep(table))


@app.command()
def report(
    catalog: Path = typer.Argument(..., help="A catalog folder."),
    out: Path = typer.Option(Path("report.html"), help="The HTML file to write."),
    run: str = typer.Option(None, help="The run to report (default: the latest)."),
    diff_from: str = typer.Option(None, help="Also show what changed since this run."),
) -> None:
    """Write the bias report of one run: one self-contained HTML file.

    Example: dxray report catalogs/toy --out toy-report.html
    """
    from dxray.report.page import write_report

    try:
        path = write_report(catalog, out, run, diff_from=diff_from)
    except (ValueError, LookupError) as err:
        _fail(str(err))
    typer.echo(f"wrote {path}")


@app.command()
def diff(
    catalog: Path = typer.Argument(..., help="A catalog folder."),
    from_run: str = typer.Option(..., "--from", help="The earlier run (checkpoint)."),
    to_run: str = typer.Option(..., "--to", help="The later run."),
    threshold: float = typer.Option(0.25, help="Report probe-rate shifts at least this large."),
) -> None:
    """What changed between two runs: new spurious features, resolved ones, shifts.

    Example: dxray diff catalogs/toy --from toy-aaaa --to toy-bbbb
    """
    from dxray.catalog.diff import diff_runs
    from dxray.catalog.views import connect

    con = connect(catalog, read_only=True)
    try:
        result = diff_runs(con, from_run, to_run, probe_threshold=threshold)
    except (ValueError, LookupError) as err:
        _fail(str(err))
    finally:
        con.close()
    for key, value in result.summary.items():
        typer.echo(f"{key}: {value}")
    # What a release cares about first: shortcuts, then units, then class explanations.
    for row in result.shortcuts.to_pylist() if result.shortcuts is not None else []:
        typer.echo(
            f"  shortcut {row['class_name']} <- {row['attribute']}: {row['change']}, lift "
            f"{_nats(row['lift_before'])} -> {_nats(row['lift_after'])}"
        )
    for row in sorted(result.rows, key=lambda r: r["kind"] != "unit"):
        if row["change"] == "unchanged":
            continue
        if row["kind"] == "unit":
            what = f"unit {row['unit']}" + (f" ({row['class_name']})" if row["class_name"] else "")
            before, after = row["verdict_before"], row["verdict_after"]
        else:
            what = f"class {row['class_name']} explanation, object"
            before, after = row["object_before"], row["object_after"]
        typer.echo(f"  {what}: {row['change']}, {before} -> {after}")


def _nats(value) -> str:
    from dxray.text import MISSING

    return MISSING if value is None else f"{value:.2f}"


@app.command()
def gate(
    catalog: Path = typer.Argument(..., help="A catalog folder holding both runs."),
    baseline: str = typer.Option(..., help="The run of the release the candidate replaces."),
    candidate: str = typer.Option(..., help="The run of the checkpoint to release."),
    spec_path: Path = typer.Option(
        None, "--spec", help="Thresholds from this spec's gate: (default: the candidate's spec)."
    ),
    margin: float = typer.Option(None, help="Override gate.lift_margin (nats, >= 0)."),
    units: bool = typer.Option(None, "--units/--no-units", help="Override gate.units."),
    allow_partial: bool = typer.Option(
        False, "--allow-partial", help="Gate runs that are not finished (what they lack passes)."
    ),
    json_out: Path = typer.Option(None, "--json", help="Also write the result as JSON here."),
    junit_out: Path = typer.Option(
        None, "--junit", help="Also write JUnit XML here: a test case per shortcut and unit."
    ),
) -> None:
    """Release gate: exit 1 when the candidate gained a shortcut finding or a spurious unit,
    or a kept shortcut grew beyond both intervals by more than the margin; 0 when it passes;
    2 on bad input (docs/SCANS.md).

    Example: dxray gate catalogs/toy --baseline toy-aaaa --candidate toy-bbbb --junit gate.xml
    """
    from dxray.catalog.gate import GateInputError, gate_runs
    from dxray.catalog.gate_render import render_text, to_json_text, to_junit
    from dxray.catalog.views import connect
    from dxray.spec.model import SpecError
    from dxray.spec.parse import load_spec

    if not catalog.is_dir():
        _fail(f"catalog {catalog} is not a folder")
    thresholds = None
    try:
        thresholds = load_spec(spec_path).gate if spec_path is not None else None
    except (SpecError, OSError) as err:
        _fail(str(err))
    con = connect(catalog, read_only=True)
    try:
        result = gate_runs(
            con, baseline, candidate, thresholds=thresholds,
            thresholds_from=str(spec_path) if spec_path is not None else None,
            lift_margin=margin, units=units, allow_partial=allow_partial,
        )  # fmt: skip
    except GateInputError as err:
        _fail(str(err))
    finally:
        con.close()
    for path, text in ((json_out, to_json_text), (junit_out, to_junit)):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text(result) + "\n", encoding="utf-8")
    typer.echo(render_text(result))
    if not result.passed:
        raise typer.Exit(1)


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


@app.command()
def scan(
    watch: str = typer.Option(..., help="A folder of checkpoints, or a glob (quote it)."),
    spec_path: Path = typer.Option(..., "--spec", help="The audit to run on each checkpoint."),
    catalog: str = typer.Option(None, help="Override output.catalog."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be audited."),
    gate: bool = typer.Option(
        False,
        "--gate",
        help="Gate each new checkpoint against the one before; exit 1 if one fails.",
    ),
) -> None:
    """Audit every checkpoint not yet audited (by content hash), then diff it against the one
    before. Idempotent and locked: safe to run from cron (docs/SCANS.md).

    Example: dxray scan --watch '/checkpoints/*' --spec pipelines/toy.yaml --gate
    """
    import logging

    from dxray.run.scan import CheckpointsFailed, main_scan
    from dxray.run.scan_gates import GatesFailed
    from dxray.spec.model import SpecError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main_scan(watch, spec_path, dry_run, catalog=catalog, echo=typer.echo, gate=gate)
    except (SpecError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    except GatesFailed as err:
        typer.secho(f"gate failed: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except CheckpointsFailed as err:
        typer.secho(f"scan failed: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


catalog_app = typer.Typer(no_args_is_help=True, help="Look after a catalog folder.")
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("check")
def catalog_check(
    catalog: Path = typer.Argument(..., help="A catalog folder, e.g. catalogs/toy."),
    deep: bool = typer.Option(False, help="Read every row, not only each file's footer."),
    quarantine: bool = typer.Option(
        False, help="Move unreadable files to <catalog>/_quarantine/ (nothing is deleted)."
    ),
) -> None:
    """List the catalog's unreadable Parquet files (readers already leave them out, with a
    warning); exits 1 while any is left in place.

    Example: dxray catalog check catalogs/toy --quarantine
    """
    from dxray.catalog import health

    if not catalog.is_dir():
        _fail(f"catalog {catalog} is not a folder")
    broken = health.broken_files(catalog, deep=deep)
    for item in broken:
        typer.echo(f"unreadable: {item.path} ({item.reason})")
    if not broken:
        files = len(health.committed_files(catalog))
        typer.echo(
            f"{catalog}: {files} files, all readable" + (" (every row read)" if deep else "")
        )
        return
    if not quarantine:
        typer.echo(f"{len(broken)} unreadable file(s); --quarantine moves them aside")
        raise typer.Exit(1)
    for target in health.quarantine(catalog, broken):
        typer.echo(f"moved to {target}")
    typer.echo(
        f"{len(broken)} file(s) quarantined: their rows are gone from the views; rerunning the "
        "audit recomputes the targets of a quarantined explanations file"
    )


convert_app = typer.Typer(
    no_args_is_help=True, help="Released checkpoints -> dxray classifier directories."
)
app.add_typer(convert_app, name="convert")


@convert_app.command("robustness")
def convert_robustness_(
    checkpoint: Path = typer.Argument(..., help="e.g. imagenet_l2_3_0.pt (Salient ImageNet's)."),
    out: Path = typer.Argument(..., help="The classifier directory to write."),
    class_names: str = typer.Option(
        ..., help="class_metadata.csv, a file with one name per line, or torchvision:<Weights>."
    ),
) -> None:
    """The robustness library's ResNet checkpoint -> a classifier directory (read with
    weights_only; the normaliser folded into the preprocessing).

    Example: dxray convert robustness imagenet_l2_3_0.pt models/robust_resnet50 --class-names class_metadata.csv
    """
    from dxray.models.convert import ConvertError, convert_robustness, imagenet_class_names

    try:
        path = convert_robustness(checkpoint, out, class_names=imagenet_class_names(class_names))
    except ConvertError as err:
        _fail(str(err))
    typer.echo(f"wrote {path}")


@convert_app.command("fairface")
def convert_fairface_(
    checkpoint: Path = typer.Argument(..., help="e.g. res34_fair_align_multi_7_20190809.pt."),
    out: Path = typer.Argument(..., help="The classifier directory to write."),
    head: str = typer.Option("age", help="The audited classes: age, race or gender."),
) -> None:
    """FairFace's 18-output ResNet-34 -> a classifier directory whose classes are one head's.

    Example: dxray convert fairface res34_fair_align_multi_7_20190809.pt models/fairface_age --head age
    """
    from dxray.models.convert import ConvertError, convert_fairface

    try:
        path = convert_fairface(checkpoint, out, head=head)
    except ConvertError as err:
        _fail(str(err))
    typer.echo(f"wrote {path}")


zoo_app = typer.Typer(no_args_is_help=True, help="The toy world's model zoo.")
app.add_typer(zoo_app, name="zoo")


ZOO_CLASSIFIERS, ZOO_SEGMENTER, ZOO_GENERATOR = "Classifiers", "Segmenter", "Generator"


@zoo_app.command("train")
def zoo_train(
    out: Path = typer.Option(..., help="The zoo folder to write."),
    world: str = typer.Option("default", help="A bundled world (default, second) or a YAML."),
    parts: str = typer.Option(
        "classifiers,segmenter,generator", help="Which models to train (comma-separated)."
    ),
    device: str = typer.Option("cpu", help="cpu or cuda: the generator wants a GPU."),
    generator_seconds: float = typer.Option(
        3600,
        help="The generator's time budget; it resumes from its checkpoint if rerun.",
        rich_help_panel=ZOO_GENERATOR,
    ),
    segmenter_steps: int = typer.Option(
        None,
        help="The segmenter's steps (default: its config's); see --segmenter-init.",
        rich_help_panel=ZOO_SEGMENTER,
    ),
    segmenter_init: Path = typer.Option(
        None,
        help="A saved toy segmenter to continue training (use another --seed than its own).",
        rich_help_panel=ZOO_SEGMENTER,
    ),
    seed: int = typer.Option(0, help="Every model's seed (recorded in the zoo)."),
    threads: int = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
    classifier_steps: int = typer.Option(
        None,
        help="Steps of the classifier and its fixed release (default: the zoo's recipe).",
        rich_help_panel=ZOO_CLASSIFIERS,
    ),
    oracle_steps: int = typer.Option(
        None,
        help="The oracle's steps (default: the zoo's recipe).",
        rich_help_panel=ZOO_CLASSIFIERS,
    ),
    hide_object: float = typer.Option(
        None,
        help="Fraction of the classifiers' training scenes drawn without their object, label "
        "kept (0: off).",
        rich_help_panel=ZOO_CLASSIFIERS,
    ),
    truth_n: int = typer.Option(
        500, help="Scenes per ground-truth measurement.", rich_help_panel=ZOO_CLASSIFIERS
    ),
    gate_n: int = typer.Option(
        2000, help="Scenes per accuracy gate.", rich_help_panel=ZOO_CLASSIFIERS
    ),
    segmenter_seconds: float = typer.Option(
        None, help="Also stop the segmenter after this many seconds.", rich_help_panel=ZOO_SEGMENTER
    ),
    segmenter_batch_size: int = typer.Option(
        None,
        help="Scenes per step (default: its config's for the device).",
        rich_help_panel=ZOO_SEGMENTER,
    ),
    segmenter_save_every: int = typer.Option(
        500,
        help="Also save the segmenter every N steps (a killed run leaves one).",
        rich_help_panel=ZOO_SEGMENTER,
    ),
    segmenter_extra_object_negatives: int = typer.Option(
        None,
        help="Object queries per scene beyond the first, each naming an absent class "
        "(default: the zoo's recipe).",
        rich_help_panel=ZOO_SEGMENTER,
    ),
    generator_max_steps: int = typer.Option(
        None, help="Also stop at this many UNet steps in all.", rich_help_panel=ZOO_GENERATOR
    ),
    generator_preset: str = typer.Option(
        "default",
        help="default (the zoo's sizes) or tiny (trains in seconds on a CPU).",
        rich_help_panel=ZOO_GENERATOR,
    ),
    generator_fresh: bool = typer.Option(
        False,
        "--generator-fresh",
        help="Ignore an earlier run's checkpoint: train afresh.",
        rich_help_panel=ZOO_GENERATOR,
    ),
    generator_batch_size: int = typer.Option(
        None, help="Default: 1024 on CUDA, 16 on the CPU.", rich_help_panel=ZOO_GENERATOR
    ),
    generator_pool_size: int = typer.Option(
        None,
        help="Scenes in the pool (default: 65536 on CUDA, 2048 on the CPU).",
        rich_help_panel=ZOO_GENERATOR,
    ),
    generator_workers: int = typer.Option(
        None,
        help="Scene render processes (default: cores - 2 on CUDA, none on the CPU).",
        rich_help_panel=ZOO_GENERATOR,
    ),
    generator_log_every: int = typer.Option(
        100, help="A progress line every N steps.", rich_help_panel=ZOO_GENERATOR
    ),
    generator_checkpoint_every: int = typer.Option(
        500, help="A checkpoint every N steps.", rich_help_panel=ZOO_GENERATOR
    ),
    generator_cuda_graphs: bool = typer.Option(
        False,
        "--generator-cuda-graphs",
        help="Capture the training steps as CUDA graphs.",
        rich_help_panel=ZOO_GENERATOR,
    ),
    generator_sample_steps: int = typer.Option(
        0,
        help="Then draw a grid of samples with this many sampler steps into "
        "<out>/.generator-training/samples.png (0: none).",
        rich_help_panel=ZOO_GENERATOR,
    ),
    generator_sample_guidance: float = typer.Option(
        2.0, help="The samples' guidance scale.", rich_help_panel=ZOO_GENERATOR
    ),
) -> None:
    """Train the toy zoo: classifier + fixed release + oracle + truth, segmenter, generator.

    Example: dxray zoo train --out /tmp/zoo --world default --parts classifiers
    """
    from dxray.toyworld.world import WorldConfigError, load_world

    try:
        w = load_world(world)
    except (WorldConfigError, OSError) as err:
        _fail(str(err))
    chosen = {p.strip() for p in parts.split(",") if p.strip()}
    unknown = chosen - {"classifiers", "segmenter", "generator"}
    if unknown:
        _fail(f"unknown part(s) {sorted(unknown)}: use classifiers, segmenter, generator")
    if generator_preset not in ("default", "tiny"):
        _fail(f"--generator-preset {generator_preset!r}: use default or tiny")

    def given(**values):  # the options set, so that the configs' defaults fill the rest
        return {k: v for k, v in values.items() if v is not None}

    from dxray.toyworld.generator_training.config import ToyGeneratorConfig
    from dxray.toyworld.train_classifier import ToyClassifierConfig, ToyOracleConfig
    from dxray.toyworld.train_segmenter import ToySegmenterConfig

    try:  # every config checks itself before anything trains
        classifier = ToyClassifierConfig(**given(steps=classifier_steps, hide_object=hide_object))
        oracle = ToyOracleConfig(**given(steps=oracle_steps))
        segmenter = ToySegmenterConfig(
            **given(extra_object_negatives=segmenter_extra_object_negatives)
        )
    except ValueError as err:
        _fail(str(err))
    generator = ToyGeneratorConfig.tiny() if generator_preset == "tiny" else ToyGeneratorConfig()
    if threads:
        import torch

        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    if "classifiers" in chosen:
        from dxray.toyworld.train_classifier import train_zoo_classifiers

        train_zoo_classifiers(
            w, out, classifier, oracle, seed=seed, truth_n=truth_n, gate_n=gate_n,
            progress=typer.echo,
        )  # fmt: skip
    if "segmenter" in chosen:
        from dxray.toyworld.train_segmenter import train_segmenter

        train_segmenter(
            w,
            out,
            segmenter,
            seed=seed,
            device=device,
            steps=segmenter_steps,
            seconds=segmenter_seconds,
            batch_size=segmenter_batch_size,
            init=segmenter_init,
            save_every=segmenter_save_every,
            progress=lambda p: typer.echo(
                f"segmenter step {p['step']}  loss {p['loss']:.4f}  {p['elapsed']:.0f}s"
            ),
        )
    if "generator" in chosen:
        import shutil

        from dxray.toyworld.generator_training.loop import train_generator
        from dxray.toyworld.generator_training.samples import write_sample_grid

        scratch = out / ".generator-training"  # checkpoint.pt: large, resumable, not committed
        report = train_generator(
            w,
            scratch,
            generator,
            seed=seed,
            device=device,
            progress=typer.echo,
            seconds=generator_seconds,
            max_steps=generator_max_steps,
            batch_size=generator_batch_size,
            resume=not generator_fresh,
            log_every=generator_log_every,
            checkpoint_every=generator_checkpoint_every,
            pool_size=generator_pool_size,
            workers=generator_workers,
            cuda_graphs=generator_cuda_graphs,
        )
        shutil.rmtree(out / "generator", ignore_errors=True)
        shutil.copytree(report.generator_dir, out / "generator")
        if generator_sample_steps:
            path = write_sample_grid(
                report.generator_dir, w, scratch / "samples.png", steps=generator_sample_steps,
                guidance_scale=generator_sample_guidance, device=device,
            )  # fmt: skip
            typer.echo(f"wrote {path}: rows = shapes, then contexts alone; columns = contexts x 2")
    typer.echo(f"zoo written to {out}; check it with: dxray zoo check {out}")


@zoo_app.command("check")
def zoo_check(
    zoo: Path = typer.Argument(..., help="A zoo folder."),
    world: str = typer.Option(None, help="The zoo's world; default: from the zoo (zoo.json)."),
    steps: int = typer.Option(4, help="Sampler steps for the generator gate (the engine's)."),
    guidance: float = typer.Option(1.0, help="Guidance scale for the generator gate."),
    write: bool = typer.Option(False, "--write", help="Record the table in <zoo>/gates.json."),
) -> None:
    """Print the zoo's gate table (with --write, record it in <zoo>/gates.json: a check alone
    changes no file). Exit 1 if a gate fails.

    Example: dxray zoo check dxray/toyworld/zoo/default
    """
    from dxray.toyworld.gates import format_gates
    from dxray.toyworld.world import load_world
    from dxray.toyworld.zoo import ZooError, check_zoo

    try:
        rows = check_zoo(
            zoo, load_world(world) if world else None, steps=steps, guidance_scale=guidance,
            write=write,
        )  # fmt: skip
    except ZooError as err:
        _fail(str(err))
    typer.echo(format_gates(rows))
    if not all(r.passed for r in rows):
        raise typer.Exit(1)


@zoo_app.command("truth")
def zoo_truth(
    zoo: Path = typer.Argument(..., help="A zoo folder with classifier/ (and classifier-fixed/)."),
    world: str = typer.Option(None, help="The zoo's world; default: from the zoo (zoo.json)."),
    n: int = typer.Option(500, help="Scenes per measurement."),
) -> None:
    """Write the ground truth (class reliance, neuron labels, units.csv) into the zoo.

    Example: dxray zoo truth dxray/toyworld/zoo/default
    """
    from dxray.toyworld.world import load_world
    from dxray.toyworld.zoo import ZooError, write_zoo_truth

    try:
        write_zoo_truth(zoo, load_world(world) if world else None, n=n, progress=typer.echo)
    except ZooError as err:
        _fail(str(err))


# {run}: the demo's run id. A catalog keeps every run; an edited spec is a new run beside the old.
DEMO_QUERIES = (
    "SELECT class_name, attribute, round(lift, 2) AS lift, round(low, 2) AS low, "
    "round(high, 2) AS high FROM class_shortcuts WHERE run_id = '{run}' AND finding",
    "SELECT class_name, shortcuts, object_in_explanation FROM class_summary WHERE run_id = '{run}'",
    "SELECT unit, class_name, verdict, round(mean_kept, 2) AS kept FROM unit_summary "
    "WHERE run_id = '{run}'",
    "SELECT target_id, probe, rate FROM probe_rates WHERE run_id = '{run}' AND rate >= 0.5 "
    "ORDER BY rate DESC",
    "SELECT run_id, status, count(*) FROM explanations GROUP BY ALL",
)


@app.command()
def demo(
    spec_path: Path = typer.Option(
        None,
        "--spec",
        help="The audit to run (default: pipelines/toy.yaml, or the installed copy).",
    ),
    out: Path = typer.Option(None, help="The HTML report (default: <catalog>/report.html)."),
    limit: int = typer.Option(
        None, min=1, help="Compute at most this many targets (a partial run; rerun to finish)."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", help="Also show what Ray and the models print (always in the log)."
    ),
) -> None:
    """What `make demo` runs: the toy-world audit through Ray, its catalog and HTML report.
    What Ray and the models print goes to <catalog>/logs/demo-<time>.log.

    Example: dxray demo
    """
    import logging

    from dxray.report.page import write_report
    from dxray.spec.model import SpecError
    from dxray.toyworld.demo import demo_spec

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        spec = demo_spec(spec_path)
    except (SpecError, OSError) as err:
        _fail(str(err))
    zoo = Path(str(spec.classifier.source)).parent
    if not zoo.is_dir():
        _fail(f"the toy zoo is missing at {zoo}: train it with `dxray zoo train --out {zoo}`")

    summary = _run_quietly(spec, "demo", verbose, limit=limit)
    report = write_report(summary.catalog, out or summary.catalog / "report.html", summary.run_id)
    typer.echo("")
    typer.echo(
        f"audit {summary.run_id}: {summary.total} targets ({summary.computed} computed now, "
        f"{summary.skipped} already in the catalog) in {summary.seconds:.0f} s"
    )
    _echo_answer(summary)
    typer.echo("")
    typer.echo(f"catalog: {summary.catalog}")
    typer.echo(f"report:  {report}")
    typer.echo("explore it with SQL, e.g.:")
    for query in DEMO_QUERIES:
        typer.echo(f'  .venv/bin/dxray sql {summary.catalog} "{query.format(run=summary.run_id)}"')


if __name__ == "__main__":
    main()
