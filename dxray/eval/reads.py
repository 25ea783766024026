"""What the evaluation reads from a catalog: runs, an audit's rows, its stored images.

run = latest_run("catalogs/eval-default")      # the newest finished run
audit_rows, probe_rows, run_info = read_run(catalog, run)
rows, images = class_images(catalog, run)       # the class explanations' PNGs, decoded
"""

from __future__ import annotations

import io
from pathlib import Path

import torch


def query(catalog: str | Path, sql: str, params: list | dict) -> list[dict]:
    """The rows of one read-only query on the catalog, as dicts."""
    from dxray.catalog.views import connect

    con = connect(catalog, read_only=True)
    try:
        cursor = con.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    finally:
        con.close()


def latest_run(catalog: str | Path, classifier_sha256: str | None = None) -> str:
    """The newest finished run of a catalog; with `classifier_sha256`, the newest of that
    classifier (an evaluation's catalog also holds the fixed release's and the ablations')."""
    rows = query(
        catalog,
        "SELECT run_id FROM runs WHERE status = 'finished' AND "
        "($sha IS NULL OR classifier_sha256 = $sha) ORDER BY created_at DESC LIMIT 1",
        {"sha": classifier_sha256},
    )
    if not rows:
        which = "" if classifier_sha256 is None else f" of classifier {classifier_sha256[:12]}"
        raise ValueError(
            f"{catalog} has no finished run{which}: run `dxray audit <spec>` first, or name "
            "the run with --run"
        )
    return rows[0]["run_id"]


def run_row(catalog: str | Path, run_id: str) -> dict:
    """The `runs` row of one run (its spec is `spec_yaml`)."""
    run = query(catalog, "SELECT * FROM runs WHERE run_id = ?", [run_id])
    if not run:
        known = [r["run_id"] for r in query(catalog, "SELECT run_id FROM runs", [])]
        raise ValueError(f"{catalog} has no run {run_id!r}; its runs: {known or 'none'}")
    return run[0]


def read_run(catalog: str | Path, run_id: str) -> tuple[list[dict], list[dict], dict]:
    """(audit rows, probe rows, runs row) of one run."""
    run = run_row(catalog, run_id)
    audit = query(catalog, "SELECT * EXCLUDE (probe_scores) FROM audit WHERE run_id = ?", [run_id])
    probes = query(
        catalog,
        "SELECT target_id, kind, class_name, seed, probe, presence FROM probe_scores "
        "WHERE run_id = ?",
        [run_id],
    )
    return audit, probes, run


def decode_png(data: bytes) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    array = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)


def stored_images(catalog: str | Path, run_id: str, kind: str) -> list[dict]:
    """The usable (run, target, seed) rows of one kind with their latest stored image ("png"),
    in (class, target, seed) order."""
    return query(
        catalog,
        "SELECT a.target_id, a.class_index, a.class_name, a.layer, a.channel, a.seed, "
        "a.probability, a.steps, i.png "
        "FROM audit a JOIN images i USING (run_id, target_id, seed) "
        "WHERE a.run_id = ? AND a.kind = ? AND a.ok "
        "QUALIFY row_number() OVER (PARTITION BY a.target_id, a.seed "
        "ORDER BY i.created_at DESC) = 1 ORDER BY a.class_index, a.target_id, a.seed",
        [run_id, kind],
    )


def class_images(catalog: str | Path, run_id: str) -> tuple[list[dict], torch.Tensor]:
    """The class targets' stored images of a run (usable rows), in (class, seed) order."""
    rows = stored_images(catalog, run_id, "class")
    if not rows:
        raise ValueError(f"run {run_id} has no class images to compare")
    return rows, torch.stack([decode_png(r.pop("png")) for r in rows])
