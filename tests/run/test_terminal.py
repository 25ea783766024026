"""What a piped `dxray demo` prints: what it will do, a few lines per stage, the summary; what
Ray and the models print goes to the catalog's log (and to the terminal with --verbose)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

# Lines the terminal of `make demo` showed before (docs/BENCHMARKS.md, `make demo`)
CHATTER = (
    "Loading weights",  # the models' weight-loading bars, from every actor
    "were passed to",  # diffusers on the tiny decoder's config
    "ray_remote_args",  # Ray's deprecation of map_batches(max_restarts=...)
    "Token authentication",  # Ray's notice
    "core_worker",  # Ray's error line about actor constructor arguments
    "logging_progress",  # Ray Data's banners
    "Running Dataset",
    "Started a local Ray instance",
)


def _env() -> dict:
    """This environment as `make demo` has it: weight-loading bars on (conftest.py turns
    them off for the tests)."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    return {**env, "OMP_NUM_THREADS": "1"}


def _demo(spec_path: Path, *extra: str) -> str:
    env = _env()
    run = subprocess.run(
        [sys.executable, "-m", "dxray.cli", "demo", "--spec", str(spec_path), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900,
    )  # fmt: skip
    out = run.stdout.decode()
    assert run.returncode == 0, out
    return out


def test_a_piped_demo_prints_its_plan_a_few_lines_per_stage_and_the_summary(tiny_spec, tmp_path):
    spec = dict(tiny_spec)
    spec["shortcuts"] = {"enabled": True, "template": "{}", "seeds": 2, "batch_size": 2,
                         "attributes": ["water", "sand"], "pool": 8, "top": 2}  # fmt: skip
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = _demo(path)
    lines = out.splitlines()
    assert not [line for line in lines if any(c in line for c in CHATTER)], out
    assert lines[0].startswith("run tiny-") and "12 of 12 targets to compute" in lines[0]
    log_line = re.search(r"output: (\S+\.log)", lines[1])
    assert log_line, out
    log = Path(log_line.group(1))
    assert log.parent == Path(spec["output"]["catalog"]) / "logs" and log.is_file()
    # a line when a stage starts and at each quarter: 6 batches of targets -> 5 lines
    targets = [line for line in lines if line.lstrip().startswith("targets ")]
    assert 2 <= len(targets) <= 5 and targets[-1].split()[-3] == "12/12", targets
    for stage in ("vocabulary renders", "pool renders"):
        bars = [line for line in lines if line.lstrip().startswith(stage)]
        assert 2 <= len(bars) <= 5, (stage, out)
    assert any(line.startswith("audit tiny-") for line in lines), out
    # The chatter is in the log instead
    text = log.read_text()
    # (Ray prints its token notice once per machine: not asserted)
    assert "Started a local Ray instance" in text
    assert "Loading weights" in text  # the hosts' bars, forwarded by Ray

    # --verbose: the chatter on the terminal too (and still in the log)
    env = _env()
    other = tmp_path / "other"
    run = subprocess.run(
        [sys.executable, "-m", "dxray.cli", "audit", str(path), "--limit", "1", "--verbose",
         "--catalog", str(other)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900,
    )  # fmt: skip
    verbose = run.stdout.decode()
    assert run.returncode == 0, verbose
    assert "Started a local Ray instance" in verbose and "1 of 12 targets to compute" in verbose
    assert "Started a local Ray instance" in next((other / "logs").glob("audit-*.log")).read_text()


def test_bars_live_on_a_terminal_and_a_few_lines_on_a_pipe():
    import io

    from dxray.run.progress import TerminalProgress

    def feed(progress):
        progress.plan("run r: 2 stages")
        for done in range(0, 33, 4):  # two stages side by side, 9 updates each
            progress.stage("targets", done, 32)
            progress.stage("pool renders", done, 32)

    piped = io.StringIO()
    feed(TerminalProgress(piped, live=False))
    lines = piped.getvalue().splitlines()
    assert lines[0] == "run r: 2 stages"
    for stage in ("targets", "pool renders"):
        mine = [line for line in lines if line.strip().startswith(stage)]
        assert len(mine) == 5 and mine[-1].split()[-3] == "32/32", mine  # start + 4 quarters
    live = io.StringIO()
    with TerminalProgress(live, live=True, tick=60) as progress:  # no redraw of its own here
        feed(progress)
    text = live.getvalue()
    # the block redrawn in place: after its first line, then after both
    assert text.count("\x1b[1F") == 1 and text.count("\x1b[2F") == 2 * 9 - 2
    assert text.rstrip("\n").endswith("\x1b[K")


def test_live_bars_keep_their_clock_moving_between_batches_and_stop_with_the_block():
    """A stage whose first batch takes a minute must not look frozen: the live block is
    redrawn every `tick` while a stage runs; a finished stage's clock stops; leaving the
    block stops the redrawing."""
    import io
    import time

    from dxray.run.progress import TerminalProgress

    stream = io.StringIO()
    with TerminalProgress(stream, live=True, tick=0.05) as progress:
        progress.stage("targets", 0, 30)
        deadline = time.monotonic() + 10
        while stream.getvalue().count("\x1b[1F") < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stream.getvalue().count("\x1b[1F") >= 3  # redrawn with no new batch
        progress.stage("targets", 30, 30)
        time.sleep(0.3)
        finished = stream.getvalue()
        # all stages done: nothing is redrawn, and the line shows the stage's own time
        assert finished.rstrip("\n").endswith("\x1b[K") and "30/30" in finished[-80:]
        time.sleep(0.3)
        assert stream.getvalue() == finished
        progress.stage("pool", 0, 8)
    after = stream.getvalue()
    time.sleep(0.3)
    assert stream.getvalue() == after  # closed: the ticker stopped
