"""The dxray command's errors: one line, and the traceback with --debug."""

import subprocess
import sys


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "dxray.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_debug_shows_the_traceback_of_a_one_line_input_error(tmp_path):
    plain = run("sql", str(tmp_path / "nope"), "SELECT 1")
    assert plain.returncode == 2 and "no catalog at" in plain.stderr
    assert "Traceback" not in plain.stderr
    debug = run("--debug", "sql", str(tmp_path / "nope"), "SELECT 1")
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr
    assert "FileNotFoundError" in debug.stderr and "no catalog at" in debug.stderr
