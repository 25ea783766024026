"""benchmarks/gpu_audit.py's plumbing, on the tiny zoo and the CPU: every stage of the worker's
code path is timed, the stages account for the wall time, and the projection follows from it.
(The numbers that matter need a GPU: docs/BENCHMARKS.md.)"""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_audit.py"


@pytest.fixture(scope="module")
def gpu_audit():
    spec = importlib.util.spec_from_file_location("gpu_audit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_stage_of_a_target_is_timed_on_the_real_worker_path(gpu_audit, tmp_path, capsys):
    out = tmp_path / "result.json"
    args = ["--arch", "tiny", "--device", "cpu", "--batch", "4", "--iterations", "2",
            "--steps", "1", "--units", "3", "--models", str(tmp_path / "models"),
            "--json", str(out)]  # fmt: skip
    result = gpu_audit.main(args)
    assert result["targets"] == 5 + 3  # the tiny zoo's classes and the CSV's units
    assert result["statuses"] == {"max_iterations": 8}
    stages = result["seconds_per_target"]
    assert set(stages) == set(gpu_audit.STAGES)
    assert all(seconds > 0 for seconds in stages.values()), stages  # intervention included
    total = result["seconds_per_target_total"]
    assert sum(stages.values()) <= total * 1.01  # the stages happen inside the timed wall
    assert stages["explain"] > 0.3 * total  # the loop dominates even on tiny models
    assert result["salient_minutes_1_gpu"] == pytest.approx(6000 * total / 60)
    assert result["salient_minutes_32_gpus"] == pytest.approx(6000 * total / 60 / 32)
    printed = capsys.readouterr().out
    assert "intervention" in printed and "targets per GPU-hour" in printed and out.is_file()
