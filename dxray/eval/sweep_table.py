"""The sweep's pooled table (placeholder, filled in below)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass
class SweepTable:
    worlds: int = 0
    data: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.data, indent=1)


def pool_sweep(results):
    return SweepTable(len(results))


def format_sweep(table) -> str:
    return f"SWEEP: {table.worlds} worlds"


def write_scatter(table, path) -> None:
    pass
