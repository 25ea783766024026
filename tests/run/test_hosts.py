"""One model host per worker for every stage: models loaded once, rows as one host computes
them, a classifier swapped in place (embedded Ray on 127.0.0.1, the tiny zoo)."""

import shutil

import pyarrow.parquet as pq
import pytest

from dxray.catalog.writer import part_files
from dxray.run.host import ModelHost
from dxray.run.pipeline import plan, run_audit
from dxray.run.session import ray_session
from dxray.run.shortcut_plans import pool_plan, render_job, vocabulary_plan, with_object_plan
from dxray.spec.model import AuditSpec


@pytest.fixture
def every_stage(tiny_spec):
    """The tiny spec on 2 workers with every stage: 12 targets, 4 vocabulary renders (water,
    water with a watermark; 2 seeds), a pool of 6, with-object renders for all 5 classes (20);
    batches of 4, so that both hosts serve each stage."""
    spec = dict(tiny_spec)
    spec["shortcuts"] = {
        "enabled": True, "template": "{}", "seeds": 2, "with_object": "all", "batch_size": 4,
        "attributes": ["water", {"name": "a watermark", "overlay": "with a watermark"}],
        "pool": 6, "top": 2,
    }  # fmt: skip
    spec["ray"] = {**tiny_spec["ray"], "workers": 2}
    return AuditSpec.from_dict(spec)


def _table(catalog, table, run_id, key):
    rows = [r for f in part_files(catalog, table, run_id) for r in pq.read_table(f).to_pylist()]
    return {key(r): r for r in rows}


def _batches(items, size):
    from dxray.run.session import batch_bounds

    return [items[start:end] for start, end in batch_bounds(len(items), size)]


def test_every_stage_runs_on_hosts_that_load_their_models_once(every_stage):
    """The four stages of an audit on 2 workers: each worker loads the generator, the
    classifier and the segmenter once (before: once per stage, 4 actor pools), and every row
    is the row one host computes for the same batch outside Ray, bit for bit."""
    summary = run_audit(every_stage)
    assert summary.status == "finished" and summary.computed == 12
    assert summary.shortcuts.renders == 4 + 20 and summary.shortcuts.rendered == 24
    assert dict(summary.model_loads) == {"generator": 2, "classifier": 2, "segmenter": 2}

    # The same batches, computed by one host in this process
    catalog, run_id = summary.catalog, summary.run_id
    host = ModelHost(every_stage.to_dict())
    _, targets, _, names = plan(every_stage)
    size = every_stage.engine.batch_size
    expected = [r for b in _batches(targets, size) for r in host.serve("targets", b)]
    stored = _table(catalog, "explanations", run_id, lambda r: (r["target_id"], r["seed"]))
    verdicts = _table(catalog, "verdicts", run_id, lambda r: (r["target_id"], r["seed"]))
    images = _table(catalog, "images", run_id, lambda r: (r["target_id"], r["seed"]))
    assert len(stored) == len(expected) == 12
    for row in expected:
        key = (row["target_id"], row["seed"])
        got = {**stored[key], **verdicts[key], **images[key]}
        for column in ("status", "steps", "objective_value", "probability", "words",
                       "presence", "verdict", "kept", "activation", "png", "mask_png"):  # fmt: skip
            assert got[column] == row[column], (key, column)
        assert got["prompt_vectors"] == pytest.approx(row["prompt_vectors"], abs=0)

    size = every_stage.shortcuts.batch_size
    jobs = [render_job(r, names) for r in vocabulary_plan(every_stage)]
    jobs += [render_job(r, names) for r in with_object_plan(every_stage, names, set())]
    expected = [r for b in _batches(jobs, size) for r in host.serve("renders", b)]
    expected += [r for b in _batches(pool_plan(every_stage), size) for r in host.serve("pool", b)]
    stored = _table(catalog, "shortcut_images", run_id, lambda r: r["render_id"])
    stored |= _table(catalog, "shortcut_pool", run_id, lambda r: r["render_id"])
    assert len(stored) == len(expected) == 4 + 20 + 6
    for row in expected:
        got = stored[row["render_id"]]
        for column in ("status", "object_presence", "logits", "png", "words"):
            assert got.get(column) == row.get(column), (row["render_id"], column)


def test_a_session_keeps_its_hosts_and_swaps_only_the_classifier(tiny_spec, tmp_path):
    """Three audits in one session (as a scan's checkpoints): the generator and the segmenter
    load once; the classifier loads for each change of weights, a checkpoint rewritten in place
    (same path, new bytes) included, and each audit sees its own classifier."""
    from safetensors.torch import load_file, save_file

    spec = {**tiny_spec, "targets": {"classes": [0, 1], "seeds": [0]}}
    spec["engine"] = {**tiny_spec["engine"], "iterations": 1}
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(tiny_spec["classifier"], checkpoint)

    def audit(name):
        s = AuditSpec.from_dict({**spec, "name": name, "classifier": str(checkpoint)})
        return run_audit(s)

    with ray_session(AuditSpec.from_dict(spec)) as session:
        first = audit("first")
        weights = load_file(checkpoint / "model.safetensors")
        save_file({k: v * 3 for k, v in weights.items()}, checkpoint / "model.safetensors")
        second = audit("second")  # the same path, new bytes
        third = audit("third")  # unchanged: nothing loads
        loads = dict(session.model_loads())
    assert loads == {"generator": 1, "segmenter": 1, "classifier": 2}
    assert first.model_loads["classifier"] == 1 and third.model_loads["classifier"] == 2

    def probabilities(summary):
        found = _table(summary.catalog, "explanations", summary.run_id, lambda r: r["target_id"])
        return [found[t]["probability"] for t in sorted(found)]

    assert probabilities(first) != probabilities(second)  # the new weights were used
    assert probabilities(second) == probabilities(third)


def test_batches_are_cut_where_the_previous_pipeline_cut_them():
    """The cuts Ray Data's from_items + map_batches(batch_size) made in dxray before the model
    hosts (measured on Ray 2.60 with the landed tree): a row keeps its batch, so its rounding."""
    from dxray.run.session import batch_bounds

    measured = {
        (136, 16): [16, 16, 14, 16, 14, 16, 14, 16, 14],  # the evaluation's default world
        (156, 16): [16] * 7 + [14, 16, 14],  # ... and the reshuffled one
        (30, 16): [16, 14],  # the demo
        (20, 16): [16, 4],
        (1024, 32): [32] * 32,
    }
    for (n, size), sizes in measured.items():
        bounds = batch_bounds(n, size)
        assert [end - start for start, end in bounds] == sizes, (n, size)
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))  # no gap


def test_batches_cut_on_distinct_works_never_split_one():
    from dxray.run.session import batch_bounds, grouped_bounds

    assert grouped_bounds(list(range(30)), 16) == batch_bounds(30, 16)  # no shared work
    keys = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "f"]  # 6 works, 10 rows
    bounds = grouped_bounds(keys, 4)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(keys)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    distinct = [e - s for s, e in batch_bounds(6, 4)]  # [4, 2]
    assert [len(set(keys[s:e])) for s, e in bounds] == distinct
    assert all(keys[s] != keys[s - 1] for s, _ in bounds[1:])  # no work split across batches
    assert grouped_bounds([], 4) == []
    with pytest.raises(ValueError, match="adjacent"):
        grouped_bounds(["a", "b", "a"], 4)


def test_a_batch_explains_each_work_once_and_judges_each_of_its_rows(tiny_spec, monkeypatch):
    """One unit audited for two classes: the engine optimises it once per seed, and both
    targets get that optimisation's image, vectors and numbers, each judged for its class."""
    import dxray.run.worker as worker
    from dxray.run.targets import by_work

    spec = AuditSpec.from_dict(tiny_spec)
    _, targets, _, _ = plan(spec)
    listed = [r for r in targets if r["kind"] == "unit"]  # penultimate:3, no class, 2 seeds
    for_class = [
        {**r, "target_id": f"unit:penultimate:3:{c}", "class_index": c, "class_name": n}
        for c, n in ((0, "circle"), (2, "triangle"))
        for r in listed
    ]
    rows = by_work([targets[0], *listed, *for_class])  # class 0 seed 0, then 3 rows per seed
    explained = []
    real = worker.explain
    monkeypatch.setattr(
        worker, "explain", lambda g, c, objectives, seeds, cfg: explained.append(seeds) or real(
            g, c, objectives, seeds, cfg
        ),
    )  # fmt: skip
    out = ModelHost(tiny_spec).serve("targets", rows)
    assert explained == [[0, 0, 1]]  # class 0; the unit with seed 0, with seed 1
    assert [r["target_id"] for r in out] == [r["target_id"] for r in rows]
    assert all(r["status"] != "error" for r in out)
    for seed in (0, 1):
        same = [r for r in out if r["kind"] == "unit" and r["seed"] == seed]
        assert len(same) == 3
        for column in ("png", "prompt_vectors", "objective_value", "steps", "words"):
            assert all(r[column] == same[0][column] for r in same), column
        assert [r["class_name"] for r in same] == [None, "circle", "triangle"]
        assert same[1]["object_query"] == "a circle" and same[2]["object_query"] == "a triangle"
    assert out[1]["png"] != out[4]["png"]  # another seed, another image


def test_a_spec_with_more_cpus_than_the_embedded_ray_restarts_it(tiny_spec):
    """A session's embedded Ray is as large as its first spec needs (at least the machine's
    cores). A later spec whose hosts need more (a sweep's stability rerun: 2 workers of 2
    threads after audits of 2 x 1) used to leave a host unplaced and the audit waiting on it
    forever; the session now starts Ray again, as large as that spec, and the audit runs."""
    import os

    import ray

    first = AuditSpec.from_dict({**tiny_spec, "targets": {"classes": [0], "seeds": [0]}})
    cores = os.cpu_count() or 1
    wide = cores + 1  # threads per host: two hosts need more CPUs than the first Ray has
    second = AuditSpec.from_dict(
        {**first.to_dict(), "name": "wide",
         "ray": {**tiny_spec["ray"], "workers": 2, "num_cpus_per_worker": wide}}
    )  # fmt: skip
    with ray_session(first) as session:
        assert run_audit(first).status == "finished"
        assert ray.cluster_resources()["CPU"] == max(1, cores)
        session._hosts_for(second, None)  # checked before any batch could wait on a host
        assert ray.cluster_resources()["CPU"] >= 2 * wide
        summary = run_audit(second)
        assert summary.status == "finished" and session.workers == 2
    assert not ray.is_initialized()
