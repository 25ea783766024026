"""ModelHost: one worker's generator, classifier and segmenter, loaded once, serving every stage.

    host = ModelHost(spec.to_dict(), threads=1)
    rows = host.serve("targets", target_rows)   # explain and judge: one result row per row
    rows = host.serve("renders", render_jobs)   # the shortcut test's text renders, checked
    rows = host.serve("pool", pool_jobs)        # its object-free explanations, objects erased
    rows = host.serve("targets", rows, spec=next_checkpoint.to_dict(), classifier_sha256=sha)
    # ... another classifier (a scan's next checkpoint): only the classifier is loaded again

A plain class with no Ray inside: `dxray.run.session` runs one per worker as a Ray actor for a
whole command (an audit's stages, an evaluation's audits, a scan's checkpoints); tests and
benchmarks use it directly. Every batch carries the spec it is computed for, so a host that Ray
restarts (it loads its models again, from its first spec) computes the retried batch with the
right classifier.

Every stage fails the same way: a batch that raises is split in halves until the failure is
narrowed to the row that causes it, which gets an error row (the others are computed); out of
memory first frees the CUDA cache.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from dxray.spec.model import AuditSpec, ModelRef
from dxray.text import first_line

# Fault injection for tests: a host whose process finds this file absent creates it and dies
# mid-batch, once. Ray must restart the actor and retry the batch.
CRASH_ONCE_ENV = "DXRAY_TEST_CRASH_ONCE"


@dataclass(frozen=True)
class Stage:
    """What a host does with one stage's batch, and the row a row that failed gets."""

    compute: Callable[[ModelHost, list[dict[str, Any]]], list[dict[str, Any]]]
    error_row: Callable[[dict[str, Any], str, str], dict[str, Any]]  # (row, error, worker)


def stages() -> dict[str, Stage]:
    """The stages a host serves, by name."""
    from dxray.run.shortcut_renders import (
        pool_batch,
        pool_error_row,
        render_batch,
        render_error_row,
    )
    from dxray.run.worker import target_batch, target_error_row

    return {
        "targets": Stage(target_batch, target_error_row),
        "renders": Stage(render_batch, render_error_row),
        "pool": Stage(pool_batch, pool_error_row),
    }


def resident_models(spec: AuditSpec) -> tuple[ModelRef, ModelRef]:
    """What a host keeps for every audit it serves: the generator and the segmenter. A spec
    with others needs other hosts; a spec with another classifier does not."""
    return spec.generator, spec.segmenter


class ModelHost:
    """Generator + classifier + segmenter of a spec, loaded once on this worker's device."""

    def __init__(
        self,
        spec: dict,
        *,
        device: str | None = None,
        threads: int = 1,
        classifier_sha256: str | None = None,
    ):
        # One torch thread per CPU Ray gave this worker: more threads than free cores thrash.
        torch.set_num_threads(max(1, threads))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        # Models this process loaded, by role: what one host per worker saves is counted here.
        self.loads: Counter[str] = Counter()
        # Seconds per step of the targets' batches ("explain" includes the engine's final
        # full-VAE render); what benchmarks/gpu_audit.py splits a target's cost by.
        self.stage_seconds: Counter[str] = Counter()
        self.spec = AuditSpec.from_dict(spec)
        self._spec_dict = spec
        g, s = self.spec.generator, self.spec.segmenter
        self.generator = self._load("generator", g)
        self.segmenter = self._load("segmenter", s)
        self.classifier = self._load("classifier", self.spec.classifier)
        self._classifier_key = (self.spec.classifier, classifier_sha256)

    def _load(self, role: str, ref: ModelRef):
        from dxray.models.classifier_io import load_classifier
        from dxray.models.generator import load_generator
        from dxray.models.segmenter import load_segmenter

        dtype = ref.torch_dtype()
        if role == "generator":
            model = load_generator(
                ref.source, device=self.device, dtype=dtype, tiny_decoder=ref.tiny_decoder
            )
        elif role == "segmenter":
            model = load_segmenter(ref.source, device=self.device, dtype=dtype)
        else:
            model = load_classifier(ref.source, device=self.device, dtype=dtype)
        self.loads[role] += 1
        return model

    def use(self, spec: dict, classifier_sha256: str | None = None) -> None:
        """Serve `spec` from now on. Its classifier is loaded if it is not the one in memory
        (by reference and content hash); its generator and segmenter must be this host's."""
        if spec == self._spec_dict and self._classifier_key[1] == classifier_sha256:
            return
        new = AuditSpec.from_dict(spec)
        if resident_models(new) != resident_models(self.spec):
            raise ValueError(
                "this host holds another generator or segmenter than the spec's: start new "
                "hosts for it (dxray.run.session does)"
            )
        key = (new.classifier, classifier_sha256)
        if key != self._classifier_key:
            self.classifier = None  # free the old weights before the new ones load
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.classifier = self._load("classifier", new.classifier)
            self._classifier_key = key
        self.spec, self._spec_dict = new, spec

    def serve(
        self,
        stage: str,
        rows: list[dict[str, Any]],
        spec: dict | None = None,
        classifier_sha256: str | None = None,
    ) -> list[dict[str, Any]]:
        """`stage`'s result rows for `rows`, one each and in order; with `spec`, for that spec
        (see `use`). A failure becomes error rows, never an exception."""
        if spec is not None:
            self.use(spec, classifier_sha256)
        _maybe_crash()
        return self._narrowed(stages()[stage], rows)

    def _narrowed(self, stage: Stage, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            return stage.compute(self, rows)
        except Exception as err:  # noqa: BLE001 - every failure becomes rows, never a crash
            if isinstance(err, torch.OutOfMemoryError) and torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(rows) == 1:
                text = f"{type(err).__name__}: {first_line(err)}"[:2000]
                return [stage.error_row(rows[0], text, self.name)]
            half = len(rows) // 2
            return self._narrowed(stage, rows[:half]) + self._narrowed(stage, rows[half:])

    @contextmanager
    def timed(self, name: str):
        """Time one step of a batch into `stage_seconds`; on a GPU, up to the end of its
        queued kernels."""
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

    def model_loads(self) -> dict[str, int]:
        """Models this process has loaded, by role (for the session's count)."""
        return dict(self.loads)


def _maybe_crash() -> None:
    marker = os.environ.get(CRASH_ONCE_ENV)
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
