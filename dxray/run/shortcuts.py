"""The shortcut stage of an audit: render the vocabulary on the workers, score on the driver.

    renders --Session.map("renders")--> the model hosts (dxray.run.session, dxray.run.host)
            --> CatalogWriter.write("shortcut_images")   (one file per batch)
    shortcut_images --dxray.shortcuts.score.lift_rows--> CatalogWriter.write("shortcuts")

1. the object-free renders (every scene alone, every overlay on every scene, `seeds` each),
   and for the unit-shortcut test (`shortcuts.units`) each unit class's object on every scene;
   every render reports the channel means of the run's unit layers then;
2. a first scoring: which (class, attribute) pairs are findings;
3. the with-object renders for those classes (or all, or none: `shortcuts.with_object`);
4. the final scoring, written as one `shortcuts` batch with a new score id, and the unit
   test's rows (`unit_shortcuts`, dxray.shortcuts.unit_score) under the same score id.
A render already in the catalog is never rendered again (resume); scoring is cheap and reads
only the renders the current vocabulary asks for.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from dxray.catalog.writer import CatalogWriter, part_files
from dxray.run.progress import LogProgress, Progress
from dxray.run.worker import png
from dxray.shortcuts.score import FindingRule, lift_rows
from dxray.shortcuts.unit_score import UnitRule, UnitTarget, unit_rows
from dxray.shortcuts.vocabulary import (
    Render,
    object_free_renders,
    parse_vocabulary,
    with_object_renders,
)
from dxray.spec.model import AuditSpec

if TYPE_CHECKING:
    from dxray.run.host import ModelHost

log = logging.getLogger("dxray.audit")

JOB_KEYS = ("render_id", "variant", "scene", "overlay", "class_index", "class_name", "prompt",
            "seed", "attribute", "unit_layers")  # fmt: skip
SCORING_COLUMNS = ("render_id", "variant", "scene", "overlay", "class_index", "seed", "status",
                   "logits", "created_at")  # fmt: skip


@dataclass
class ShortcutSummary:
    renders: int = 0  # images the vocabulary asks for (both variants)
    rendered: int = 0  # ... rendered in this session (the rest were in the catalog)
    statuses: Counter = field(default_factory=Counter)  # of all renders
    findings: list[tuple[str, str, float]] = field(default_factory=list)  # class, attribute, lift
    # the unit-shortcut test's spurious units: class, unit, factor, margin
    spurious_units: list[tuple[str, str, str, float]] = field(default_factory=list)
    units_tested: int = 0
    # what the object-free explanations single out: class, attribute, rate in its images
    candidates: list[tuple[str, str, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # vocabulary entries skipped, and why
    notes: list[str] = field(default_factory=list)  # attributes without enough usable images


# ---------------------------------------------------------------------------------------------
# On the workers: the stages "renders" and "pool" of a model host (dxray.run.host)
# ---------------------------------------------------------------------------------------------


def render_batch(host: ModelHost, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Render text jobs (`_job`) and check the images: the vocabulary's object-free renders
    and the with-object ones."""
    from dxray.shortcuts.render import check_images, render_text

    started = time.perf_counter()
    layers = json.loads(jobs[0].get("unit_layers") or "[]")
    images = render_text(
        host.generator, [j["prompt"] for j in jobs], [int(j["seed"]) for j in jobs],
        _sampler(host.spec), batch_size=len(jobs),
    )  # fmt: skip
    checked = check_images(
        host.classifier,
        host.segmenter,
        images,
        [j["attribute"] for j in jobs],
        _object_queries(host),
        own_object=[j["class_index"] for j in jobs],
        top_k=_top_k(host.spec),
        layers=layers,
    )
    seconds = (time.perf_counter() - started) / len(jobs)
    return [
        _render_row(
            job,
            host.name,
            status=checked.status[i],
            object_presence=float(checked.object_presence[i]),
            object_query=checked.object_query[i],
            attribute_presence=float(checked.attribute_presence[i]),
            logits=checked.logits[i].tolist(),
            # JSON through Ray Data, like the pool's probes; None when no unit is tested
            unit_means=json.dumps({k: v[i].tolist() for k, v in checked.units.items()})
            if layers
            else None,
            png=png(images[i]),
            seconds=seconds,
        )
        for i, job in enumerate(jobs)
    ]


def render_error_row(job: dict[str, Any], error: str, worker: str) -> dict[str, Any]:
    """The row of a render whose batch failed."""
    return _render_row(job, worker, status="error", error=error)


def _render_row(job: dict[str, Any], worker: str, **result) -> dict[str, Any]:
    empty = dict.fromkeys(("error", "object_presence", "object_query", "attribute_presence",
                           "logits", "unit_means", "png", "seconds"))  # fmt: skip
    row = {k: v for k, v in job.items() if k not in ("attribute", "unit_layers")}
    return {**row, **empty, **result, "worker": worker}


def pool_batch(host: ModelHost, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Render pool members (object-free explanations: `pool_plan`'s jobs), erase their
    objects, and score every class and attribute on what is left."""
    import torch

    from dxray.explain.prompt import nearest_words
    from dxray.shortcuts.discover import render_pool
    from dxray.shortcuts.erase import ObjectEraser

    started = time.perf_counter()
    spec, g = host.spec, host.generator
    attributes = [a.name for a in parse_vocabulary(spec.shortcuts.entries(spec.judge))[0]]
    # The engine's random start for each seed, through the engine's template: what an
    # explanation of that seed would begin from
    vectors, images = render_pool(
        g, [int(j["seed"]) for j in jobs], template=spec.engine.template,
        n_vectors=spec.engine.n_vectors, config=_sampler(spec),
    )  # fmt: skip
    queries = _objects_to_erase(host, images)
    eraser = ObjectEraser(host.segmenter, queries, fill=spec.shortcuts.fill)
    with torch.no_grad():
        erased = eraser(images)
        x = torch.cat([images, erased]).to(host.segmenter.device, host.segmenter.dtype)
        scores = host.segmenter.probe(x, queries + attributes).float().cpu()
        logits = host.classifier.outputs(erased.to(host.classifier.device)).logits
    n, q = len(jobs), len(queries)
    before, after = scores[:n, :q].amax(1), scores[n:, :q].amax(1)
    probes = scores[n:, q:]
    words = nearest_words(g.tokenizer, g.text_encoder, vectors.to(g.dtype), 1)
    seconds = (time.perf_counter() - started) / n
    return [
        _pool_row(
            job,
            host.name,
            status="object" if float(after[i]) >= 0.5 else "kept",
            object_presence=float(before[i]),
            left_presence=float(after[i]),
            erased_fraction=float(eraser.last_masks[i].float().mean()),
            logits=logits[i].float().cpu().tolist(),
            # JSON through Ray Data (a map column does not survive its numpy batches)
            probe_scores=json.dumps({a: float(probes[i, j]) for j, a in enumerate(attributes)}),
            words=json.dumps([[w for w, _ in vector] for vector in words[i]]),
            png=png(_thumbnail(erased[i])),
            seconds=seconds,
        )
        for i, job in enumerate(jobs)
    ]


def pool_error_row(job: dict[str, Any], error: str, worker: str) -> dict[str, Any]:
    """The row of a pool member whose batch failed."""
    return _pool_row(job, worker, status="error", error=error)


def _pool_row(job: dict[str, Any], worker: str, **result) -> dict[str, Any]:
    empty = dict.fromkeys(
        ("error", "object_presence", "left_presence", "erased_fraction", "logits",
         "probe_scores", "words", "png", "seconds")
    )  # fmt: skip
    return {**job, **empty, **result, "worker": worker}


def _sampler(spec: AuditSpec):
    """The engine's sampler, with the shortcut test's guidance if it sets one."""
    from dxray.explain.sampler import SamplerConfig

    sampler = dataclasses.asdict(spec.engine.sampler)
    if spec.shortcuts.guidance_scale is not None:
        sampler["guidance_scale"] = spec.shortcuts.guidance_scale
    return SamplerConfig(**sampler)


def _top_k(spec: AuditSpec) -> int | None:
    """How many of the classifier's likeliest classes an image is checked for (None: all)."""
    objects = spec.shortcuts.objects
    return None if objects == "all" else int(objects)


def _object_queries(host: ModelHost) -> list[str]:
    return [host.spec.judge.object_query(n) for n in host.classifier.class_names]


def _objects_to_erase(host: ModelHost, images) -> list[str]:
    """Every class's object query, or with `objects: k` those of the classes among the
    classifier's k likeliest on any of these images."""
    queries, top_k = _object_queries(host), _top_k(host.spec)
    if top_k is None:
        return queries
    import torch

    with torch.no_grad():
        logits = host.classifier.outputs(images.to(host.classifier.device)).logits
    k = min(top_k, logits.shape[1])
    classes = sorted(set(logits.topk(k, dim=1).indices.flatten().tolist()))
    return [queries[c] for c in classes]


def _thumbnail(image, side: int = 128):
    """An image [3, H, W] at most `side` pixels wide (pool images are many; the report shows
    a few of them small)."""
    import torch.nn.functional as F

    if max(image.shape[-2:]) <= side:
        return image
    return F.interpolate(image[None], size=(side, side), mode="area")[0]


# ---------------------------------------------------------------------------------------------
# On the driver: what to render, in which order, and the scoring
# ---------------------------------------------------------------------------------------------

Part = tuple[str, list[dict[str, Any]], int]  # (host stage, jobs, batch size)


class ShortcutTest:
    """The class-shortcut test of one run on the driver, in the order of the module docstring:

        test = ShortcutTest(spec, run_id, writer, class_names, progress)
        parts = test.first_parts()        # 1. the object-free renders and the pool, not yet
        ...                               #    in the catalog: serve them (with the run's other
        test.take(stage, rows)            #    independent work), each batch handed back here
        summary = test.finish(execute)    # 2.-4. scoring, with-object renders, final scoring

    `execute(stage, jobs, batch_size)` yields lists of result rows as the hosts return them
    (`dxray.run.session.Session.map`); `progress` gets a bar per part: "vocabulary renders",
    "pool renders", "unit-test renders", "with-object renders"."""

    def __init__(
        self,
        spec: AuditSpec,
        run_id: str,
        writer: CatalogWriter,
        class_names: Sequence[str],
        progress: Progress | None = None,
        units: Sequence[UnitTarget] = (),
    ):
        self.spec, self.run_id, self.writer = spec, run_id, writer
        self.class_names = list(class_names)
        # The unit-shortcut test's units (the run's units audited for a class) and the layers
        # every render reports channel means of
        self.units = list(units) if spec.shortcuts.units else []
        self.layers = sorted({u.layer for u in self.units})
        self.progress = progress or LogProgress()
        self.summary = ShortcutSummary()
        sc = spec.shortcuts
        self.attributes, self.summary.problems = parse_vocabulary(sc.entries(spec.judge))
        for problem in self.summary.problems:
            log.warning("shortcuts: %s", problem)
        self.plan = vocabulary_plan(spec)
        self.unit_plan = (
            object_on_scenes_plan(spec, class_names, {u.class_index for u in self.units})
            if self.units and self.attributes
            else []
        )
        self.pool = pool_plan(spec) if sc.pool and self.attributes else []
        self._bars: dict[str, list[int]] = {}  # bar -> [done, total]
        self._bar_of: dict[str, str] = {}  # render id -> its bar

    def first_parts(self) -> list[Part]:
        """The object-free renders and the pool members the catalog lacks: they depend on
        nothing, so they may share a pipeline with the targets."""
        parts = [self._missing_renders(self.plan, "vocabulary renders")]
        if self.unit_plan:
            parts.append(self._missing_renders(self.unit_plan, "unit-test renders"))
        done = _done(self.writer, self.run_id, "shortcut_pool")
        todo = [j for j in self.pool if j["render_id"] not in done]
        if todo:
            self._bar("pool renders", len(self.pool) - len(todo), len(self.pool))
            parts.append(("pool", todo, self.spec.shortcuts.batch_size))
        return [part for part in parts if part[1]]

    def take(self, stage: str, rows: list[dict[str, Any]]) -> None:
        """Write a batch of results that a host returned for one of this test's parts."""
        if stage == "pool":
            for row in rows:
                row["probe_scores"] = list(json.loads(row["probe_scores"] or "{}").items())
            self.writer.write("shortcut_pool", rows, self.run_id)
            self._advance("pool renders", len(rows))
            return
        for row in rows:
            if row.get("unit_means") is not None:
                row["unit_means"] = list(json.loads(row["unit_means"]).items())
        self.writer.write("shortcut_images", rows, self.run_id)
        self.summary.rendered += len(rows)
        counts = Counter(self._bar_of.get(r["render_id"], "vocabulary renders") for r in rows)
        for bar, n in counts.items():
            self._advance(bar, n)

    def finish(self, execute: Callable[[str, list[dict], int], Iterable[list[dict]]]):
        """Score the object-free renders, read the pool's candidates, render the with-object
        variants the findings ask for, score again and write the scoring; the summary."""
        sc, summary, names = self.spec.shortcuts, self.summary, self.class_names
        rule = FindingRule(sc.min_lift, sc.confidence, sc.min_images)
        # 2. The first scoring: which (class, attribute) pairs are findings
        plan = list(self.plan)
        scored = _rendered(self.writer, self.run_id, plan)
        rows = lift_rows(scored, self.attributes, len(names), rule)
        # 2b. Object-free explanations: each class's top images of the shared pool
        candidate_rows = []
        if self.pool:
            wanted = {j["render_id"] for j in self.pool}
            candidate_rows = _candidates(self.writer, self.run_id, wanted, self.attributes, sc)
            if not candidate_rows:
                summary.problems.append(
                    f"object-free explanations: none of the {sc.pool} pool images was free of "
                    "objects after erasing (the segmenter still found one in each): no "
                    "candidates. Check the segmenter's object masks on a few images of the "
                    "shortcut_pool table."
                )
            summary.candidates = [
                (names[r["class_index"]], r["attribute"], r["rate"])
                for r in candidate_rows
                if r["candidate"]
            ]
        # 3. The with-object renders for the chosen classes; 4. the final scoring
        if sc.with_object != "none" and self.attributes:
            findings = {r["class_index"] for r in rows if r["finding"]}
            more = with_object_plan(self.spec, names, findings)
            if more:
                stage, jobs, size = self._missing_renders(more, "with-object renders")
                for batch in execute(stage, jobs, size):
                    self.take(stage, batch)
                plan += more
                scored = _rendered(self.writer, self.run_id, plan)
                rows = lift_rows(scored, self.attributes, len(names), rule)
        summary.renders = len(plan) + len({r.key for r in self.unit_plan} - {r.key for r in plan})
        summary.statuses = Counter(r["status"] for r in scored)
        score_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        _write_scores(
            self.writer, self.run_id, score_id, rows, names, summary.problems, candidate_rows
        )
        if self.units:
            self._score_units(score_id, plan, rows)
        summary.notes = sorted(
            {f"{r['attribute']}: {r['note']}" for r in rows
             if r["note"] and r["method"] == "object_free"}
        )  # fmt: skip
        for note in summary.notes:
            log.warning("shortcuts: %s", note)
        summary.findings = [
            (names[r["class_index"]], r["attribute"], r["lift"])
            for r in rows
            if r["finding"] and r["method"] == "object_free"
        ]
        return summary

    def _score_units(self, score_id: str, plan: list[Render], rows: list[dict]) -> None:
        """The unit-shortcut test on the renders of `plan` and the unit plan; its rows."""
        keys = {r.key for r in plan} | {r.key for r in self.unit_plan}
        columns = (*SCORING_COLUMNS, "unit_means")
        renders = _latest(self.writer, self.run_id, "shortcut_images", keys, columns)
        findings: dict[int, list[str]] = {}
        for r in rows:
            if r["finding"] and r["method"] == "object_free":
                findings.setdefault(r["class_index"], []).append(r["attribute"])
        sc = self.spec.shortcuts
        out = unit_rows(
            renders, self.units, self.attributes, findings, UnitRule(sc.confidence, sc.min_images)
        )
        self.summary.units_tested = len(out)
        self.summary.spurious_units = [
            (self.class_names[r["class_index"]], r["unit"], r["factor"], r["margin"])
            for r in out
            if r["verdict"] == "spurious"
        ]
        if out:
            self.writer.write(
                "unit_shortcuts",
                [{**r, "run_id": self.run_id, "score_id": score_id,
                  "class_name": self.class_names[r["class_index"]]} for r in out],
                self.run_id,
            )  # fmt: skip

    def _missing_renders(self, plan: list[Render], bar: str) -> Part:
        """The renders of `plan` the catalog lacks (or, with the unit test, has without the
        units' channel means: rendered again), as a part with its own bar."""
        if self.layers:
            done = _done_with_units(self.writer, self.run_id)
        else:
            done = _done(self.writer, self.run_id, "shortcut_images")
        layers = json.dumps(self.layers) if self.layers else None
        todo = [_job(r, self.class_names, layers) for r in plan if r.key not in done]
        if todo:
            self._bar(bar, len(plan) - len(todo), len(plan))
            self._bar_of.update((job["render_id"], bar) for job in todo)
        return "renders", todo, self.spec.shortcuts.batch_size

    def _bar(self, name: str, done: int, total: int) -> None:
        self._bars[name] = [done, total]
        self.progress.stage(name, done, total)

    def _advance(self, name: str, n: int) -> None:
        if n and name in self._bars:
            bar = self._bars[name]
            bar[0] += n
            self.progress.stage(name, *bar)


def run_shortcuts(
    spec: AuditSpec,
    run_id: str,
    writer: CatalogWriter,
    class_names: Sequence[str],
    execute: Callable[[str, list[dict], int], Iterable[list[dict]]],
    progress: Progress | None = None,
) -> ShortcutSummary:
    """The whole test, its parts one after the other (`run_audit` serves the first parts in
    one pipeline with the targets instead)."""
    test = ShortcutTest(spec, run_id, writer, class_names, progress)
    for stage, jobs, size in test.first_parts():
        for rows in execute(stage, jobs, size):
            test.take(stage, rows)
    return test.finish(execute)


def _tag(spec: AuditSpec) -> str:
    """Settings outside the prompt that change an image: they go into its render id, so a
    resume never reuses an image rendered otherwise."""
    g = spec.shortcuts.guidance_scale
    return "" if g is None else f"guidance={g:g}"


def vocabulary_plan(spec: AuditSpec) -> list[Render]:
    """The object-free renders the spec's vocabulary asks for."""
    sc = spec.shortcuts
    attributes, _ = parse_vocabulary(sc.entries(spec.judge))
    return object_free_renders(attributes, sc.template, range(sc.seeds), _tag(spec))


def with_object_plan(
    spec: AuditSpec, class_names: Sequence[str], findings: set[int]
) -> list[Render]:
    """The with-object renders: for the classes with a finding (`with_object: findings`),
    every class ("all") or none."""
    sc = spec.shortcuts
    attributes, _ = parse_vocabulary(sc.entries(spec.judge))
    if sc.with_object == "none" or not attributes:
        return []
    chosen = range(len(class_names)) if sc.with_object == "all" else sorted(findings)
    objects = {c: spec.judge.object_query(class_names[c]) for c in chosen}
    return with_object_renders(attributes, sc.template, range(sc.seeds), objects, _tag(spec))


def pool_plan(spec: AuditSpec) -> list[dict[str, Any]]:
    """The pool of object-free explanations: one job per seed; the id holds what shapes the
    image (the engine's template and prompt length, the guidance)."""
    engine = spec.engine
    key = f"pool|{engine.template}|{engine.n_vectors}|{_tag(spec)}"
    return [{"render_id": f"{key}|{seed}", "seed": seed} for seed in range(spec.shortcuts.pool)]


def object_on_scenes_plan(
    spec: AuditSpec, class_names: Sequence[str], classes: set[int]
) -> list[Render]:
    """The unit test's with-object renders: each class's object on every scene, no overlay
    (the same renders, by key, as the with-object variant's)."""
    sc = spec.shortcuts
    attributes, _ = parse_vocabulary(sc.entries(spec.judge))
    objects = {c: spec.judge.object_query(class_names[c]) for c in sorted(classes)}
    renders = with_object_renders(attributes, sc.template, range(sc.seeds), objects, _tag(spec))
    return [r for r in renders if r.overlay is None]


def _job(render: Render, class_names: Sequence[str], unit_layers: str | None) -> dict[str, Any]:
    index = render.class_index
    return {
        "render_id": render.key,
        "variant": render.variant,
        "scene": render.scene,
        "overlay": render.overlay,
        "class_index": index,
        "class_name": None if index is None else class_names[index],
        "prompt": render.prompt,
        "seed": render.seed,
        "attribute": render.attribute,
        "unit_layers": unit_layers,  # JSON list of layers to report channel means of, or None
    }


def _done(writer: CatalogWriter, run_id: str, table: str) -> set[str]:
    """Render ids of `run_id` in `table` with a usable result (an "error" is retried)."""
    return {key for (key,) in writer.usable_keys(table, run_id, ("render_id",))}


def _done_with_units(writer: CatalogWriter, run_id: str) -> set[str]:
    """Render ids of `run_id` with a usable row that carries the units' channel means."""
    done: set[str] = set()
    for path in part_files(writer.root, "shortcut_images", run_id):
        if "unit_means" not in pq.read_schema(path).names:
            continue
        table = pq.read_table(path, columns=["render_id", "status", "unit_means"]).to_pylist()
        done.update(r["render_id"] for r in table if r["status"] != "error" and r["unit_means"])
    return done


def _rendered(writer: CatalogWriter, run_id: str, plan: list[Render]) -> list[dict]:
    """The latest usable row of every render in `plan` (the png is not read)."""
    return _latest(writer, run_id, "shortcut_images", {r.key for r in plan}, SCORING_COLUMNS)


def _latest(writer, run_id, table: str, wanted: set[str], columns) -> list[dict]:
    """Per render id in `wanted`: its latest row, a usable one before an error; in render id
    order, so that the bootstrap's resamples (drawn by index) do not depend on the order of
    the catalog's files, whose names are random."""
    best: dict[str, dict] = {}
    for path in part_files(writer.root, table, run_id):
        names = set(pq.read_schema(path).names)  # files of older versions lack new columns
        read = pq.read_table(path, columns=[c for c in columns if c in names]).to_pylist()
        for row in ({c: r.get(c) for c in columns} for r in read):
            key = row["render_id"]
            if key not in wanted:
                continue
            rank = (row["status"] != "error", row["created_at"])
            held = best.get(key)
            if held is None or rank > (held["status"] != "error", held["created_at"]):
                best[key] = row
    return [best[key] for key in sorted(best)]


def _candidates(writer, run_id, wanted: set[str], attributes, sc) -> list[dict]:
    """The candidate rows of the pool's latest usable images (see `discover.candidates`)."""
    import torch

    from dxray.shortcuts.discover import candidates
    from dxray.shortcuts.score import centred

    rows = _latest(writer, run_id, "shortcut_pool", wanted,
                   ["render_id", "status", "logits", "probe_scores", "created_at"])  # fmt: skip
    rows = [r for r in rows if r["status"] != "error"]
    if not rows:
        return []
    names = [a.name for a in attributes]
    z = centred(torch.tensor([r["logits"] for r in rows], dtype=torch.float64))
    presence = torch.tensor(
        [[dict(r["probe_scores"]).get(a, 0.0) for a in names] for r in rows], dtype=torch.float64
    )
    usable = torch.tensor([r["status"] == "kept" for r in rows])
    out = candidates(z, presence, names, top=sc.top, usable=usable)
    for r in out:
        r["chosen"] = [rows[i]["render_id"] for i in r["chosen"]]
    return out


def _write_scores(writer, run_id, score_id, rows, class_names, problems, candidate_rows=()):
    if candidate_rows:
        writer.write(
            "shortcut_candidates",
            [{**r, "run_id": run_id, "score_id": score_id,
              "class_name": class_names[r["class_index"]]} for r in candidate_rows],
            run_id,
        )  # fmt: skip
    out = [
        {**r, "score_id": score_id, "class_name": class_names[r["class_index"]], "run_id": run_id}
        for r in rows
    ]
    out += [
        {"run_id": run_id, "score_id": score_id, "attribute": _entry_label(p),
         "method": "vocabulary", "note": p}
        for p in problems
    ]  # fmt: skip
    if out:
        writer.write("shortcuts", out, run_id)


def _entry_label(problem: str) -> str:
    """The `attribute` a problem is filed under: "attribute [3]" for a skipped entry,
    "object-free explanations" for the pool's, else "vocabulary"."""
    if " skipped:" in problem:
        return problem.split(" skipped:")[0]
    if problem.startswith("object-free explanations:"):
        return "object-free explanations"
    return "vocabulary"
