"""SIGTERM (cron, Kubernetes and CI timeouts) to a running audit: one line, exit 143, the temp
folder removed; and a dead run's temp folder is removed by the next run."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dxray.run.session import OWNER_FILE, RAY_TEMP_PREFIX, remove_stale_temp_dirs


def test_a_dead_runs_temp_folder_is_removed_and_a_live_ones_kept(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    for name, pid in (("dead", dead.pid), ("live", os.getppid()), ("mine", os.getpid())):
        folder = tmp_path / f"{RAY_TEMP_PREFIX}{name}"
        folder.mkdir()
        (folder / OWNER_FILE).write_text(f"{pid}\n")
    (tmp_path / f"{RAY_TEMP_PREFIX}unknown").mkdir()  # no owner recorded: left alone
    removed = remove_stale_temp_dirs(str(tmp_path))
    assert removed == [str(tmp_path / f"{RAY_TEMP_PREFIX}dead")]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [f"{RAY_TEMP_PREFIX}{n}" for n in ("live", "mine", "unknown")]


def test_sigterm_stops_an_audit_in_one_line_and_leaves_no_temp_folder(tiny_spec, tmp_path):
    # a short temp root: Ray's socket paths inside it must stay under 108 bytes
    temp = Path(tempfile.mkdtemp(prefix="dx", dir="/tmp"))
    try:
        _sigterm(tiny_spec, tmp_path, temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _sigterm(tiny_spec, tmp_path, temp):
    stale = temp / f"{RAY_TEMP_PREFIX}killed"  # a kill -9'd run's folder
    stale.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (stale / OWNER_FILE).write_text(f"{dead.pid}\n")
    spec = {**tiny_spec, "engine": {**tiny_spec["engine"], "iterations": 100}}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"}
    audit = subprocess.Popen(
        [sys.executable, "-m", "dxray.cli", "audit", str(spec_file)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 400
    catalog = tmp_path / "catalog"
    while time.time() < deadline and audit.poll() is None:
        ours = [p for p in temp.glob(f"{RAY_TEMP_PREFIX}*") if p != stale]
        # the first batch of targets is in: the signal lands inside the targets stage
        if ours and not stale.exists() and (catalog / "explanations").exists():
            break
        time.sleep(0.5)
    assert audit.poll() is None, audit.communicate()
    audit.send_signal(signal.SIGTERM)
    out, err = audit.communicate(timeout=120)
    assert audit.returncode == 143, err[-3000:]
    assert "interrupted: rerun the same command to resume" in err
    assert "Traceback" not in err and "Fatal Python error" not in err and "*** " not in err
    assert list(temp.glob(f"{RAY_TEMP_PREFIX}*")) == []  # its own, and the dead run's
