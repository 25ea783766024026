"""Judging explanations: core vs spurious verdicts (by object presence for classes, by
intervention for units) and attribute probes. Tensors in, verdicts out."""
