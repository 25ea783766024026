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


def test_the_demo_names_the_dxray_the_user_ran(tmp_path, monkeypatch):
    """The SQL hints after a demo start with the command that runs this dxray: the venv's
    script relative to the folder, an installed one by its path, "dxray" when on PATH."""
    from dxray.cli.audit import dxray_command

    script = tmp_path / "venv" / "bin" / "dxray"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert dxray_command(str(script), cwd=tmp_path) == "venv/bin/dxray"
    assert dxray_command(str(script), cwd=tmp_path / "elsewhere") == str(script.resolve())
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(script.parent))
    assert dxray_command(str(script), cwd=tmp_path) == "dxray"
    assert dxray_command("/x/python3 -m dxray.cli") == "dxray"
