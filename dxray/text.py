"""Small text helpers for messages a user reads: an exception's first lines, a short list.

This module imports nothing from dxray, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Sequence

# How every table dxray prints (terminal, EVALUATION.md, the HTML report) shows a missing value.
MISSING = "–"


def first_lines(err: BaseException, count: int) -> str:
    """The first `count` non-blank lines of `err`'s message joined by spaces, without a final
    full stop (the messages that quote this go on with a sentence of their own); the exception's
    type name when the message is empty."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return " ".join(lines[:count]).rstrip(".") if lines else type(err).__name__


def first_line(err: BaseException) -> str:
    """`first_lines(err, 1)`."""
    return first_lines(err, 1)


def few(names: Sequence[str], limit: int = 5) -> str:
    """At most `limit` names joined by commas, then "and N more"; "none" for no names."""
    if not names:
        return "none"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
