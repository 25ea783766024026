"""A soak: an audit killed (kill -9, the whole process group) at seeded random moments, over
and over, through every stage (targets, vocabulary renders, the object-free pool, the
with-object renders, scoring), then resumed. After every kill no finished key is lost and
every current view holds one row per key; at the end the catalog's verdicts and shortcut
findings equal an uninterrupted run's.

Driven through the `dxray audit` command, as cron or a cluster would run it.
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml

from dxray.catalog.views import connect
from dxray.catalog.writer import CatalogWriter

KILLS = 20
SEED = 20261205
KEYED = {  # current views and their keys
    "explanations": "target_id, seed",
    "verdicts": "target_id, seed",
    "images": "target_id, seed",
    "audit": "target_id, seed",
    "shortcut_images": "render_id",
    "shortcut_pool": "render_id",
}


@pytest.fixture
def soak_spec(tiny_spec, tmp_path):
    spec = {**tiny_spec, "targets": {**tiny_spec["targets"], "seeds": [0]}}
    spec["shortcuts"] = {
        "enabled": True,
        "attributes": ["water", "sand", {"name": "a watermark", "overlay": "with a watermark"}],
        "seeds": 4,
        "pool": 16,
        "top": 4,
        "batch_size": 8,
    }
    spec["engine"] = {**spec["engine"], "batch_size": 2}  # several batches: kills land between
    return spec


def _write(spec: dict, catalog, path) -> str:
    data = {**spec, "output": {**spec["output"], "catalog": str(catalog)}}
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _audit(spec_file: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dxray.cli", "audit", spec_file],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes Ray's processes too
    )  # fmt: skip


def _state(catalog) -> dict[str, set]:
    con = connect(catalog, read_only=True)
    try:
        state = {}
        for view, key in KEYED.items():
            rows = con.sql(f"SELECT {key} FROM {view}").fetchall()
            assert len(rows) == len(set(rows)), f"{view}: a key twice"
            state[view] = set(rows)
        return state
    finally:
        con.close()


def _answer(catalog) -> tuple[list, list]:
    con = connect(catalog, read_only=True)
    try:
        verdicts = con.sql(
            "SELECT target_id, seed, status, verdict FROM audit ORDER BY ALL"
        ).fetchall()
        findings = con.sql(
            "SELECT class_name, attribute, finding, round(lift, 4) FROM class_shortcuts "
            "ORDER BY ALL"
        ).fetchall()
        return verdicts, findings
    finally:
        con.close()


@pytest.mark.slow
def test_an_audit_killed_twenty_times_resumes_to_the_uninterrupted_answer(soak_spec, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    started = time.perf_counter()
    whole = _audit(_write(soak_spec, reference, tmp_path / "reference.yaml"), env)
    assert whole.wait(timeout=600) == 0
    duration = time.perf_counter() - started
    expected = _answer(reference)
    assert expected[0] and expected[1]  # targets and shortcut rows to compare

    # Kill until KILLS kills have landed inside a run. A run that finishes before its kill
    # (its catalog was nearly complete) is checked against the reference and the soak goes
    # on in a fresh catalog, so that the kills keep landing in every stage.
    rng = random.Random(SEED)
    cycle, landed, tries = 0, 0, 0
    catalog, spec_file = _cycle(soak_spec, tmp_path, cycle)
    before: dict[str, set] = {view: set() for view in KEYED}
    while landed < KILLS:
        tries += 1
        assert tries <= 3 * KILLS, f"only {landed} of {tries} kills landed inside a run"
        process = _audit(spec_file, env)
        time.sleep(rng.uniform(0.3, duration))  # anywhere in a whole run: every stage
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            landed += 1
        else:
            assert process.wait() == 0 and _answer(catalog) == expected
            cycle += 1
            catalog, spec_file = _cycle(soak_spec, tmp_path, cycle)
            before = {view: set() for view in KEYED}
            continue
        now = _state(catalog)  # also: one row per key in every current view
        for view in KEYED:
            assert before[view] <= now[view], f"{view}: a finished key was lost"
        before = now
    final = _audit(spec_file, env)
    assert final.wait(timeout=600) == 0
    assert _answer(catalog) == expected
    # the run's commit record holds each (target, seed) once
    done = CatalogWriter(catalog).done_keys(_run_id(catalog))
    assert len(done) == len(expected[0])


def _cycle(spec: dict, tmp_path, cycle: int):
    catalog = tmp_path / f"soak-{cycle}"
    return catalog, _write(spec, catalog, tmp_path / f"soak-{cycle}.yaml")


def _run_id(catalog) -> str:
    con = connect(catalog, read_only=True)
    try:
        return con.sql("SELECT run_id FROM runs").fetchall()[0][0]
    finally:
        con.close()
