"""`dxray sweep`: the evaluation over many random toy worlds, resumable, one folder per world.

    dxray sweep pipelines/toy.yaml --worlds 8 --seed 1        # sweeps/seed-1/world-{0..7}/

Per world k of sweep S (`dxray.toyworld.random_worlds.random_world(S, k)`), in
`<out>/seed-<S>/world-<k>/`:

1. `world.yaml` (the world config) and `zoo.json` (the world, and the base zoo's generator,
   segmenter and oracle, shared: they only know how things look);
2. `classifier/` trained with the committed zoos' recipe (`SweepSettings.classifier`);
   `classifier-fixed/` too with `fixed`;
3. `truth/` (and `truth-fixed/`): `write_zoo_truth`, units.csv included;
4. the audit (`catalog/`, not committed): every class and every truth unit, `seeds` seeds
   each, with the class-shortcut test on the world's vocabulary (`eval_spec`);
5. `result.json`: every (class, factor) pair's truth and the test's lift, finding and
   object-free explanation readout; every truth unit's label and the audit's verdict (each
   seed's too); timings; the key of the settings it was made with.

Each step is skipped when its output is there: a killed sweep picks up where it stopped (the
audit resumes from its catalog), and a committed `result.json` whose key matches the
settings is read, not redone. `sweep_scoring.py` scores a world from its catalog,
`sweep_table.py` pools the worlds' results, `sweep_text.py` prints the table and the SWEEP line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dxray.catalog.writer import json_safe
from dxray.eval.sweep_scoring import score_world
from dxray.spec.model import AuditSpec
from dxray.spec.parse import with_overrides
from dxray.toyworld.train_classifier import ToyClassifierConfig

RESULT_FILE = "result.json"
STABILITY_FILE = "stability.json"
# Reruns of one world's audit that change only how it runs, never what it computes (the spec
# hash leaves them out): do the verdicts stay? (issue #20, "stable verdicts")
STABILITY_VARIANTS: dict[str, dict[str, object]] = {
    "batch 7": {"engine.batch_size": 7},  # other batch compositions, in another order
    "threads 2": {"ray.num_cpus_per_worker": 2},  # the worker's torch threads
    "workers 2": {"ray.workers": 2},  # the rows split over two actors
}
WORLD_FILE = "world.yaml"
SHARED_PARTS = ("generator", "segmenter", "oracle")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class SweepSettings:
    """What every world of a sweep is trained, measured and audited with."""

    seeds: int = 1  # noise seeds per target: a cost setting (the eval's ablation: units
    # agree 94% / 93% / 94% with 1 / 2 / 4 seeds on the default world)
    threads: int = 1  # torch threads of the trainer and of each Ray worker
    # Ray workers of the audits (not in the key: batches are cut the same whatever the number,
    # so it changes no result). Two, as the toy spec: each takes a core. (Until 2026-12-05 the
    # stability rerun "threads 2" then needed 4 CPUs of an embedded Ray started with 2, and
    # waited forever for its second host; the session now starts Ray again, larger.)
    workers: int = 2
    classifier: ToyClassifierConfig = field(
        default_factory=lambda: ToyClassifierConfig(hide_object=0.1)  # the committed zoos'
    )
    classifier_seed: int = 0
    truth_n: int = 500  # scenes per truth measurement (`dxray zoo truth`'s default)
    truth_k: int = 5  # units per class and per planted tie (the committed truths')
    # ... plus every unit the truth labels spurious among each class's and each planted tie's
    # top `spurious_k` (selection "wide"): a world's top-5 hold 0-3 spurious units, too few
    # to pool 20 over 8 worlds (docs/EVALUATION.md, "The sweep"). 0: none.
    spurious_k: int = 20
    fixed: bool = False  # also train (and measure) each world's fixed release

    def key(self, spec: AuditSpec) -> str:
        """What a world's result depends on besides its world: these settings and the spec's
        engine, judge and shortcut sections (not where or how wide it runs)."""
        content = spec.to_dict()
        engine = {k: v for k, v in content["engine"].items() if k != "batch_size"}
        shortcuts = {k: v for k, v in content["shortcuts"].items() if k != "batch_size"}
        data = {
            "settings": asdict(self) | {"threads": None, "workers": None},
            "engine": engine,
            "judge": content["judge"],
            "shortcuts": shortcuts,
        }
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def world_dir(out: str | Path, seed: int, index: int) -> Path:
    return Path(out) / f"seed-{seed}" / f"world-{index}"


# ---------------------------------------------------------------------------------------------
# One world
# ---------------------------------------------------------------------------------------------


def prepare_world(folder: Path, seed: int, index: int, base_zoo: Path) -> Path:
    """world.yaml and zoo.json (sharing the base zoo's generator, segmenter and oracle, by
    paths relative to the folder). An existing world.yaml must be the one (seed, index) makes."""
    from dxray.toyworld.random_worlds import random_world, write_world
    from dxray.toyworld.world import load_world
    from dxray.toyworld.zoo import MANIFEST_FILE, has_part, zoo_part, zoo_world

    base_world = zoo_world(base_zoo)
    world = random_world(seed, index, base=base_world)
    path = folder / WORLD_FILE
    if path.is_file():
        if load_world(path) != load_world_like(world, path):
            raise ValueError(
                f"{path} is not world {index} of sweep {seed}: remove the folder {folder} "
                "to make it afresh"
            )
    else:
        write_world(world, path)
    shared = {
        part: os.path.relpath(zoo_part(base_zoo, part), folder)
        for part in SHARED_PARTS
        if has_part(base_zoo, part)
    }
    manifest = {"world": WORLD_FILE, "shared": shared}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def load_world_like(world, path: Path):
    """`world` as `load_world(path)` would return it (its `source` is the file)."""
    from dataclasses import replace

    return replace(world, source=str(path))


def train_world(folder: Path, settings: SweepSettings, progress: Progress) -> float:
    """The world's classifier (and fixed release), unless trained; returns seconds spent."""
    from dataclasses import replace

    from dxray.toyworld.run_settings import RunSettings
    from dxray.toyworld.train_classifier import TRAINING_FILE, train_classifier
    from dxray.toyworld.zoo import zoo_world

    world = zoo_world(folder)
    started = time.perf_counter()
    modes = ("biased", "fixed") if settings.fixed else ("biased",)
    for mode in modes:
        out = folder / ("classifier" if mode == "biased" else "classifier-fixed")
        if (out / TRAINING_FILE).is_file():
            continue
        progress(f"{folder.name}: training the {mode} classifier")
        train_classifier(
            world,
            out,
            replace(settings.classifier, mode=mode),
            RunSettings(seed=settings.classifier_seed),
        )
    return time.perf_counter() - started


def truth_world(folder: Path, settings: SweepSettings, progress: Progress) -> float:
    """The world's ground truth (truth/, units.csv), unless measured with these settings;
    returns seconds spent."""
    from dxray.toyworld.zoo import TRUTH_RECORD, write_zoo_truth

    wanted = ["truth"] + (["truth-fixed"] if settings.fixed else [])
    record = folder / "truth" / TRUTH_RECORD
    if all((folder / t / TRUTH_RECORD).is_file() for t in wanted) and (
        json.loads(record.read_text()).get("spurious_k", 0) == settings.spurious_k
    ):
        return 0.0
    started = time.perf_counter()
    progress(f"{folder.name}: measuring the truth")
    write_zoo_truth(folder, n=settings.truth_n, k=settings.truth_k)
    if settings.spurious_k > settings.truth_k:
        add_spurious_units(folder, settings)
    return time.perf_counter() - started


def add_spurious_units(folder: Path, settings: SweepSettings) -> int:
    """Add to truth/ (and its units.csv) every unit that the truth, measured with k =
    `spurious_k`, labels spurious and the k = `truth_k` table does not list, with selection
    "wide". The labels are the same measurement (same scenes, same rule); only which units
    are listed grows. Returns how many were added."""
    import pyarrow as pa

    from dxray.models.classifier_io import load_classifier
    from dxray.toyworld.data import class_names
    from dxray.toyworld.truth import NEURON_TRUTH_SCHEMA, compute_truth
    from dxray.toyworld.truth_io import read_truth, write_truth
    from dxray.toyworld.zoo import TRUTH_RECORD, zoo_world

    world = zoo_world(folder)
    out = folder / "truth"
    class_table, neurons = read_truth(out)
    listed = {(r["class"], r["unit"]) for r in neurons.to_pylist()}
    _, wide = compute_truth(
        world,
        load_classifier(folder / "classifier"),
        n=settings.truth_n,
        k=settings.spurious_k,
    )
    extra = [
        r | {"selection": "wide"}
        for r in wide.to_pylist()
        if r["label"] == "spurious" and (r["class"], r["unit"]) not in listed
    ]
    merged = pa.Table.from_pylist(neurons.to_pylist() + extra, schema=NEURON_TRUTH_SCHEMA)
    write_truth(out, class_table, merged, classes=class_names(world))
    record = json.loads((out / TRUTH_RECORD).read_text())
    record |= {"spurious_k": settings.spurious_k, "wide_units": len(extra)}
    (out / TRUTH_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return len(extra)


def sweep_spec(spec: AuditSpec, folder: Path, settings: SweepSettings) -> AuditSpec:
    """The world's audit: `eval_spec` (every class, every truth unit, the shortcut test on the
    world's vocabulary) with `settings.seeds` seeds, in the world's catalog, on
    `settings.workers` Ray workers of `settings.threads` threads."""
    from dxray.eval.specs import eval_spec

    audit = eval_spec(spec, folder, seeds=settings.seeds, catalog=folder / "catalog")
    return with_overrides(
        audit,
        **{
            "name": "sweep",
            "ray.workers": settings.workers,
            "ray.num_cpus_per_worker": settings.threads,
        },
    )


def audit_world(spec: AuditSpec, progress: Progress) -> tuple[str, float]:
    """Run (or resume) the world's audit; (run id, seconds)."""
    from dxray.run.pipeline import run_audit

    started = time.perf_counter()
    last = [0.0]

    def tick(done: int, total: int, statuses) -> None:
        if time.perf_counter() - last[0] > 60 or done == total:
            last[0] = time.perf_counter()
            progress(f"  audit: {done}/{total} targets")

    # A world's run that other dxray code began is computed again, not mixed with this code's
    summary = run_audit(spec, progress=tick, resume="fresh-if-stale")
    if summary.status != "finished":
        raise RuntimeError(
            f"the audit of {spec.output.catalog} is {summary.status}: {summary.error}"
        )
    return summary.run_id, time.perf_counter() - started


def rescore_world(folder: Path) -> dict | None:
    """Score a finished world again from its catalog (after a change of the scoring, not of
    the audit), keeping its key and timings; None when it has no result or no catalog."""
    result = read_result(folder)
    if result is None or not (folder / "catalog").is_dir():
        return None
    result |= score_world(folder, result["run_id"])
    _write_json(folder / RESULT_FILE, result)
    return result


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(json_safe(data, digits=6), indent=1, sort_keys=False) + "\n")
    tmp.replace(path)


def read_result(folder: Path, key: str | None = None) -> dict | None:
    """The world's result.json, or None when there is none (or it was made with another key)."""
    path = folder / RESULT_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if key is not None and data.get("key") != key:
        return None
    return data


def run_world(
    spec: AuditSpec,
    out: Path,
    seed: int,
    index: int,
    base_zoo: Path,
    settings: SweepSettings,
    progress: Progress,
) -> dict:
    """Every step of one world, skipping what is done; returns its result."""
    folder = world_dir(out, seed, index)
    key = settings.key(spec)
    cached = read_result(folder, key)
    if cached is not None:
        progress(f"{folder}: done (result.json)")
        return cached
    folder.mkdir(parents=True, exist_ok=True)
    prepare_world(folder, seed, index, base_zoo)
    train_world(folder, settings, progress)
    truth_world(folder, settings, progress)
    seconds = {}
    progress(f"{folder.name}: auditing")
    run_id, seconds["audit"] = audit_world(sweep_spec(spec, folder, settings), progress)
    result = score_world(folder, run_id)
    seconds = _recorded_seconds(folder) | {"audit": seconds["audit"]}
    result |= {
        "seed": seed,
        "index": index,
        "key": key,
        "settings": asdict(settings),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }
    _write_json(folder / RESULT_FILE, result)
    progress(f"{folder.name}: wrote {folder / RESULT_FILE}")
    return result


def stability_world(
    spec: AuditSpec,
    folder: Path,
    settings: SweepSettings,
    progress: Progress,
    variants: dict[str, dict[str, object]] = STABILITY_VARIANTS,
    *,
    refresh: bool = False,
) -> dict:
    """Rerun the world's audit (classes and units, without the shortcut test) once per
    variant, each into its own catalog, and compare every (target, seed) verdict with the
    world's main run (`verdict_changes`). Cached in stability.json by the settings' key;
    `refresh` recompares the reruns still in their catalogs."""
    from dxray.eval.reads import read_run
    from dxray.eval.sweep_table import verdict_changes

    key = settings.key(spec)
    path = folder / STABILITY_FILE
    done = json.loads(path.read_text()) if path.is_file() else {}
    if done.get("key") != key:
        done = {"key": key, "variants": {}}
    main = read_result(folder, key)
    if main is None:
        raise ValueError(f"{folder} has no result.json of these settings: run its sweep first")
    reference, _, _ = read_run(folder / "catalog", main["run_id"])
    for name, overrides in variants.items():
        slug = name.replace(" ", "-")
        catalog = folder / f"catalog-{slug}"
        if name in done["variants"]:
            if not refresh or not catalog.is_dir():
                continue
            # a variant changes none of what the run id hashes: the main run's id, by default
            run_id = done["variants"][name].get("run_id", main["run_id"])
            seconds = done["variants"][name]["seconds"]
        else:
            progress(f"{folder.name}: stability rerun [{name}]")
            variant = with_overrides(
                sweep_spec(spec, folder, settings),
                **overrides,
                **{"output.catalog": str(catalog), "shortcuts.enabled": False},
            )
            run_id, seconds = audit_world(variant, progress)
        rerun, _, _ = read_run(catalog, run_id)
        done["variants"][name] = verdict_changes(reference, rerun) | {
            "seconds": round(seconds),
            "run_id": run_id,
        }
        _write_json(path, done)
    return done


def _recorded_seconds(folder: Path) -> dict[str, float]:
    """Training and truth seconds as their records hold them (a resumed world spent none)."""
    from dxray.toyworld.train_classifier import TRAINING_FILE
    from dxray.toyworld.zoo import TRUTH_RECORD

    out = {}
    for name, path, field_ in (
        ("train", folder / "classifier" / TRAINING_FILE, "wall_seconds"),
        ("truth", folder / "truth" / TRUTH_RECORD, "seconds"),
    ):
        try:
            out[name] = float(json.loads(path.read_text())[field_])
        except (OSError, ValueError, KeyError):
            out[name] = math.nan
    return out


def run_sweep(
    spec: AuditSpec,
    *,
    out: str | Path,
    seed: int,
    worlds: int,
    base_zoo: str | Path,
    settings: SweepSettings = SweepSettings(),
    stability: int | None = 0,
    progress: Progress = print,
) -> list[dict]:
    """Worlds 0..`worlds`-1 of sweep `seed` (see the module docstring), in order, and the
    stability reruns of world `stability` (None: none) right after it; one Ray for all the
    audits. Returns every world's result."""
    import torch

    from dxray.run.session import ray_session

    if worlds < 1:
        raise ValueError(f"worlds must be >= 1, got {worlds}")
    out, base_zoo = Path(out), Path(base_zoo)
    torch.set_num_threads(settings.threads)
    key = settings.key(spec)
    results: list[dict] = []
    with ray_session(spec):  # one Ray for all the audits, started only when one runs
        for index in range(worlds):
            folder = world_dir(out, seed, index)
            rerun = index == stability and _stability_missing(folder, key)
            results.append(run_world(spec, out, seed, index, base_zoo, settings, progress))
            if rerun:
                stability_world(spec, folder, settings, progress)
    return results


def _stability_missing(folder: Path, key: str) -> bool:
    path = folder / STABILITY_FILE
    if not path.is_file():
        return True
    done = json.loads(path.read_text())
    return done.get("key") != key or set(done["variants"]) != set(STABILITY_VARIANTS)


def read_stability(out: str | Path, seed: int) -> list[dict]:
    """Every stability.json of sweep `seed`: one row per (world, variant)."""
    rows = []
    for path in sorted((Path(out) / f"seed-{seed}").glob(f"world-*/{STABILITY_FILE}")):
        for name, changes in json.loads(path.read_text())["variants"].items():
            rows.append({"world": path.parent.name, "variant": name, **changes})
    return rows


def read_sweep(out: str | Path, seed: int) -> list[dict]:
    """Every finished world's result of sweep `seed` under `out`, by index."""
    root = Path(out) / f"seed-{seed}"
    found = []
    for folder in sorted(root.glob("world-*"), key=lambda p: int(p.name.split("-")[1])):
        data = read_result(folder)
        if data is not None:
            found.append(data)
    return found
