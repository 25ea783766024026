"""The audit pipeline end to end on real Ray (127.0.0.1 only) with a tiny zoo."""

import tempfile
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import torch

from dxray.catalog.sql import run_sql
from dxray.catalog.views import connect
from dxray.report import write_report
from dxray.run.pipeline import run_audit
from dxray.run.worker import CRASH_ONCE_ENV, AuditWorker
from dxray.spec import AuditSpec

EXPECTED = (5 + 1) * 2  # 5 classes and 1 unit, 2 seeds


def _count(catalog, view="explanations", where="") -> int:
    con = connect(catalog, read_only=True)
    try:
        return con.sql(f"SELECT count(*) FROM {view} {where}").fetchall()[0][0]
    finally:
        con.close()


def test_worker_without_ray_judges_and_renders(tiny_spec):
    from dxray.spec import expand_targets

    spec = AuditSpec.from_dict(tiny_spec)
    worker = AuditWorker(spec.to_dict())
    rows = expand_targets(spec, ["circle", "square", "triangle", "star", "cross"], "r1")[:3]
    out = worker.audit(rows)
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
    from dxray.spec import expand_targets

    units, remove = (how.split("-") + ["all"])[:2]
    tiny_spec["judge"] = {**tiny_spec["judge"], "units": units, "remove": remove}
    spec = AuditSpec.from_dict(tiny_spec)
    worker = AuditWorker(spec.to_dict())
    rows = expand_targets(spec, ["circle", "square", "triangle", "star", "cross"], "r1")
    rows = [r for r in rows if r["seed"] == 0][-2:]  # the cross class and the listed unit
    assert [r["kind"] for r in rows] == ["class", "unit"] and rows[1]["class_name"] is None
    rows.append({**rows[1], "target_id": "cross-unit", "class_index": 4, "class_name": "cross"})
    cls, loose, unit = worker.audit(rows)
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


def test_a_failing_target_becomes_an_error_row(tiny_spec):
    from dxray.spec import expand_targets

    spec = AuditSpec.from_dict(tiny_spec)
    worker = AuditWorker(spec.to_dict())
    rows = expand_targets(spec, ["circle", "square", "triangle", "star", "cross"], "r1")[:4]
    rows[2] = {**rows[2], "kind": "unit", "layer": "no.such.layer", "channel": 0}
    out = worker.audit(rows)
    assert [r["status"] for r in out].count("error") == 1
    assert out[2]["status"] == "error" and "no.such.layer" in out[2]["error"]
    assert out[0]["status"] != "error" and out[3]["status"] != "error"
    # an error row has every column of a result row: a batch mixing both becomes one table
    assert set(out[2]) == set(out[0])


def test_end_to_end_audit_sql_and_report(tiny_spec, tmp_path):
    spec = AuditSpec.from_dict(tiny_spec)
    seen = []
    before = set(Path(tempfile.gettempdir()).glob("dxray-ray-*"))
    summary = run_audit(spec, progress=lambda done, total, _s: seen.append((done, total)))
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
    from dxray.run import pipeline

    assert pipeline.ray_temp_dir is None  # the embedded Ray's temp folder is gone:
    assert set(Path(tempfile.gettempdir()).glob("dxray-ray-*")) <= before  # none left behind
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

    from dxray.cli import app

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
    assert not Path(spec["output"]["catalog"]).exists()  # nothing written, no Ray started


def test_a_run_with_failed_targets_says_so_and_the_cli_exits_1(tiny_spec, tmp_path, monkeypatch):
    """A target whose explanation raises (injected): an error row, the run "failed" with the
    count, `dxray audit` exits 1; a rerun retries it."""
    import yaml
    from typer.testing import CliRunner

    from dxray.cli import app
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

    from dxray.cli import app
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
