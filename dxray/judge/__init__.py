"""Judging explanations: core vs spurious verdicts and attribute probes. Tensors in, verdicts out."""

from dxray.judge.probes import (
    EffectSize,
    ProbeResult,
    effect_size,
    probe_rates,
    run_probes,
)
from dxray.judge.verdict import (
    Thresholds,
    Verdict,
    aggregate,
    object_query,
    verdict,
    verdicts,
)

__all__ = [
    "EffectSize",
    "ProbeResult",
    "Thresholds",
    "Verdict",
    "aggregate",
    "effect_size",
    "object_query",
    "probe_rates",
    "run_probes",
    "verdict",
    "verdicts",
]
