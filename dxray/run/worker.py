"""AuditWorker: generator + classifier + segmenter resident on one device; B targets a call.

A plain class in the Ray Data style: `__init__` loads the models once, `__call__(batch)` turns a
batch of target rows into result rows. It also runs without Ray (`worker.audit(rows)`).
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
from collections import Counter
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from dxray.explain.optimize import explain
from dxray.judge.verdict import verdicts
from dxray.run.targets import TARGET_KEYS, objective_for
from dxray.spec.model import AuditSpec
from dxray.text import first_line

# Fault injection for tests: a worker whose process finds this file absent creates it and dies
# mid-batch, once. Ray must restart the actor and retry the batch.
CRASH_ONCE_ENV = "DXRAY_TEST_CRASH_ONCE"
# Fault injection for tests: target ids (comma-separated) whose explanation raises, as a
# target that runs out of memory would.
FAIL_TARGETS_ENV = "DXRAY_TEST_FAIL_TARGETS"


class ModelHost:
    """Generator + classifier + segmenter of a spec, loaded once on this worker's device."""

    def __init__(self, spec: dict, *, device: str | None = None, threads: int = 1):
        from dxray.models.classifier_io import load_classifier
        from dxray.models.generator import load_generator
        from dxray.models.segmenter import load_segmenter

        # One torch thread per CPU Ray gave this worker: more threads than free cores thrash.
        torch.set_num_threads(max(1, threads))
        self.spec = AuditSpec.from_dict(spec)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        g, c, s = self.spec.generator, self.spec.classifier, self.spec.segmenter
        self.generator = load_generator(
            g.source, device=device, dtype=g.torch_dtype(), tiny_decoder=g.tiny_decoder
        )
        self.classifier = load_classifier(c.source, device=device, dtype=c.torch_dtype())
        self.segmenter = load_segmenter(s.source, device=device, dtype=s.torch_dtype())
        self.name = f"{socket.gethostname()}:{os.getpid()}"


class AuditWorker(ModelHost):
    def __init__(self, spec: dict, *, device: str | None = None, threads: int = 1):
        super().__init__(spec, device=device, threads=threads)
        self.config = self.spec.engine.to_explain_config()
        # Seconds spent per stage over this worker's batches ("explain" includes the engine's
        # final full-VAE render); what benchmarks/gpu_audit.py splits a target's cost by.
        self.stage_seconds: Counter[str] = Counter()

    @contextmanager
    def _stage(self, name: str):
        """Time one stage of a batch; on a GPU, up to the end of its queued kernels."""
        cuda = self.generator.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        try:
            yield
        finally:
            if cuda:
                torch.cuda.synchronize()
            self.stage_seconds[name] += time.perf_counter() - started

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [
            {k: plain(k, batch[k][i]) for k in TARGET_KEYS} for i in range(len(batch["target_id"]))
        ]
        _maybe_crash()
        results = self.audit(rows)
        return {key: column([r[key] for r in results]) for key in results[0]}

    def audit(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Explain and judge `rows` together. A batch that runs out of memory is split in
        halves; a failure is narrowed to the target that causes it, which gets an error row."""
        try:
            return self._audit(rows)
        except Exception as err:  # noqa: BLE001 - every failure becomes rows, never a crash
            if isinstance(err, torch.OutOfMemoryError) and torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(rows) == 1:
                return [_error_row(rows[0], err, self.name)]
            half = len(rows) // 2
            return self.audit(rows[:half]) + self.audit(rows[half:])

    def _audit(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        failing = set(filter(None, os.environ.get(FAIL_TARGETS_ENV, "").split(",")))
        if failing & {r["target_id"] for r in rows}:
            raise RuntimeError("injected failure (" + FAIL_TARGETS_ENV + ")")
        started = time.perf_counter()
        objectives = [objective_for(self.spec, row) for row in rows]
        with self._stage("explain"):
            result = explain(
                self.generator, self.classifier, objectives, [int(r["seed"]) for r in rows],
                self.config,
            )  # fmt: skip
        seconds = (time.perf_counter() - started) / len(rows)
        images = result.images
        judge = self.spec.judge
        queries = [
            judge.object_query(r["class_name"]) if r["class_name"] is not None else None
            for r in rows
        ]
        with torch.no_grad():
            device_images = images.to(self.segmenter.device, self.segmenter.dtype)
            with self._stage("segment"):
                seg = self.segmenter.segment(device_images, [q or "" for q in queries])
            with self._stage("probes"):
                probes = (
                    self.segmenter.probe(device_images, list(judge.probes)).float().cpu()
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
            with self._stage("intervention"):
                judged_units = self._judge_units(images, seg.masks, rows, units)
            for i, judgement in zip(units, judged_units, strict=True):
                calls[i], kept[i], judged_by[i] = judgement.verdict, judgement.kept, "intervention"
                before[i], after[i] = judgement.before, judgement.after
        with self._stage("encode"):  # rows, PNGs of the images and masks
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
                        "worker": self.name,
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

    def _judge_units(
        self, images: torch.Tensor, own_masks: torch.Tensor, rows: list[dict], index: list[int]
    ):
        """The intervention judgements of rows `index` (unit targets), from their images;
        `own_masks`: each image's mask of its own class's object, already segmented."""
        from dxray.judge.intervention import grown_mask, judge_units, object_masks

        judge = self.spec.judge
        if judge.remove == "all":
            everything = [judge.object_query(name) for name in self.classifier.class_names]
            x = images[index].to(self.segmenter.device, self.segmenter.dtype)
            masks = object_masks(self.segmenter, x, everything)
        else:  # "own": each image loses its own class's object
            masks = grown_mask(own_masks[index])
        units = [(rows[i]["layer"], int(rows[i]["channel"])) for i in index]
        return judge_units(self.classifier, images[index], masks, units, keep=judge.keep)


def _error_row(row: dict[str, Any], err: Exception, worker: str) -> dict[str, Any]:
    text = f"{type(err).__name__}: {first_line(err)}"
    empty = dict.fromkeys(
        ("steps", "objective_value", "probability", "converged", "words", "prompt_vectors"),
        None,
    )
    return {
        **row,
        **empty,
        "status": "error",
        "error": text[:2000],
        "vector_shape": None,
        "seconds": None,
        "worker": worker,
        "object_query": None,
        "presence": None,
        "verdict": None,
        "judged_by": None,
        "kept": None,
        "activation": None,
        "activation_without_objects": None,
        "probe_scores": json.dumps({}),
        "png": None,
        "mask_png": None,
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


INT_KEYS = ("class_index", "channel", "seed")


def plain(key: str, value: Any) -> Any:
    """numpy scalars -> Python. Ray Data turns a nullable int column into floats with NaN."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    if key in INT_KEYS and value is not None:
        return int(value)
    return value


def column(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _maybe_crash() -> None:
    marker = os.environ.get(CRASH_ONCE_ENV)
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
