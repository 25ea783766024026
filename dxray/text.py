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


def one_line(text: str) -> str:
    """`text` as one printable line: control characters (a newline in a file name would forge
    a log line of its own) written as escapes, e.g. "\\n"."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def few(names: Sequence[str], limit: int = 5) -> str:
    """At most `limit` names joined by commas, then "and N more"; "none" for no names."""
    if not names:
        return "none"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def text_table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    right: Sequence[bool] | None = None,
    rule: bool = False,
) -> list[str]:
    """The lines of an aligned plain-text table: columns two spaces apart, each as wide as
    its widest cell, left-aligned unless `right` says otherwise (numbers read better right-
    aligned), a line of dashes under the header with `rule`. Every table dxray prints (SQL
    results, the evaluation, the zoo's gates, the truth) goes through here."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(str(h)), *(len(row[i]) for row in cells)]) for i, h in enumerate(header)]
    align = list(right) if right is not None else [False] * len(header)

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, align, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [line([str(h) for h in header])]
    if rule:
        lines.append("  ".join("-" * w for w in widths))
    return lines + [line(row) for row in cells]
