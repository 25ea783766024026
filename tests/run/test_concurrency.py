"""Two audits of one run started at the same moment, as two real processes: one computes, the
other refuses before writing anything (or, if it comes second, finds nothing left to do), and
no table holds a duplicate row."""

import os
import subprocess
import sys

import yaml

from dxray.catalog.views import connect

KEYED = {  # table -> the columns that name one row
    "explanations": "run_id, target_id, seed",
    "verdicts": "run_id, target_id, seed",
    "images": "run_id, target_id, seed",
}


def test_two_audits_started_together_never_duplicate_a_row(tiny_spec, tmp_path):
    spec = {**tiny_spec, "targets": {"classes": [0, 1, 2], "seeds": [0, 1]}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dxray.cli", "audit", str(path)]
    procs = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0].decode() for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 2]), outputs
    if codes == [0, 2]:  # they overlapped: the loser says so, having computed nothing
        loser = outputs[[p.returncode for p in procs].index(2)]
        assert "holds" in loser and "this audit computes nothing" in loser, loser
    else:  # the second planned after the first had finished: nothing left for it
        assert any(" 0 computed, 6 already in the catalog" in o for o in outputs), outputs

    con = connect(spec["output"]["catalog"], read_only=True)
    try:
        for table, key in KEYED.items():
            rows, distinct = con.sql(
                f"SELECT count(*), count(DISTINCT ({key})) FROM raw_{table}"
            ).fetchall()[0]
            assert rows == distinct == 6, (table, rows, distinct)
    finally:
        con.close()
    assert not list((tmp_path / "catalog").glob(".run-*.lock"))
