"""The report's small HTML pieces: escaping, number formats, verdict badges, stat tiles.

Contract: every function returns a fragment of HTML in which any value that came from the
catalog has gone through `esc` (`html.escape`, quotes included); class names, words and error
texts are data, never markup. Missing numbers (None, NaN) read `dxray.text.MISSING`.
"""

from __future__ import annotations

import html

from dxray.text import MISSING


def esc(value) -> str:
    """Escaped text of any value (None -> "")."""
    return "" if value is None else html.escape(str(value), quote=True)


def fmt(value, digits: int = 2) -> str:
    """A number with `digits` decimals (MISSING for None or NaN); other values escaped."""
    if value is None or (isinstance(value, float) and value != value):
        return MISSING
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return esc(value)


def pct(value) -> str:
    """A share as a whole percentage (MISSING for None)."""
    return MISSING if value is None else f"{100 * value:.0f}%"


def probability(value, label: str = "p") -> str:
    """ " · p 0.85", or nothing for targets without a class probability (units)."""
    return "" if value is None else f" · {label} <b>{fmt(value)}</b>"


BADGES = ("core", "spurious", "uncertain", "shown", "absent", "unclear")


def badge(verdict: str | None, text: str | None = None) -> str:
    """A coloured badge: a unit's verdict (core, spurious, uncertain) or whether a class's
    explanation shows its object (shown, absent, unclear); anything else: "none"."""
    kind = verdict if verdict in BADGES else "none"
    label = text if text is not None else (verdict or "no verdict")
    return f'<span class="badge {kind}">{esc(label)}</span>'


def stat(key: str, value, label: str, note: str = "", tone: str = "") -> str:
    """One figure tile; `key` becomes its data-stat attribute (tests and scrapers read it)."""
    return (
        f'<div class="stat {tone}"><b data-stat="{esc(key)}">{esc(value)}</b>'
        f"<span>{esc(label)}</span><small>{esc(note)}</small></div>"
    )
