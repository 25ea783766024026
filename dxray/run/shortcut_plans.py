"""What the class-shortcut test renders, and what the catalog already holds of it.

    plan = vocabulary_plan(spec)                  # the object-free renders
    more = with_object_plan(spec, names, {0, 2})  # the with-object renders of classes 0 and 2
    jobs = [render_job(r, names, None) for r in plan]   # rows for the hosts (shortcut_renders)
    done = done_renders(writer, run_id, "shortcut_images")

Every render has a key (variant, scene, overlay, class, prompt, settings, seed): a resume
skips the keys the catalog has. Used by the driver's test (dxray.run.shortcuts) and the
evaluation's readout (dxray.eval.shortcut_scoring).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow.parquet as pq

from dxray.catalog.writer import CatalogWriter, part_files
from dxray.shortcuts.vocabulary import (
    Render,
    object_free_renders,
    parse_vocabulary,
    with_object_renders,
)
from dxray.spec.model import AuditSpec

JOB_KEYS = ("render_id", "variant", "scene", "overlay", "class_index", "class_name", "prompt",
            "seed", "attribute", "unit_layers")  # fmt: skip
SCORING_COLUMNS = ("render_id", "variant", "scene", "overlay", "class_index", "seed", "status",
                   "logits", "created_at")  # fmt: skip


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
    """The unit test's with-object renders: each class's object on every scene with the first
    `unit_seeds` seeds, no overlay (the same renders, by key, as the with-object variant's)."""
    sc = spec.shortcuts
    attributes, _ = parse_vocabulary(sc.entries(spec.judge))
    objects = {c: spec.judge.object_query(class_names[c]) for c in sorted(classes)}
    seeds = range(sc.unit_object_seeds)
    renders = with_object_renders(attributes, sc.template, seeds, objects, _tag(spec))
    return [r for r in renders if r.overlay is None]


def render_job(
    render: Render, class_names: Sequence[str], unit_layers: str | None = None
) -> dict[str, Any]:
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


def done_renders(writer: CatalogWriter, run_id: str, table: str) -> set[str]:
    """Render ids of `run_id` in `table` with a usable result (an "error" is retried)."""
    return {key for (key,) in writer.usable_keys(table, run_id, ("render_id",))}


def done_renders_with_units(writer: CatalogWriter, run_id: str) -> set[str]:
    """Render ids of `run_id` with a usable row that carries the units' channel means."""
    done: set[str] = set()
    for path in part_files(writer.root, "shortcut_images", run_id):
        if "unit_means" not in pq.read_schema(path).names:
            continue
        table = pq.read_table(path, columns=["render_id", "status", "unit_means"]).to_pylist()
        done.update(r["render_id"] for r in table if r["status"] != "error" and r["unit_means"])
    return done


def rendered_rows(writer: CatalogWriter, run_id: str, plan: list[Render]) -> list[dict]:
    """The latest usable row of every render in `plan` (the png is not read)."""
    return latest_rows(writer, run_id, "shortcut_images", {r.key for r in plan}, SCORING_COLUMNS)


def latest_rows(writer, run_id, table: str, wanted: set[str], columns) -> list[dict]:
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
