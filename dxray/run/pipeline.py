"""The audit pipeline: spec -> targets -> Ray Data -> AuditWorker actors -> catalog.

    targets --from_items--> map_batches(AuditWorker, ActorPoolStrategy(size=n), batch_size=B)
            --iter_batches--> CatalogWriter.write_batch   (one Parquet file per worker batch)

The same code runs embedded (`ray.init` inside this process, the laptop default) and on a
cluster (`ray.address: auto` inside `ray job submit`, or an explicit address). A run resumes:
(target, seed) pairs already in the catalog are skipped, so a killed driver costs at most the
batches in flight, and a rerun of the same spec completes it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dxray.catalog.writer import CatalogWriter
from dxray.run.checkpoints import classifier_sha256
from dxray.run.lock import FileLock
from dxray.run.preflight import check_before_models
from dxray.run.shortcuts import ShortcutSummary, run_shortcuts
from dxray.run.targets import expand_targets
from dxray.run.worker import AuditWorker
from dxray.spec.model import AuditSpec, SpecError
from dxray.spec.unit_csv import read_units

log = logging.getLogger("dxray.audit")
STALE_LOCK_HOURS = 6.0  # a lock whose audit has written nothing for this long is taken over

VERDICT_KEYS = (
    "object_query",
    "presence",
    "verdict",
    "judged_by",
    "kept",
    "activation",
    "activation_without_objects",
    "probe_scores",
)
IMAGE_KEYS = ("png", "mask_png")


@dataclass
class AuditSummary:
    run_id: str
    catalog: Path
    total: int  # (target, seed) rows the spec asks for
    skipped: int  # already in the catalog (resume)
    statuses: Counter = field(default_factory=Counter)  # of the rows computed now
    seconds: float = 0.0
    shortcuts: ShortcutSummary | None = None  # the class-shortcut test, when the spec has it
    status: str = "running"  # at the end: finished | partial | failed (see `_outcome`)
    error: str | None = None  # with partial or failed: what is left and what to do

    @property
    def computed(self) -> int:
        return sum(self.statuses.values())


def plan(spec: AuditSpec) -> tuple[str, list[dict], str, list[str]]:
    """(run_id, every target row, classifier sha256, its class names). Loads the classifier on the CPU for its
    class names, and the generator too when units are ranked (top_k)."""
    import torch

    from dxray.models.classifier_io import load_classifier

    classifier = load_classifier(spec.classifier.source)
    sha = classifier_sha256(spec.classifier.source)
    run_id = spec.run_id_for(sha)
    ranking = None
    if spec.targets.units.top_k:
        from dxray.models.generator import load_generator
        from dxray.run.ranking import rank_class_units

        generator = load_generator(spec.generator.source, tiny_decoder=spec.generator.tiny_decoder)
        prompts = [spec.judge.object_query(name) for name in classifier.class_names]
        units = spec.targets.units
        ranked = rank_class_units(classifier, generator, prompts, units.top_k, units.layer)
        del generator
        torch.cuda.empty_cache() if torch.cuda.is_available() else None

        def ranking(class_index: int, k: int) -> list[tuple[str, int]]:
            return ranked[class_index][:k]

    targets = expand_targets(spec, classifier.class_names, run_id, unit_ranking=ranking)
    check_units(classifier, targets, spec)
    return run_id, targets, sha, list(classifier.class_names)


def check_units(classifier, targets: list[dict], spec: AuditSpec) -> None:
    """Every unit target exists in the classifier (layer, channel in range), checked when the
    run is planned: before Ray starts and before anything is written."""
    bad: dict[str, str] = {}
    for t in targets:
        if t["kind"] != "unit":
            continue
        unit = f"{t['layer']}:{t['channel']}"
        if unit in bad:
            continue
        try:
            classifier.check_unit(t["layer"], int(t["channel"]))
        except (KeyError, ValueError) as err:
            bad[unit] = str(err).strip("'\"").splitlines()[0]
    if bad:
        where = str(spec.source_path) if spec.source_path is not None else "the spec"
        listed = "; ".join(f"{u}: {why}" for u, why in list(bad.items())[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise SpecError(
            f"{where}: targets.units: {len(bad)} unit(s) are not in the classifier: {listed}"
            f"{more}. Fix the units (or the CSV's feature indices and targets.units.layer)."
        )


def run_audit(
    spec: AuditSpec,
    *,
    progress: Callable[[int, int, Counter], None] | None = None,
    limit: int | None = None,
) -> AuditSummary:
    """Run (or resume) the audit `spec` describes; returns what was computed."""
    started = time.perf_counter()
    catalog = Path(spec.output.catalog)
    writer = CatalogWriter(catalog)
    # 1. Plan: the run id and its target rows; skip what the catalog already has
    check_before_models(spec)  # the unit CSV, the catalog, the model files: one-line errors
    run_id, targets, sha, class_names = plan(spec)
    # One audit of a run at a time: a second one started meanwhile refuses, writing nothing
    catalog.mkdir(parents=True, exist_ok=True)
    lock = FileLock(
        catalog / f".run-{run_id}.lock", stale_after_s=STALE_LOCK_HOURS * 3600,
        what=f"audit of run {run_id}", consequence="this audit computes nothing",
    )  # fmt: skip
    lock.acquire()
    try:
        return _run_locked(spec, writer, run_id, targets, sha, class_names, lock, progress,
                           limit, started)  # fmt: skip
    finally:
        lock.release()


def _run_locked(spec, writer, run_id, targets, sha, class_names, lock, progress, limit, started):
    catalog = writer.root
    done = writer.done_keys(run_id)
    todo = [t for t in targets if (t["target_id"], int(t["seed"])) not in done]
    summary = AuditSummary(run_id, catalog, total=len(targets), skipped=len(targets) - len(todo))
    if limit is not None:  # a partial run (tests, dry runs); a rerun completes it
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit is a number of targets >= 1, got {limit!r}")
        todo = todo[:limit]
    writer.write_run(
        run_id,
        name=spec.name,
        spec_yaml=spec.to_yaml(),
        generator=_describe(spec.generator.source),
        classifier=_describe(spec.classifier.source),
        classifier_sha256=sha,
        segmenter=_describe(spec.segmenter.source),
        num_targets=len(targets),
    )
    labels = label_rows(spec, targets)
    if labels:
        writer.write("labels", labels, run_id)
    log.info(
        "run %s: %d targets, %d already done, %d to do", run_id, len(targets), len(done), len(todo)
    )
    started_ray = False
    try:
        # 2. Fan the targets out to the workers; write each batch as it comes back
        if todo or spec.shortcuts.enabled:
            started_ray = ensure_ray(spec)
        if todo:
            for rows in _execute(spec, AuditWorker, todo, spec.engine.batch_size):
                explanations, verdicts, images = split_rows(rows)
                writer.write_batch(run_id, explanations, verdicts, images)
                lock.heartbeat()
                summary.statuses.update(r["status"] for r in explanations)
                if progress is not None:
                    progress(summary.skipped + summary.computed, summary.total, summary.statuses)
        # 3. The class-shortcut test: images shared by every class (dxray/run/shortcuts.py)
        if spec.shortcuts.enabled and limit is None:
            execute = lambda worker, jobs, size: _execute(spec, worker, jobs, size)  # noqa: E731
            summary.shortcuts = run_shortcuts(spec, run_id, writer, class_names, execute)
    except BaseException as err:
        writer.finish_run(run_id, "failed", error=f"{type(err).__name__}: {err}"[:2000])
        raise
    finally:
        if started_ray:
            stop_ray()
    summary.seconds = time.perf_counter() - started
    summary.status, summary.error = _outcome(writer, run_id, targets)
    writer.finish_run(run_id, summary.status, wall_seconds=summary.seconds, error=summary.error)
    return summary


def _outcome(writer: CatalogWriter, run_id: str, targets: list[dict]) -> tuple[str, str | None]:
    """The run's honest status: "partial" while a planned target has no row (a --limit run),
    "failed" while one has only errors, else "finished"; with the error text saying what to do."""
    planned = {(t["target_id"], int(t["seed"])) for t in targets}
    rows = writer.done_keys(run_id, retry=())
    missing = planned - rows
    errored = (planned & rows) - writer.done_keys(run_id)
    if missing:
        return "partial", (
            f"{len(missing)} of {len(planned)} targets not computed yet: rerun the same command "
            "to complete the run"
        )
    if errored:
        return "failed", (
            f"{len(errored)} of {len(planned)} targets failed (SELECT target_id, seed, error "
            "FROM audit WHERE status = 'error'); rerun the same command to retry them"
        )
    return "finished", None


def label_rows(spec: AuditSpec, targets: list[dict]) -> list[dict]:
    """The human labels of the spec's unit CSV for the units this run audits (none when the
    CSV has no labels)."""
    table = read_units(spec)
    if table is None or not table.labelled:
        return []
    layer = spec.targets.units.layer
    audited = {
        (t["class_index"], t["channel"]): t["class_name"]
        for t in targets
        if t["kind"] == "unit" and t["layer"] == layer
    }
    rows = []
    for u in table.units:
        name = audited.get((u.class_index, u.feature_index))
        if name is None or u.label is None:
            continue
        rows.append(
            {
                "source": table.format,
                "file": table.path.name,
                "class_index": u.class_index,
                "class_name": name,
                "layer": layer,
                "channel": u.feature_index,
                "rank": u.rank,
                "wordnet_id": u.wordnet_id,
                "label": u.label,
                "votes_main_object": u.votes.get("main_object"),
                "votes_separate_object": u.votes.get("separate_object"),
                "votes_background": u.votes.get("background"),
                "answers": u.answers or None,
            }
        )
    return rows


def _execute(spec: AuditSpec, worker: type, todo: list[dict], batch_size: int):
    """Yield lists of result rows, one list per worker batch, as they complete. Ray must be
    running (`ensure_ray`)."""
    import ray

    r = spec.ray
    batch = max(1, batch_size)
    dataset = ray.data.from_items(todo, override_num_blocks=max(1, -(-len(todo) // batch)))
    results = dataset.map_batches(
        worker,
        fn_constructor_kwargs={"spec": spec.to_dict(), "threads": r.num_cpus_per_worker},
        compute=ray.data.ActorPoolStrategy(size=r.workers),
        batch_size=batch,
        batch_format="numpy",
        num_cpus=r.num_cpus_per_worker,
        num_gpus=r.num_gpus_per_worker or None,
        # A worker that dies (preempted node, OOM kill) is restarted and its batch retried.
        max_restarts=r.max_retries,
        max_task_retries=r.max_retries,
    )
    for columns in results.iter_batches(batch_size=None, batch_format="numpy"):
        n = len(next(iter(columns.values())))
        yield [{k: _py(v[i]) for k, v in columns.items()} for i in range(n)]


# The temp folder of the Ray this process started (embedded), removed by `stop_ray`.
ray_temp_dir: str | None = None


def stop_ray() -> None:
    """Shut down the Ray this process started and remove its temp folder (sessions, logs,
    sockets), so that audits leave nothing behind in the system's temp directory."""
    import ray

    global ray_temp_dir
    ray.shutdown()
    if ray_temp_dir is not None:
        shutil.rmtree(ray_temp_dir, ignore_errors=True)
        ray_temp_dir = None


def ensure_ray(spec: AuditSpec) -> bool:
    """Connect to the spec's cluster, or start Ray inside this process. True if started here
    (then `stop_ray` ends it)."""
    global ray_temp_dir
    import ray

    if ray.is_initialized():
        return False
    address = spec.ray.address
    if address is None and os.environ.get("RAY_ADDRESS"):
        address = "auto"  # inside `ray job submit`
    if address is not None:
        ray.init(address=address, log_to_driver=True)
        return True
    needed = spec.ray.workers * spec.ray.num_cpus_per_worker
    # Loopback only, and a temp dir of our own: an embedded run must not attach to (or
    # advertise) anything else on this machine. Measured on Ray 2.60: with a loopback node
    # address alone, the GCS, raylet and workers still listen on every interface and the
    # agents on the host's address too, because Ray decides "single machine" from
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER, read when `ray` is imported. Its child processes
    # read the variable; this process has read it already, so its constant is set too.
    _loopback_only()
    ray_temp_dir = tempfile.mkdtemp(prefix="dxray-ray-")
    ray.init(
        address="local",
        _node_ip_address="127.0.0.1",
        _temp_dir=ray_temp_dir,
        include_dashboard=False,
        num_cpus=max(needed, os.cpu_count() or 1),
        num_gpus=None,
        log_to_driver=True,
    )
    return True


def _loopback_only() -> None:
    """Make the Ray about to start here listen on 127.0.0.1 only (see `ensure_ray`)."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def split_rows(rows: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """A worker batch's rows as the catalog's (explanations, verdicts, images) rows."""
    explanations, verdicts, images = [], [], []
    for row in rows:
        key = {k: row[k] for k in ("run_id", "target_id", "seed")}
        explanations.append({k: v for k, v in row.items() if k not in VERDICT_KEYS + IMAGE_KEYS})
        if row["status"] != "error":
            verdict = {k: row[k] for k in VERDICT_KEYS}
            verdict["probe_scores"] = list(json.loads(row["probe_scores"] or "{}").items())
            verdicts.append({**key, **verdict})
        if row.get("png") is not None:
            images.append({**key, "png": row["png"], "mask_png": row["mask_png"]})
    return explanations, verdicts, images


def _py(value: Any) -> Any:
    """Ray Data's numpy batches -> plain Python. A None in a column may come back as NaN (the
    worker never emits NaN itself: non-finite numbers are written as None)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _describe(source: Any) -> str:
    return source if isinstance(source, str) else json.dumps(source, sort_keys=True)
