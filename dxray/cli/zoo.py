"""`dxray zoo train | check | truth`: the toy world's model zoo."""

from __future__ import annotations

from pathlib import Path

import typer

from dxray.cli.common import fail

zoo_app = typer.Typer(no_args_is_help=True, help="The toy world's model zoo.")
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
        fail(str(err))
    chosen = {p.strip() for p in parts.split(",") if p.strip()}
    unknown = chosen - {"classifiers", "segmenter", "generator"}
    if unknown:
        fail(f"unknown part(s) {sorted(unknown)}: use classifiers, segmenter, generator")
    if generator_preset not in ("default", "tiny"):
        fail(f"--generator-preset {generator_preset!r}: use default or tiny")

    def given(**values):  # the options set, so that the configs' defaults fill the rest
        return {k: v for k, v in values.items() if v is not None}

    from dxray.toyworld.generator_training.config import (
        GeneratorTrainingConfig,
        ToyGeneratorConfig,
    )
    from dxray.toyworld.run_settings import RunSettings
    from dxray.toyworld.segmenter_training.config import ToySegmenterConfig
    from dxray.toyworld.train_classifier import (
        ToyClassifierConfig,
        ToyOracleConfig,
        ZooClassifiersConfig,
    )

    # One config per trainer and the settings they share: every config checks itself before
    # anything trains.
    try:
        classifiers = ZooClassifiersConfig(
            classifier=ToyClassifierConfig(
                **given(steps=classifier_steps, hide_object=hide_object)
            ),
            oracle=ToyOracleConfig(**given(steps=oracle_steps)),
            truth_n=truth_n,
            gate_n=gate_n,
        )
        segmenter = ToySegmenterConfig(
            **given(
                steps=segmenter_steps,
                seconds=segmenter_seconds,
                # One batch size whatever the device: the CPU's and CUDA's defaults differ.
                batch_size=segmenter_batch_size,
                cuda_batch_size=segmenter_batch_size,
                extra_object_negatives=segmenter_extra_object_negatives,
                save_every=segmenter_save_every,
                init=segmenter_init,
            )
        )
    except ValueError as err:
        fail(str(err))
    generator = GeneratorTrainingConfig(
        ToyGeneratorConfig.tiny() if generator_preset == "tiny" else ToyGeneratorConfig(),
        seconds=generator_seconds,
        max_steps=generator_max_steps,
        batch_size=generator_batch_size,
        pool_size=generator_pool_size,
        workers=generator_workers,
        resume=not generator_fresh,
        log_every=generator_log_every,
        checkpoint_every=generator_checkpoint_every,
        cuda_graphs=generator_cuda_graphs,
    )
    run = RunSettings(seed=seed, device=device, threads=threads, progress=typer.echo)
    out.mkdir(parents=True, exist_ok=True)
    if "classifiers" in chosen:
        from dxray.toyworld.train_classifier import train_zoo_classifiers

        train_zoo_classifiers(w, out, classifiers, run)
    if "segmenter" in chosen:
        from dxray.toyworld.segmenter_training.loop import train_segmenter

        train_segmenter(w, out, segmenter, run)
    if "generator" in chosen:
        import shutil

        from dxray.toyworld.generator_training.loop import train_generator
        from dxray.toyworld.generator_training.samples import write_sample_grid

        scratch = out / ".generator-training"  # checkpoint.pt: large, resumable, not committed
        report = train_generator(w, scratch, generator, run)
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
        fail(str(err))
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
        fail(str(err))
