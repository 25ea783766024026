"""The class-shortcut test on a model host (dxray.run.host): the stages "renders" and "pool".

    rows = render_batch(host, jobs)   # text renders (`shortcut_plans._job`), checked, one row each
    rows = pool_batch(host, jobs)     # pool members (`shortcut_plans.pool_plan`), objects erased

A batch that fails is split by the host; a row that still fails gets `render_error_row` /
`pool_error_row`. The driver's side is dxray.run.shortcuts.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any

from dxray.run.worker import png
from dxray.shortcuts.vocabulary import parse_vocabulary
from dxray.spec.model import AuditSpec

if TYPE_CHECKING:
    from dxray.run.host import ModelHost


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
