"""A quality gate of the toy zoo: `value op threshold`, and whether it holds; and the zoo's
record of its gates, `<zoo>/gates.json`.

A gate is made by `check`: the classifier and oracle gates (truth_gates.py), the segmenter's
(train_segmenter.py) and the generator's (generator_gates.py). A zoo's table adds each gate's group
(`GateRow`: generator, segmenter or classifier); `format_gates` prints it.

gates.json has one writer, `write_gates` (`dxray zoo check --write` through `check_zoo`, and
`dxray zoo train --parts classifiers` through `train_zoo_classifiers`), and one shape:

    {"world": "default",                                  # the zoo's world
     "shared": {"generator": "../default/generator"},     # parts shared from another zoo, if any
     "sampler": {"steps": 4, "guidance_scale": 1.0},      # the generator gates' (zoo check)
     "seconds": 26.6,                                     # to measure them
     "gates": [{"group": "classifier", "name": "classifier:unbiased_accuracy",
                "value": 0.9965, "threshold": 0.95, "op": ">=", "passed": true}, ...]}

This is the shape the committed zoos hold. Zoos trained before it may hold the classifier
trainer's old shape ({"gates": [rows without "group"], "all_passed", "training",
"truth_seconds"}, no world); `read_gates` reads both, as this one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dxray.text import text_table

OPS = (">=", ">", "<", "info")
GATES_FILE = "gates.json"


@dataclass(frozen=True)
class Gate:
    name: str
    value: float
    threshold: float
    op: str  # ">=", ">", "<", or "info": a measurement shown beside the gates, always passing
    passed: bool


def check(name: str, value: float, op: str, threshold: float) -> Gate:
    """The gate `value op threshold`."""
    value, threshold = float(value), float(threshold)
    holds = {">=": value >= threshold, ">": value > threshold, "<": value < threshold, "info": True}
    if op not in holds:
        raise ValueError(f"op must be one of {OPS}; got {op!r}")
    return Gate(name, value, threshold, op, bool(holds[op]))


@dataclass(frozen=True)
class GateRow:
    group: str  # generator | segmenter | classifier
    name: str
    value: float
    threshold: float
    op: str
    passed: bool


def gate_rows(group: str, gates: Iterable[Gate]) -> list[GateRow]:
    """`gates` as rows of the zoo's table, in `group`."""
    return [GateRow(group, **asdict(g)) for g in gates]


def format_gates(rows: list[GateRow]) -> str:
    """The gate table `dxray zoo check` prints, and the count of passed and failed gates ("info"
    rows are shown, not counted)."""
    cells = []
    for r in rows:
        info = r.op == "info"
        target = "" if info else f"{r.op} {r.threshold:g}"
        result = "info" if info else "pass" if r.passed else "FAIL"
        cells.append([r.group, r.name, f"{r.value:.3f}", target, result])
    header = ["group", "gate", "value", "target", "result"]
    lines = text_table(header, cells, right=[False, False, True, True, False])
    gates = [r for r in rows if r.op != "info"]
    failed = sum(not r.passed for r in gates)
    lines.append(f"gates: {len(gates) - failed} passed, {failed} failed")
    return "\n".join(lines)


def write_gates(
    zoo: str | Path,
    rows: Sequence[GateRow],
    *,
    world: str,
    seconds: float,
    sampler: Mapping[str, float] | None = None,
    shared: Mapping[str, str] | None = None,
) -> Path:
    """Record `rows` in `<zoo>/gates.json`, in the module docstring's shape: `world` the zoo's
    world's name, `seconds` what measuring them took, `sampler` the generator gates' sampler
    setting (`check_zoo` gives it), `shared` the parts the zoo shares from others (relative
    paths)."""
    record = {
        "world": world,
        **({"shared": dict(shared)} if shared else {}),
        **({"sampler": dict(sampler)} if sampler is not None else {}),
        "seconds": round(seconds, 1),
        "gates": [asdict(row) for row in rows],
    }
    path = Path(zoo) / GATES_FILE
    path.write_text(json.dumps(record, indent=2))
    return path


def read_gates(zoo: str | Path) -> dict[str, Any]:
    """`<zoo>/gates.json` in the shape `write_gates` writes, from either shape (see the module
    docstring): the old classifier trainer's rows are all classifier gates, and it named no
    world, measured no generator and timed only the truth, so the result has no "world",
    "sampler" or "seconds" (`zoo_world` then reads a training record). Raises `ValueError`
    naming the file when it reads as neither, `OSError` when it cannot be read."""
    path = Path(zoo) / GATES_FILE
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not readable JSON ({e})") from e
    gates = data.get("gates", []) if isinstance(data, dict) else None
    if not isinstance(gates, list) or not all(isinstance(g, dict) for g in gates):
        raise ValueError(f"{path}: expected an object with a list of gates")
    if all("group" in g for g in gates):
        return data
    # The classifier trainer's old shape: {"gates", "all_passed", "training", "truth_seconds"}:
    # the gates of `classifier_gates`, which the zoo's table groups as "classifier"
    return {"gates": [{"group": "classifier", **g} for g in gates]}
