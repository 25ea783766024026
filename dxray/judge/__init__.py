"""Judging explanations: core vs spurious verdicts (by object presence for classes, by
intervention for units) and attribute probes. Tensors in, verdicts out."""

from dxray.judge.intervention import UnitJudgement, judge_units, object_masks, remove_objects
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
    "UnitJudgement",
    "Verdict",
    "aggregate",
    "effect_size",
    "judge_units",
    "object_masks",
    "object_query",
    "probe_rates",
    "remove_objects",
    "run_probes",
    "verdict",
    "verdicts",
]
