"""Scheduled checkpoint scans: each checkpoint audited once (by content), diffs, dry run, lock.

The first test runs real audits on embedded Ray (127.0.0.1) with the tiny zoo of conftest.py;
the others fake finished runs in the catalog, so they need no Ray.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import yaml

from dxray.catalog.views import connect
from dxray.catalog.writer import CatalogWriter
from dxray.run.checkpoints import classifier_sha256, find_checkpoints
from dxray.run.scan import LOCK_FILE, ScanLocked, _spec_for, main_scan, scan
from dxray.run.scan_diffs import diff_path
from dxray.spec.model import AuditSpec, SpecError

HOUR = 3600.0


@pytest.fixture
def scan_spec(tiny_spec):
    """The tiny spec, smaller still: 2 classes, 1 seed, 1 iteration -> 2 targets per run."""
    data = {**tiny_spec}
    data["targets"] = {"classes": [0, 1], "seeds": [0]}
    data["engine"] = {**tiny_spec["engine"], "iterations": 1, "batch_size": 2}
    data["judge"] = {"probes": ["water"]}
    return AuditSpec.from_dict(data)


def _checkpoint(source, dest, *, age_hours, scale=None):
    """A copy of the classifier folder `source`, its weights scaled by `scale` (new bytes),
    every file dated `age_hours` ago (scans order checkpoints by that)."""
    shutil.copytree(source, dest)
    if scale is not None:
        from safetensors.torch import load_file, save_file

        weights = load_file(dest / "model.safetensors")
        save_file({k: v * scale for k, v in weights.items()}, dest / "model.safetensors")
    _date(dest, age_hours)
    return dest


def _date(path, age_hours):
    stamp = time.time() - age_hours * HOUR
    for file in [path, *path.rglob("*")]:
        os.utime(file, (stamp, stamp))


def _counts(catalog) -> dict:
    con = connect(catalog, read_only=True)
    try:
        tables = ("runs_log", "explanations", "verdicts", "images")
        return {t: con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in tables}
    finally:
        con.close()


def _fake_finished_run(spec, checkpoint, run_id=None):
    """Record a finished run of `checkpoint` under `spec`, as run_audit would (no results)."""
    sha = classifier_sha256(str(checkpoint))
    ckpt_spec = _spec_for(spec, checkpoint)
    run_id = run_id or ckpt_spec.run_id_for(sha)
    writer = CatalogWriter(spec.output.catalog)
    writer.write_run(
        run_id,
        name=spec.name,
        spec_yaml=ckpt_spec.to_yaml(),
        classifier=str(checkpoint),
        classifier_sha256=sha,
        num_targets=0,
    )
    writer.finish_run(run_id, "finished")
    return run_id


def _snapshot(folder) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_a_scan_audits_each_checkpoint_once_and_diffs_it_against_the_one_before(
    scan_spec, tiny_zoo, tmp_path
):
    watch = tmp_path / "checkpoints"
    watch.mkdir()
    a = _checkpoint(tiny_zoo / "classifier", watch / "step-100", age_hours=3)
    b = _checkpoint(tiny_zoo / "classifier", watch / "step-200", age_hours=2, scale=1.5)
    (watch / "train.log").write_text("not a checkpoint\n")
    catalog = scan_spec.output.catalog

    # 1. Two new checkpoints: two runs, and the diff of the second against the first. A scan
    #    started while this one runs finds the lock held and audits nothing.
    concurrent = []

    def progress(line):
        if line.startswith("audit ") and not concurrent:
            with pytest.raises(ScanLocked, match="another scan holds") as err:
                scan(watch, scan_spec, settle_seconds=0)
            concurrent.append(str(err.value))

    first = scan(watch, scan_spec, progress=progress)
    assert concurrent and LOCK_FILE in concurrent[0]
    assert [p.name for p, _ in first.audited] == ["step-100", "step-200"]
    assert not first.failed
    (a_run, _), (b_run, _) = [(r, p) for p, r in first.audited]
    assert a_run != b_run
    assert ("train.log", "not a classifier checkpoint") in [(p.name, w) for p, w in first.skipped]
    assert first.diffs == [diff_path(catalog, a_run, b_run)]
    counts = _counts(catalog)
    assert counts["runs_log"] == 4  # a "running" and a "finished" row per run
    assert counts["explanations"] == 4  # 2 targets x 2 runs
    assert not (tmp_path / "catalog" / LOCK_FILE).exists()

    # 2. Nothing new: nothing audited, no row and no diff added
    diffs_before = sorted((tmp_path / "catalog" / "diffs").iterdir())
    second = scan(watch, scan_spec)
    assert second.audited == [] and second.planned == [] and second.diffs == []
    assert _counts(catalog) == counts
    assert sorted((tmp_path / "catalog" / "diffs").iterdir()) == diffs_before

    # 3. A third checkpoint (new bytes): exactly one audit, and the diff from the second to it
    _checkpoint(tiny_zoo / "classifier", watch / "step-300", age_hours=1, scale=0.5)
    third = scan(watch, scan_spec)
    assert [p.name for p, _ in third.audited] == ["step-300"]
    c_run = third.audited[0][1]
    assert third.diffs == [diff_path(catalog, b_run, c_run)]
    diff = json.loads(third.diffs[0].read_text())
    assert diff["from_run"] == b_run and diff["to_run"] == c_run
    assert diff["from_checkpoint"].endswith("step-200")
    assert {t["target_id"] for t in diff["targets"]} == {"class:0", "class:1"}
    assert sum(diff["summary"]["changes"].values()) == 2
    assert _counts(catalog)["explanations"] == 6

    # 4. A renamed checkpoint and a copy keep their content: skipped, nothing audited
    os.rename(a, watch / "renamed")
    shutil.copytree(b, watch / "copy-of-200")  # copytree keeps the mtimes
    counts = _counts(catalog)
    fourth = scan(watch, scan_spec)
    assert fourth.audited == [] and fourth.diffs == []
    why = {p.name: w for p, w in fourth.skipped}
    assert why["renamed"] == f"already audited: run {a_run}"
    assert why["copy-of-200"] in (
        f"already audited: run {b_run}",
        f"same content as {watch / 'step-200'}",
    )
    assert _counts(catalog) == counts


def test_dry_run_lists_what_it_would_audit_and_writes_nothing(scan_spec, tiny_zoo, tmp_path):
    watch = tmp_path / "checkpoints"
    watch.mkdir()
    a = _checkpoint(tiny_zoo / "classifier", watch / "a", age_hours=3)
    b = _checkpoint(tiny_zoo / "classifier", watch / "b", age_hours=2, scale=2.0)
    _checkpoint(tiny_zoo / "classifier", watch / "c", age_hours=0, scale=3.0)  # being written
    a_run = _fake_finished_run(scan_spec, a)
    # b was audited with other settings only: still to do with these
    other = AuditSpec.from_dict({**scan_spec.to_dict(), "engine": {"iterations": 7}})
    _fake_finished_run(other, b)
    before = _snapshot(tmp_path)

    lines = []
    result = scan(watch, scan_spec, dry_run=True, progress=lines.append)
    assert result.dry_run and result.audited == [] and result.diffs == []
    expected_b = _spec_for(scan_spec, b).run_id_for(classifier_sha256(str(b)))
    assert result.planned == [(b, expected_b)]
    why = {p.name: w for p, w in result.skipped}
    assert why["a"] == f"already audited: run {a_run}"
    assert why["c"].startswith("changed 0 s ago")
    assert f"would audit {b} as run {expected_b}" in lines
    assert _snapshot(tmp_path) == before  # no lock, no hash cache, no diff, no run


def test_a_held_lock_stops_a_second_scan_with_a_clear_message(scan_spec, tiny_zoo, tmp_path):
    watch = tmp_path / "checkpoints"
    watch.mkdir()
    _checkpoint(tiny_zoo / "classifier", watch / "a", age_hours=1)
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    lock = catalog / LOCK_FILE
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": "earlier"}
    lock.write_text(json.dumps(holder))

    with pytest.raises(ScanLocked, match=f"another scan holds {lock}.*audits nothing"):
        scan(watch, scan_spec)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(scan_spec.to_dict()))
    lines = main_scan(str(watch), spec_file)
    assert len(lines) == 1 and lines[0].startswith("scan not started: another scan holds")
    assert json.loads(lock.read_text()) == holder  # the holder's lock is left alone
    assert not (catalog / "runs").exists()


@pytest.mark.parametrize("why", ["old", "dead process"])
def test_a_stale_lock_is_taken_over_with_a_warning(scan_spec, tiny_zoo, tmp_path, caplog, why):
    watch = tmp_path / "checkpoints"
    watch.mkdir()
    a = _checkpoint(tiny_zoo / "classifier", watch / "a", age_hours=1)
    _fake_finished_run(scan_spec, a)  # nothing to audit: no Ray needed
    lock = tmp_path / "catalog" / LOCK_FILE
    if why == "old":
        lock.write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
        os.utime(lock, (time.time() - 100 * HOUR,) * 2)
        expected = "untouched for 100.0 h"
    else:
        gone = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            check=True,
            capture_output=True,
            text=True,
        )  # a process that has exited: its pid is free
        lock.write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname()}))
        expected = "is gone"

    with caplog.at_level("WARNING", logger="dxray.scan"):
        result = scan(watch, scan_spec)
    assert result.audited == [] and result.failed == []
    assert any(
        "taking over the scan lock" in r.message and expected in r.message for r in caplog.records
    )
    assert not lock.exists()  # released at the end


def test_find_checkpoints_by_folder_or_glob_oldest_first(tiny_zoo, tmp_path):
    watch = tmp_path / "ckpt"
    watch.mkdir()
    _checkpoint(tiny_zoo / "classifier", watch / "z-old", age_hours=5)
    _checkpoint(tiny_zoo / "classifier", watch / "a-new", age_hours=1)
    (watch / "model.ts").write_bytes(b"torchscript")
    os.utime(watch / "model.ts", (time.time() - 3 * HOUR,) * 2)
    (watch / "notes.txt").write_text("")
    (watch / ".tmp-step-9").mkdir()  # hidden: a checkpoint still being moved in

    found, others = find_checkpoints(watch)
    assert [c.path.name for c in found] == ["z-old", "model.ts", "a-new"]
    assert [p.name for p in others] == ["notes.txt"]
    globbed, _ = find_checkpoints(f"{watch}/*-*")
    assert [c.path.name for c in globbed] == ["z-old", "a-new"]
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_checkpoints(tmp_path / "missing")


def test_a_spec_with_a_fixed_run_id_is_refused(scan_spec, tmp_path):
    spec = AuditSpec.from_dict({**scan_spec.to_dict(), "output": {"run_id": "fixed"}})
    with pytest.raises(SpecError, match="output.run_id"):
        scan(tmp_path, spec)


def test_a_checkpoint_rewritten_in_place_is_diffed_against_its_previous_content(
    scan_spec, tiny_zoo, tmp_path
):
    # The `runs/**/best` pattern: one path, new bytes after each improvement.
    best = _checkpoint(tiny_zoo / "classifier", tmp_path / "runs" / "exp" / "best", age_hours=3)
    before = _fake_finished_run(scan_spec, best)
    first = scan(str(tmp_path / "runs" / "**" / "best"), scan_spec)
    assert first.audited == [] and first.diffs == []  # one content so far: nothing to diff

    shutil.rmtree(best)
    _checkpoint(tiny_zoo / "classifier", best, age_hours=1, scale=2.0)
    after = _fake_finished_run(scan_spec, best)  # as if audited (the audit itself: test 1)
    assert after != before
    lines = []
    second = scan(str(tmp_path / "runs" / "**" / "best"), scan_spec, progress=lines.append)
    assert second.diffs == [diff_path(scan_spec.output.catalog, before, after)]
    diff = json.loads(second.diffs[0].read_text())
    assert diff["rewritten_in_place"] is True
    assert diff["from_checkpoint"] == diff["to_checkpoint"] == str(best)
    assert any("rewritten in place" in line for line in lines)

    third = scan(str(tmp_path / "runs" / "**" / "best"), scan_spec)
    assert third.diffs == []  # written once
