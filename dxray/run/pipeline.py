"""The audit pipeline: spec -> targets -> Ray Data -> model hosts -> catalog.

    targets + object-free renders + pool --Session.map_stages--> ModelHost actors (one per
        worker) --> CatalogWriter                (one Parquet file per worker batch)
    then the shortcut test's scoring and with-object renders on the same hosts

`dxray.run.session` holds the Ray side: one Ray Data pipeline per stage, feeding model hosts
that load the generator, the classifier and the segmenter once and serve every stage.

The same code runs embedded (`ray.init` inside this process, the laptop default) and on a
cluster (`ray.address: auto` inside `ray job submit`, or an explicit address). A run resumes:
(target, seed) pairs already in the catalog are skipped, so a killed driver costs at most the
batches in flight, and a rerun of the same spec completes it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from dxray.catalog.schema import ROW_KEYS, payload_columns
from dxray.catalog.writer import SUPERSEDED_DIR, CatalogWriter, recorded_versions
from dxray.run.checkpoints import classifier_sha256
from dxray.run.lock import FileLock
from dxray.run.preflight import check_before_models
from dxray.run.progress import LogProgress, Progress
from dxray.run.provenance import Resume, StaleRun, check_resume, provenance, stale_reason
from dxray.run.session import ray_session
from dxray.run.shortcuts import ShortcutSummary, ShortcutTest
from dxray.run.targets import by_work, expand_targets, work_key
from dxray.shortcuts.unit_score import UnitTarget
from dxray.spec.model import AuditSpec, SpecError
from dxray.spec.unit_csv import read_units

log = logging.getLogger("dxray.audit")
STALE_LOCK_HOURS = 6.0  # a lock whose audit has written nothing for this long is taken over

# What a worker's result row carries for the verdicts and images tables (the schema's columns)
VERDICT_KEYS = payload_columns("verdicts")
IMAGE_KEYS = payload_columns("images")


@dataclass
class AuditSummary:
    run_id: str
    catalog: Path
    total: int  # (target, seed) rows the spec asks for
    skipped: int  # already in the catalog (resume)
    statuses: Counter = field(default_factory=Counter)  # of the rows computed now
    seconds: float = 0.0
    shortcuts: ShortcutSummary | None = None  # the class-shortcut test, when the spec has it
    # models the workers loaded, by role (generator, classifier, segmenter), every stage; in a
    # scan's or an evaluation's session, since its hosts started
    model_loads: Counter = field(default_factory=Counter)
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
        # The listed and CSV units and the ranked layer first: a typo is refused in a second,
        # not after the generator has loaded for the ranking
        units = spec.targets.units
        unranked = dataclasses.replace(
            spec,
            targets=dataclasses.replace(spec.targets, units=dataclasses.replace(units, top_k=0)),
        )
        check_units(classifier, expand_targets(unranked, classifier.class_names, run_id), spec)
        if units.layer is not None:  # None: the layer that feeds the head, found by ranking
            check_units(classifier, [{"kind": "unit", "layer": units.layer, "channel": 0}], spec)
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


def class_units(targets: list[dict]) -> list[UnitTarget]:
    """The run's units audited for a class (the unit-shortcut test's), each once."""
    units = {
        UnitTarget(int(t["class_index"]), t["layer"], int(t["channel"]))
        for t in targets
        if t["kind"] == "unit" and t["class_index"] is not None
    }
    return sorted(units, key=lambda u: (u.class_index, u.layer, u.channel))


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
    stages: Progress | None = None,
    resume: Resume = "check",
) -> AuditSummary:
    """Run (or resume) the audit `spec` describes; returns what was computed. `progress(done,
    total, statuses)` follows the targets; `stages` gets what the run will do and a bar per
    stage (`dxray.run.progress`; default: log lines). `resume`: what to do with the rows of
    an earlier run of the same id (`dxray.run.provenance`: by default they are resumed if
    this dxray code computed them, and the run is refused with StaleRun if not)."""
    started = time.perf_counter()
    check_resume(resume)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit is a number of targets >= 1, got {limit!r}")
    stages = stages or LogProgress()
    catalog = Path(spec.output.catalog)
    writer = CatalogWriter(catalog)
    # 1. Plan: the run id and its target rows (the driver loads only what planning needs)
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
        # 2. Skip what the catalog already has, if this code and these models computed it;
        #    record the run
        made_by = provenance(spec)
        aside = _earlier_rows(writer, run_id, resume, made_by)
        done = writer.done_keys(run_id)
        todo = [t for t in targets if (t["target_id"], int(t["seed"])) not in done]
        summary = AuditSummary(
            run_id, catalog, total=len(targets), skipped=len(targets) - len(todo)
        )
        todo = todo if limit is None else todo[:limit]  # a partial run; a rerun completes it
        writer.write_run(
            run_id,
            name=spec.name,
            spec_yaml=spec.to_yaml(),
            generator=_describe(spec.generator.source),
            classifier=_describe(spec.classifier.source),
            classifier_sha256=sha,
            segmenter=_describe(spec.segmenter.source),
            num_targets=len(targets),
            versions={**recorded_versions(), **made_by},
        )
        labels = label_rows(spec, targets)
        if labels:
            writer.write("labels", labels, run_id)
        shortcuts = spec.shortcuts.enabled and limit is None
        stages.plan(
            describe_plan(
                spec,
                run_id,
                len(targets),
                summary.skipped,
                len(todo),
                shortcuts,
                shared=len(todo) - len({work_key(t) for t in todo}),
            )  # fmt: skip
            + (f"\n  {aside}" if aside else "")
        )
        try:
            with ray_session(spec) as session:
                test = (
                    ShortcutTest(
                        spec, run_id, writer, class_names, stages, units=class_units(targets)
                    )
                    if shortcuts
                    else None
                )
                # 3. Every stage that needs nothing from another, in one pipeline through the
                #    model hosts: the targets (first: their batches are the longest), the
                #    shortcut test's object-free renders and its pool. Each batch is written as
                #    it comes back.
                if todo:
                    stages.stage("targets", summary.skipped, summary.total)
                parts = [("targets", by_work(todo), spec.engine.batch_size, work_key)]
                parts += test.first_parts() if test is not None else []
                for stage, rows in session.map_stages(spec, parts, classifier_sha256=sha):
                    lock.heartbeat()  # the lock is alive while batches come back
                    if stage != "targets":
                        test.take(stage, rows)
                        continue
                    explanations, verdicts, images = split_rows(rows)
                    writer.write_batch(run_id, explanations, verdicts, images)
                    summary.statuses.update(r["status"] for r in explanations)
                    done_now = summary.skipped + summary.computed
                    stages.stage("targets", done_now, summary.total)
                    if progress is not None:
                        progress(done_now, summary.total, summary.statuses)
                # 4. What needs them: the shortcut test's scoring, then the with-object renders
                #    its findings ask for, on the same hosts (dxray/run/shortcuts.py)
                if test is not None:
                    summary.shortcuts = test.finish(
                        partial(session.map, spec, classifier_sha256=sha)
                    )
                summary.model_loads = session.model_loads()
                if summary.model_loads:
                    log.info(
                        "run %s: models loaded on %d worker(s): %s", run_id, session.workers,
                        ", ".join(f"{role} {n}" for role, n in sorted(summary.model_loads.items())),
                    )  # fmt: skip
        except BaseException as err:
            writer.finish_run(run_id, "failed", error=f"{type(err).__name__}: {err}"[:2000])
            raise
        summary.seconds = time.perf_counter() - started
        summary.status, summary.error = _outcome(writer, run_id, targets)
        writer.finish_run(run_id, summary.status, wall_seconds=summary.seconds, error=summary.error)
        return summary
    finally:
        lock.release()


def _earlier_rows(
    writer: CatalogWriter, run_id: str, resume: Resume, made_by: dict[str, str]
) -> str | None:
    """Apply `resume` to the run's earlier rows (`dxray.run.provenance`; `made_by`: this
    run's `provenance`): keep them, move them aside (returns the line that says where), or
    refuse with StaleRun."""
    earlier = writer.latest_run(run_id)
    if earlier is None or resume == "any":
        return None
    stale = stale_reason(earlier, made_by)
    if resume == "check" and stale:
        raise StaleRun(
            f"run {run_id} in {writer.root} was {stale}: resuming it would mix rows of both. "
            "Rerun with --fresh to compute it again (its rows move to "
            f"{writer.root / SUPERSEDED_DIR}/), or --resume-stale to keep them."
        )
    if resume == "fresh" or (resume == "fresh-if-stale" and stale):
        label = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        moved = writer.move_run_aside(run_id, label)
        why = f", {stale}," if stale else ""
        return f"its earlier rows{why} moved to {moved}" if moved else None
    return None


def describe_plan(
    spec: AuditSpec,
    run_id: str,
    total: int,
    skipped: int,
    todo: int,
    shortcuts: bool,
    *,
    shared: int = 0,
) -> str:
    """The line an audit starts with: what it will compute, and where. `shared`: targets to
    compute whose optimisation another one does (`dxray.run.targets.work_key`)."""
    r = spec.ray
    where = "embedded Ray" if r.address is None else f"Ray at {r.address}"
    each = f"{r.num_cpus_per_worker} CPU" + (
        f", {r.num_gpus_per_worker:g} GPU" if r.num_gpus_per_worker else ""
    )
    text = f"run {run_id}: {todo} of {total} targets to compute ({skipped} in the catalog)"
    if shared:
        text += f", {todo - shared} optimisations (a unit shared by classes is optimised once)"
    if shortcuts:
        from dxray.run.shortcut_plans import pool_plan, vocabulary_plan

        sc = spec.shortcuts
        pool = f", a pool of {len(pool_plan(spec))} object-free explanations" if sc.pool else ""
        beside = {"findings": ", with-object renders for the classes with a finding",
                  "all": ", with-object renders for every class", "none": ""}[sc.with_object]  # fmt: skip
        u = spec.targets.units
        units = ", the unit-shortcut test" if sc.units and (u.top_k or u.csv) else ""
        text += (
            f"; class-shortcut test: {len(vocabulary_plan(spec))} vocabulary renders{pool}{beside}"
            f"{units}"
        )
    return text + f"; {r.workers} worker(s) of {each} on {where}"


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


def split_rows(rows: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """A worker batch's rows as the catalog's (explanations, verdicts, images) rows."""
    explanations, verdicts, images = [], [], []
    for row in rows:
        key = {k: row[k] for k in ROW_KEYS}
        explanations.append({k: v for k, v in row.items() if k not in VERDICT_KEYS + IMAGE_KEYS})
        if row["status"] != "error":
            verdict = {k: row[k] for k in VERDICT_KEYS}
            verdict["probe_scores"] = list(json.loads(row["probe_scores"] or "{}").items())
            verdicts.append({**key, **verdict})
        if row.get("png") is not None:
            images.append({**key, "png": row["png"], "mask_png": row["mask_png"]})
    return explanations, verdicts, images


def _describe(source: Any) -> str:
    return source if isinstance(source, str) else json.dumps(source, sort_keys=True)
