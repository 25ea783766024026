"""Finding checkpoints for a scan: a symlink loop under a `**` watch is not followed."""

import os
import time

import pytest

from dxray.run import checkpoints
from dxray.run.checkpoints import find_checkpoints


def test_a_symlink_loop_under_a_recursive_glob_lists_each_checkpoint_once(tmp_path):
    ckpt = tmp_path / "runs" / "a"
    ckpt.mkdir(parents=True)
    (ckpt / "classifier.json").write_text("{}")
    (ckpt / "back").symlink_to(tmp_path / "runs")  # a link back up: a loop
    (tmp_path / "runs" / "b.safetensors").write_bytes(b"x")
    found, others = find_checkpoints(f"{tmp_path}/runs/**")
    assert sorted(c.path.name for c in found) == ["a", "b.safetensors"]
    assert len(others) < 5  # was one entry per trip round the loop (41,778 seen)


def test_a_glob_that_matches_too_much_is_refused(tmp_path, monkeypatch):
    for i in range(5):
        (tmp_path / f"f{i}.txt").write_text("")
    monkeypatch.setattr(checkpoints, "MAX_MATCHES", 3)
    with pytest.raises(ValueError, match="matches more than 3 paths: narrow the glob"):
        find_checkpoints(f"{tmp_path}/*.txt")


def test_a_failed_checkpoint_fails_the_scan_in_lines_nobody_can_forge(
    tiny_spec, tmp_path, monkeypatch
):
    """A checkpoint whose audit fails: one line each (its name's newline escaped, no
    traceback), and the scan raises CheckpointsFailed (exit 1) once the others are done."""
    from dxray.run import scan  # the session starts Ray only when a host is needed: never here
    from dxray.spec.model import AuditSpec

    watch = tmp_path / "ckpts"
    bad = watch / "bad\nscan of ckpts: 0 failed"
    bad.mkdir(parents=True)
    (bad / "classifier.json").write_text("{}")
    for path in (bad / "classifier.json", bad):  # settled: written an hour ago
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    spec_data = {
        **tiny_spec,
        "output": {**tiny_spec.get("output", {}), "catalog": str(tmp_path / "c")},
    }
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(AuditSpec.from_dict(spec_data).to_yaml())

    def audit_fails(spec, **kwargs):
        raise RuntimeError("the weights do not load\n  File 'x.py', line 1")

    monkeypatch.setattr(scan, "run_audit", audit_fails)
    lines = []
    with pytest.raises(scan.CheckpointsFailed, match="1 checkpoint.s. failed to audit"):
        scan.main_scan(f"{watch}/*", spec_file, echo=lines.append)
    assert all("\n" not in line for line in lines)
    assert not any(line.startswith("scan of ckpts: 0 failed") for line in lines)
    failed = [line for line in lines if line.startswith("FAILED")]
    assert len(failed) == 1 and "bad\\nscan of" in failed[0]
    assert "RuntimeError: the weights do not load" in failed[0] and "File 'x.py'" not in failed[0]
