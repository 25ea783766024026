"""The targets stage: explain and judge a batch of target rows on a model host.

    rows = target_batch(host, target_rows)   # one result row per target row, in order

`host` is a `dxray.run.host.ModelHost` (its generator, classifier, segmenter and spec); the
host splits a batch that fails and gives the row that causes it `target_error_row`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dxray.catalog.schema import payload_columns
from dxray.explain.optimize import ExplainResult, explain
from dxray.judge.verdict import verdicts
from dxray.run.targets import TARGET_KEYS, objective_for, work_key

if TYPE_CHECKING:
    from dxray.run.host import ModelHost

# Fault injection for tests: target ids (comma-separated) whose explanation raises, as a
# target that runs out of memory would.
FAIL_TARGETS_ENV = "DXRAY_TEST_FAIL_TARGETS"


def target_batch(host: ModelHost, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Explain `rows` together, then judge each image: presence for classes, the intervention
    for units (as the spec's judge says)."""
    failing = set(filter(None, os.environ.get(FAIL_TARGETS_ENV, "").split(",")))
    if failing & {r["target_id"] for r in rows}:
        raise RuntimeError("injected failure (" + FAIL_TARGETS_ENV + ")")
    started = time.perf_counter()
    # One optimisation per distinct (objective, seed): a unit ranked for two classes is
    # explained once and judged for each (its rows differ only in their class).
    keys = [work_key(row) for row in rows]
    works: dict[tuple[str, int], dict[str, Any]] = {}  # work key -> its first row
    for key, row in zip(keys, rows, strict=True):
        works.setdefault(key, row)
    position = {key: i for i, key in enumerate(works)}
    with host.timed("explain"):
        explained = explain(
            host.generator, host.classifier,
            [objective_for(host.spec, row) for row in works.values()],
            [int(row["seed"]) for row in works.values()],
            host.spec.engine.to_explain_config(),
        )  # fmt: skip
    result = _fanned_out(explained, [position[key] for key in keys])
    seconds = (time.perf_counter() - started) / len(rows)
    images = result.images
    judge = host.spec.judge
    queries = [
        judge.object_query(r["class_name"]) if r["class_name"] is not None else None for r in rows
    ]
    with torch.no_grad():
        device_images = images.to(host.segmenter.device, host.segmenter.dtype)
        with host.timed("segment"):
            seg = host.segmenter.segment(device_images, [q or "" for q in queries])
        with host.timed("probes"):
            probes = (
                host.segmenter.probe(device_images, list(judge.probes)).float().cpu()
                if judge.probes
                else None
            )
    presence = seg.presence.float().cpu()
    calls = verdicts(presence, judge.thresholds())
    judged_by = ["presence"] * len(rows)
    kept: list[float | None] = [None] * len(rows)
    before: list[float | None] = [None] * len(rows)  # the unit's activation, objects in
    after: list[float | None] = [None] * len(rows)  # ... and removed
    # A unit listed for no class has no object of its own: only removing every class's
    # object can judge it.
    units = [
        i
        for i, r in enumerate(rows)
        if r["kind"] == "unit" and (queries[i] is not None or judge.remove == "all")
    ]
    if units and judge.units == "intervention":
        with host.timed("intervention"):
            judged_units = _judge_units(host, images, seg.masks, rows, units)
        for i, judgement in zip(units, judged_units, strict=True):
            calls[i], kept[i], judged_by[i] = judgement.verdict, judgement.kept, "intervention"
            before[i], after[i] = judgement.before, judgement.after
    with host.timed("encode"):  # rows, PNGs of the images and masks
        out = []
        for i, row in enumerate(rows):
            judged = queries[i] is not None or judged_by[i] == "intervention"
            probe_scores = (
                {q: float(probes[i, j]) for j, q in enumerate(judge.probes)}
                if probes is not None
                else {}
            )
            out.append(
                {
                    **row,
                    "status": result.status[i],
                    "error": result.errors[i],
                    "steps": int(result.steps[i]),
                    "objective_value": _finite(result.objective[i]),
                    "probability": _finite(result.probability[i]),
                    "converged": result.status[i] == "converged",
                    "words": json.dumps(result.words[i]),
                    "prompt_vectors": result.vectors[i].flatten().tolist(),
                    "vector_shape": list(result.vectors[i].shape),
                    "seconds": seconds,
                    "worker": host.name,
                    "object_query": queries[i],
                    "presence": float(presence[i]) if queries[i] is not None else None,
                    "verdict": calls[i] if judged else None,
                    "judged_by": judged_by[i] if judged else None,
                    "kept": kept[i],
                    "activation": before[i],
                    "activation_without_objects": after[i],
                    "probe_scores": json.dumps(probe_scores),
                    "png": png(images[i]),
                    "mask_png": png(seg.masks[i].float().cpu()[None])
                    if queries[i] is not None
                    else None,
                }
            )
        return out


def _fanned_out(result: ExplainResult, take: list[int]) -> ExplainResult:
    """`result`'s rows in the order `take` lists them (a row may be taken twice)."""
    index = torch.tensor(take, dtype=torch.long)
    return dataclasses.replace(
        result,
        images=result.images[index],
        vectors=result.vectors[index],
        objective=result.objective[index],
        probability=result.probability[index],
        steps=result.steps[index],
        status=[result.status[i] for i in take],
        errors=[result.errors[i] for i in take],
        words=[result.words[i] for i in take],
        history={name: [rows[i] for i in take] for name, rows in result.history.items()},
    )


def _judge_units(
    host: ModelHost,
    images: torch.Tensor,
    own_masks: torch.Tensor,
    rows: list[dict],
    index: list[int],
):
    """The intervention judgements of rows `index` (unit targets), from their images;
    `own_masks`: each image's mask of its own class's object, already segmented."""
    from dxray.judge.intervention import grown_mask, judge_units, object_masks

    judge = host.spec.judge
    if judge.remove == "all":
        everything = [judge.object_query(name) for name in host.classifier.class_names]
        x = images[index].to(host.segmenter.device, host.segmenter.dtype)
        masks = object_masks(host.segmenter, x, everything)
    else:  # "own": each image loses its own class's object
        masks = grown_mask(own_masks[index])
    units = [(rows[i]["layer"], int(rows[i]["channel"])) for i in index]
    return judge_units(host.classifier, images[index], masks, units, keep=judge.keep)


def target_error_row(row: dict[str, Any], error: str, worker: str) -> dict[str, Any]:
    """The result row of a target whose batch failed: every column of the explanations,
    verdicts and images tables (their schemas), empty but the error text."""
    columns = [
        *(c for c in payload_columns("explanations") if c not in TARGET_KEYS),
        *payload_columns("verdicts"),
        *payload_columns("images"),
    ]
    return {
        **row,
        **dict.fromkeys(columns),
        "status": "error",
        "error": error,
        "worker": worker,
        "probe_scores": json.dumps({}),
    }


def png(image: torch.Tensor) -> bytes:
    """A [C, H, W] tensor in [0, 1] (C = 3, or 1 for a mask) as PNG bytes."""
    from PIL import Image

    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    pil = Image.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def _finite(x: torch.Tensor) -> float | None:
    value = float(x)
    return value if np.isfinite(value) else None
