"""The shortcut stage of an audit: render the vocabulary on the workers, score on the driver.

    renders --Session.map("renders")--> the model hosts (dxray.run.session, dxray.run.host,
            dxray.run.shortcut_renders; the plans: dxray.run.shortcut_plans)
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

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dxray.catalog.writer import CatalogWriter
from dxray.run.progress import LogProgress, Progress
from dxray.run.shortcut_plans import (
    SCORING_COLUMNS,
    done_renders,
    done_renders_with_units,
    latest_rows,
    object_on_scenes_plan,
    pool_plan,
    render_job,
    rendered_rows,
    vocabulary_plan,
    with_object_plan,
)
from dxray.shortcuts.score import FindingRule, lift_rows
from dxray.shortcuts.unit_score import UnitRule, UnitTarget, unit_rows
from dxray.shortcuts.vocabulary import (
    Render,
    parse_vocabulary,
)
from dxray.spec.model import AuditSpec

if TYPE_CHECKING:
    pass

log = logging.getLogger("dxray.audit")


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
        done = done_renders(self.writer, self.run_id, "shortcut_pool")
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
        scored = rendered_rows(self.writer, self.run_id, plan)
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
                scored = rendered_rows(self.writer, self.run_id, plan)
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
        renders = latest_rows(self.writer, self.run_id, "shortcut_images", keys, columns)
        findings: dict[int, list[str]] = {}
        for r in rows:
            if r["finding"] and r["method"] == "object_free":
                findings.setdefault(r["class_index"], []).append(r["attribute"])
        sc = self.spec.shortcuts
        out = unit_rows(
            renders, self.units, self.attributes, findings, UnitRule(sc.confidence, sc.min_images),
            object_seeds=sc.unit_object_seeds,
        )  # fmt: skip
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
            done = done_renders_with_units(self.writer, self.run_id)
        else:
            done = done_renders(self.writer, self.run_id, "shortcut_images")
        layers = json.dumps(self.layers) if self.layers else None
        todo = [render_job(r, self.class_names, layers) for r in plan if r.key not in done]
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


def _candidates(writer, run_id, wanted: set[str], attributes, sc) -> list[dict]:
    """The candidate rows of the pool's latest usable images (see `discover.candidates`)."""
    import torch

    from dxray.shortcuts.discover import candidates
    from dxray.shortcuts.score import centred

    rows = latest_rows(writer, run_id, "shortcut_pool", wanted,
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
