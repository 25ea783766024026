"""The audit pipeline end to end on real Ray (127.0.0.1 only) with a tiny zoo."""

import tempfile
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import torch

from dxray.catalog.sql import run_sql
from dxray.catalog.views import connect
from dxray.report.page import write_report
from dxray.run.host import CRASH_ONCE_ENV, ModelHost
from dxray.run.pipeline import run_audit
from dxray.spec.model import AuditSpec

EXPECTED = (5 + 1) * 2  # 5 classes and 1 unit, 2 seeds


def _count(catalog, view="explanations", where="") -> int:
    con = connect(catalog, read_only=True)
    try:
        return con.sql(f"SELECT count(*) FROM {view} {where}").fetchall()[0][0]
    finally:
        con.close()


def test_worker_without_ray_judges_and_renders(tiny_spec):
    from dxray.run.targets import expand_targets

    spec = AuditSpec.from_dict(tiny_spec)
    host = ModelHost(spec.to_dict())
    rows = expand_targets(spec, ["circle", "square", "triangle", "star", "cross"], "r1")[:3]
    out = host.serve("targets", rows)
    assert [r["target_id"] for r in out] == [r["target_id"] for r in rows]
    assert all(r["status"] == "max_iterations" and r["steps"] == 2 for r in out)
    assert all(r["png"].startswith(b"\x89PNG") for r in out)
    assert out[0]["object_query"] == "a circle" and out[0]["verdict"] in (
        "core",
        "spurious",
        "uncertain",
    )


@pytest.mark.parametrize("how", ["intervention-all", "intervention-own", "presence"])
def test_units_are_judged_as_the_spec_says(tiny_spec, how):
    from dxray.judge.verdict import verdicts
    from dxray.run.targets import expand_targets

    units, remove = (how.split("-") + ["all"])[:2]
    tiny_spec["judge"] = {**tiny_spec["judge"], "units": units, "remove": remove}
    spec = AuditSpec.from_dict(tiny_spec)
    host = ModelHost(spec.to_dict())
    rows = expand_targets(spec, ["circle", "square", "triangle", "star", "cross"], "r1")
    rows = [r for r in rows if r["seed"] == 0][-2:]  # the cross class and the listed unit
    assert [r["kind"] for r in rows] == ["class", "unit"] and rows[1]["class_name"] is None
    rows.append({**rows[1], "target_id": "cross-unit", "class_index": 4, "class_name": "cross"})
    cls, loose, unit = host.serve("targets", rows)
    assert cls["judged_by"] == "presence" and cls["kept"] is None
    assert cls["verdict"] == verdicts(torch.tensor([cls["presence"]]))[0]
    assert unit["judged_by"] == units and unit["object_query"] == "a cross"
    if units == "presence":
        assert unit["kept"] is None
        assert unit["verdict"] == verdicts(torch.tensor([unit["presence"]]))[0]
    else:  # kept decides; uncertain: silent (nothing kept) or no background left
        kept, call = unit["kept"], unit["verdict"]
        assert call == "uncertain" if kept is None else call in ("core", "spurious", "uncertain")
        assert call != "core" or kept < 0.5
        assert call != "spurious" or kept >= 0.5
    # A unit of no class has no object to look for: only removing every object judges it.
    if how == "intervention-all":
        assert loose["judged_by"] == "intervention" and loose["verdict"] is not None
        assert loose["presence"] is None
    else:
        assert loose["judged_by"] is None and loose["verdict"] is None


@pytest.mark.parametrize("remove", ["own", "all"])
def test_the_worker_hands_each_unit_its_images_masks_and_channel(tiny_spec, monkeypatch, remove):
    """The intervention judge gets each unit row's own image, its object mask and its
    (layer, channel), and each judgement lands on its own row. (A worker that called
    "uncertain" for every unit passed every other test.)"""
    from dxray.judge import intervention
    from dxray.judge.intervention import UnitJudgement
    from dxray.run.targets import expand_targets

    seen = {}

    def recording_judge(classifier, images, masks, units, keep):
        seen.update(images=images.clone(), masks=masks.clone(), units=list(units))
        calls = ["core", "spurious", "uncertain"]
        return [UnitJudgement(calls[i % 3], 0.1 + i) for i in range(len(units))]

    monkeypatch.setattr(intervention, "judge_units", recording_judge)
    tiny_spec["judge"] = {**tiny_spec["judge"], "units": "intervention", "remove": remove}
    spec = AuditSpec.from_dict(tiny_spec)
    host = ModelHost(spec.to_dict())
    base = [r for r in expand_targets(spec, ["circle", "square", "triangle", "star", "cross"],
                                      "r1") if r["kind"] == "unit"][0]  # fmt: skip
    rows = [
        {**base, "target_id": f"u{c}", "class_index": c, "class_name": name, "channel": ch}
        for c, name, ch in [(0, "circle", 1), (1, "square", 5), (4, "cross", 3)]
    ]
    rows.insert(1, expand_targets(spec, ["circle", "square", "triangle", "star", "cross"],
                                  "r1")[0])  # a class row between them  # fmt: skip
    out = host.serve("targets", rows)
    units = [r for r in out if r["kind"] == "unit"]
    assert seen["units"] == [("penultimate", 1), ("penultimate", 5), ("penultimate", 3)]
    assert seen["images"].shape[0] == seen["masks"].shape[0] == 3
    assert [(r["verdict"], r["kept"]) for r in units] == [
        ("core", pytest.approx(0.1)), ("spurious", pytest.approx(1.1)),
        ("uncertain", pytest.approx(2.1)),
    ]  # fmt: skip
    assert all(r["judged_by"] == "intervention" for r in units)
    assert out[1]["kind"] == "class" and out[1]["judged_by"] == "presence"
    for image, row in zip(seen["images"], units, strict=True):  # each unit's own image
        from io import BytesIO

        import numpy as np
        from PIL import Image

        decoded = np.asarray(Image.open(BytesIO(row["png"]))).astype(np.float32) / 255
        got = image.permute(1, 2, 0).float().numpy()
        assert np.abs(decoded - got).max() <= 1 / 255 + 1e-6


def test_a_failing_target_becomes_an_error_row(tiny_spec):
    from dxray.run.targets import expand_targets

    spec = AuditSpec.from_dict(tiny_spec)
    host = ModelHost(spec.to_dict())
    rows = expand_targets(spec, ["circle", "square", "triangle", "star", "cross"], "r1")[:4]
    rows[2] = {**rows[2], "kind": "unit", "layer": "no.such.layer", "channel": 0}
    out = host.serve("targets", rows)
    assert [r["status"] for r in out].count("error") == 1
    assert out[2]["status"] == "error" and "no.such.layer" in out[2]["error"]
    assert out[0]["status"] != "error" and out[3]["status"] != "error"
    # an error row has every column of a result row: a batch mixing both becomes one table
    assert set(out[2]) == set(out[0])


def test_end_to_end_audit_sql_and_report(tiny_spec, tmp_path):
    spec = AuditSpec.from_dict(tiny_spec)
    from dxray.run import session

    seen, temp_dirs = [], set()

    def progress(done, total, _statuses):
        seen.append((done, total))
        temp_dirs.add(session.ray_temp_dir)  # the embedded Ray's, while it runs

    summary = run_audit(spec, progress=progress)
    assert summary.total == EXPECTED and summary.computed == EXPECTED and summary.skipped == 0
    assert seen[-1] == (EXPECTED, EXPECTED)
    catalog = summary.catalog
    assert _count(catalog) == EXPECTED
    assert _count(catalog, "images") == EXPECTED
    assert _count(catalog, "verdicts") == EXPECTED
    # one Parquet file per worker batch, not one per target
    files = list((catalog / "explanations").rglob("part-*.parquet"))
    assert 1 <= len(files) <= EXPECTED // 2
    assert sum(pq.read_metadata(f).num_rows for f in files) == EXPECTED
    csv = run_sql(
        catalog, "SELECT class_name, count(*) AS n FROM audit GROUP BY 1 ORDER BY 1", "csv"
    )
    assert csv.splitlines()[1:3] == ["circle,2", "cross,2"]
    assert session.ray_temp_dir is None  # the embedded Ray's temp folder is gone:
    (temp_dir,) = temp_dirs  # (other processes on this machine may have their own meanwhile)
    assert temp_dir is not None and temp_dir.startswith(tempfile.gettempdir())
    assert not Path(temp_dir).exists()
    con = connect(catalog, read_only=True)
    assert con.sql("SELECT status FROM runs").fetchall() == [("finished",)]
    judged = con.sql("SELECT DISTINCT kind, judged_by FROM audit ORDER BY 1").fetchall()
    assert judged == [("class", "presence"), ("unit", "intervention")]
    con.close()
    html = write_report(catalog, tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64") >= EXPECTED


def test_resume_skips_what_is_done_and_writes_no_duplicates(tiny_spec):
    spec = AuditSpec.from_dict(tiny_spec)
    first = run_audit(spec, limit=5)
    assert first.computed == 5 and _count(first.catalog) == 5
    second = run_audit(spec)
    assert second.skipped == 5 and second.computed == EXPECTED - 5
    assert second.run_id == first.run_id
    assert _count(second.catalog) == EXPECTED
    distinct = _count(second.catalog, "(SELECT DISTINCT target_id, seed FROM explanations)")
    assert distinct == EXPECTED
    third = run_audit(spec)
    assert third.computed == 0 and _count(third.catalog) == EXPECTED
    # Honest statuses: partial while targets are left, finished when all have rows
    assert (first.status, second.status, third.status) == ("partial", "finished", "finished")
    con = connect(first.catalog, read_only=True)
    log = con.sql("SELECT status, error FROM runs_log WHERE status <> 'running' "
                  "ORDER BY updated_at").fetchall()  # fmt: skip
    con.close()
    assert log[0][0] == "partial" and f"{EXPECTED - 5} of {EXPECTED} targets" in log[0][1]
    with pytest.raises(ValueError, match="limit is a number of targets >= 1"):
        run_audit(spec, limit=-25)


def test_units_the_classifier_lacks_are_refused_before_anything_runs(tiny_spec, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from dxray.cli.main import app

    spec = {**tiny_spec, "targets": {"classes": [0], "seeds": [0], "units": {
        "units": ["no.such.layer:0", "penultimate:999", "penultimate:3"]}}}  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    run = CliRunner().invoke(app, ["audit", str(path)])
    assert run.exit_code == 2
    assert "2 unit(s) are not in the classifier" in run.output
    assert (
        "no.such.layer:0" in run.output
        and "penultimate:999: channel 999 out of range" in run.output
    )
    # nothing written but the command's log (what the classifier's loading printed)
    catalog = Path(spec["output"]["catalog"])
    assert not catalog.exists() or [p.name for p in catalog.iterdir()] == ["logs"]


def test_a_run_with_failed_targets_says_so_and_the_cli_exits_1(tiny_spec, tmp_path, monkeypatch):
    """A target whose explanation raises (injected): an error row, the run "failed" with the
    count, `dxray audit` exits 1; a rerun retries it."""
    import yaml
    from typer.testing import CliRunner

    from dxray.cli.main import app
    from dxray.run.worker import FAIL_TARGETS_ENV

    monkeypatch.setenv(FAIL_TARGETS_ENV, "unit:penultimate:3:-")
    spec = {**tiny_spec, "targets": {"classes": [0], "seeds": [0],
                                     "units": {"units": ["penultimate:3"]}}}  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    run = CliRunner().invoke(app, ["audit", str(path)])
    assert run.exit_code == 1, run.output
    assert "failed: 1 of 2 targets failed" in run.output
    con = connect(spec["output"]["catalog"], read_only=True)
    assert con.sql("SELECT status FROM runs").fetchall() == [("failed",)]
    con.close()
    bad = CliRunner().invoke(app, ["audit", str(path), "--limit", "-25"])
    assert bad.exit_code == 2 and "greater than or equal to 1" in bad.output


def test_a_worker_killed_mid_run_is_restarted_and_the_run_completes(
    tiny_spec, tmp_path, monkeypatch
):
    marker = tmp_path / "crashed-once"
    monkeypatch.setenv(CRASH_ONCE_ENV, str(marker))
    summary = run_audit(AuditSpec.from_dict(tiny_spec))
    assert marker.exists()  # a worker really died
    assert summary.computed == EXPECTED
    assert _count(summary.catalog) == EXPECTED


def test_sql_over_the_catalog_is_read_only(tiny_spec):
    from dxray.catalog.sql import SqlRefused

    summary = run_audit(AuditSpec.from_dict(tiny_spec), limit=2)
    with pytest.raises(SqlRefused):
        run_sql(summary.catalog, "DELETE FROM explanations", "csv")
    assert _count(summary.catalog) == 2
    assert isinstance(duckdb.__version__, str)


def test_a_second_audit_of_a_run_in_progress_refuses_and_writes_nothing(tiny_spec, tmp_path):
    """Another audit holds the run (its lock, from a live process): this one says who and
    computes nothing; once that audit is done, the run goes ahead."""
    import yaml
    from typer.testing import CliRunner

    from dxray.cli.main import app
    from dxray.run.lock import FileLock
    from dxray.run.pipeline import plan

    spec = AuditSpec.from_dict(tiny_spec)
    run_id = plan(spec)[0]
    catalog = Path(spec.output.catalog)
    catalog.mkdir(parents=True)
    other = FileLock(catalog / f".run-{run_id}.lock", stale_after_s=3600, what="audit")
    other.acquire()  # as the first audit does; this process is alive, so the lock is held
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_spec))
    run = CliRunner().invoke(app, ["audit", str(path)])
    assert run.exit_code == 2
    assert f"another audit of run {run_id} holds" in run.output
    assert "this audit computes nothing" in run.output
    assert not (catalog / "runs").exists() and not (catalog / "explanations").exists()
    other.release()
    summary = run_audit(spec, limit=2)
    assert summary.computed == 2 and not (catalog / f".run-{run_id}.lock").exists()


def test_the_embedded_ray_listens_on_loopback_only():
    """Every socket the embedded Ray's processes listen on is 127.0.0.1 (measured before the
    fix: the GCS, raylet and workers on every interface, the agents on the host's address)."""
    psutil = pytest.importorskip("psutil")
    import ray

    from dxray.run.session import ensure_ray, stop_ray

    spec = AuditSpec.from_dict(
        {"name": "x", "generator": "g", "classifier": "c", "segmenter": "s", "ray": {"workers": 1}}
    )
    assert ensure_ray(spec)
    try:
        ray.get(ray.remote(lambda: 1).remote())  # a worker process too
        me = psutil.Process()
        pids = {me.pid} | {p.pid for p in me.children(recursive=True)}
        listening = {
            c.laddr.ip
            for c in psutil.net_connections(kind="inet")
            if c.pid in pids and c.status == psutil.CONN_LISTEN
        }
    finally:
        stop_ray()
    assert listening, "no listening socket found: the measurement itself is broken"
    assert listening <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, listening


def test_the_plan_line_says_how_many_optimisations_the_targets_take(tiny_spec):
    from dxray.run.pipeline import describe_plan

    spec = AuditSpec.from_dict(tiny_spec)
    shared = describe_plan(spec, "r", 30, 0, 30, False, shared=4)
    assert "30 of 30 targets to compute (0 in the catalog), 26 optimisations" in shared
    assert "optimisations" not in describe_plan(spec, "r", 30, 0, 30, False)
