"""The sweep's table as text (ending with the SWEEP line) and its lift-vs-reliance scatter.

print(format_sweep(pool_sweep(results)))   # dxray.eval.sweep_table.pool_sweep
write_scatter(table, "docs/sweep-calibration.png")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from dxray.eval.sweep_table import RELIED, SweepTable
from dxray.text import text_table


def _cell(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.2f}"
    return str(v)


def _table(title: str, rows: Sequence[Mapping], note: str = "") -> str:
    if not rows:
        return f"{title}\n  (none)"
    cols = list(rows[0])
    lines = text_table(cols, [[_cell(r.get(c)) for c in cols] for r in rows])
    return "\n".join([title, *("  " + line for line in lines), *([f"  ({note})"] if note else [])])


def _pct(v: float) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:.0%}"


def headline(t: SweepTable) -> str:
    """The sweep's one line, in the eval's HEADLINE style."""
    c, e, u = t.classes, t.explanations, t.units
    units = f"units balanced {_pct(u.get('balanced_accuracy', math.nan))}"
    if t.unit_test:
        units = (
            f"units balanced {_pct(t.unit_test.get('balanced_accuracy', math.nan))} by the "
            f"unit test ({_pct(u.get('balanced_accuracy', math.nan))} by intervention)"
        )
    return (
        f"SWEEP: {len(t.worlds)} worlds; class shortcuts found {c['found']}/{c['relied']}, "
        f"false {c['false']} (between 0.5 and 1 nat: {c['between_flagged']}/{c['between']} "
        f"flagged); lift vs reliance spearman {_cell(t.calibration['spearman'])}, "
        f"MAE {_cell(t.calibration['mae'])} nats; object-free explanations single out "
        f"{e['found']}/{e['relied']}, false leads {e['false']}; {units} on {u['spurious']} "
        "spurious"
    )


def format_sweep(t: SweepTable) -> str:
    c, e, u, cal = t.classes, t.explanations, t.units, t.calibration

    def pooled(judge: str, v: dict) -> dict:
        def with_ci(k: str) -> str:
            lo, hi = v.get("intervals", {}).get(k, (math.nan, math.nan))
            return f"{_pct(v.get(k, math.nan))} [{_pct(lo)}, {_pct(hi)}]"

        return {"judge": judge, "units": v["units"], "spurious": v["spurious"],
                "uncertain": v["uncertain"], "accuracy": _pct(v.get("accuracy", math.nan)),
                "balanced": with_ci("balanced_accuracy"), "recall": with_ci("recall"),
                "precision": with_ci("precision")}  # fmt: skip

    judges = [("unit test", t.unit_test)] if t.unit_test else []
    judges.append(("intervention", u))

    parts = [
        _table("Sweep: per world", t.per_world,
               "relied: truth reliance >= 1 nat; false: found with reliance < 0.5; between: "
               "0.5-1 nat; singled_out / false_leads: the object-free explanations alone"),
        _table("Class shortcuts: the counterfactual test, pooled",
               [{"relied": c["relied"], "found": c["found"], "recall": _pct(
                   c["found"] / c["relied"] if c["relied"] else math.nan),
                 "unrelated": c["unrelated"], "false": c["false"], "between": c["between"],
                 "between_flagged": c["between_flagged"]}]),
        _table("Detection by truth reliance (nats)", t.curve),
        _table("Relied-on ties (>= 1 nat) by group", t.breakdown,
               "planted: planted ties of the group, relied on or not; found: the test; "
               "singled_out: the object-free explanations"),
        _table("Calibration: the test's lift vs the truth's reliance, every pair",
               [{k: v for k, v in cal.items() if k != "by_kind"}],
               "mae: mean |lift - reliance| in nats; scatter: docs/sweep-calibration.png"),
        _table("Calibration by kind of pair", cal.get("by_kind", [])),
        _table("Object-free explanations alone",
               [{"relied": e["relied"], "singled_out": e["found"], "unrelated": e["unrelated"],
                 "false_leads": e["false"], "false_per_world": e["false_per_world"],
                 "between": e["between"], "between_flagged": e["between_flagged"]}]),
        _table("Units, pooled (2,000-resample bootstrap 95% intervals)",
               [pooled(judge, v) for judge, v in judges],
               "unit test: the unit-shortcut test (factor alone vs the class's object, on "
               "renders); intervention: the unit's explanation with the objects removed"),
    ]  # fmt: skip
    if t.unit_test:
        parts.append(
            _table("Units by how the truth selected them: the unit test",
                   t.unit_test.get("by_selection", []))
        )  # fmt: skip
    parts.append(
        _table("Units by how the truth selected them: intervention", u.get("by_selection", []),
               "top / factor: the truth's top-5 per class / per planted tie; wide: the units "
               "it labels spurious among the top-20 of either, added to pool spurious units")
    )  # fmt: skip
    parts.append(
        _table("Units: where the verdicts go wrong", u.get("errors", []),
               "silent: activation <= 0.001 on its own explanation (the judge abstains); "
               "activation_vs_truth: the explanation's activation over the truth's response to "
               "the factor (spurious units) or to the class's object (core units)")
    )  # fmt: skip
    if t.stability:
        parts.append(_table("Stable verdicts: two runs of one audit", t.stability))
    parts.append(_table("Goals (issue #20, chosen before measuring)", t.goals))
    parts.append(headline(t))
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------
# The scatter, drawn with PIL (no plotting library in the environment)
# ---------------------------------------------------------------------------------------------


def write_scatter(t: SweepTable, path: str | Path, *, size: int = 560) -> Path:
    """Lift (y) against reliance (x), one dot per pair: filled red = found, hollow grey = not;
    squares are cue pairs, dots scene pairs; the diagonal and the 1-nat lines dashed."""
    from PIL import Image, ImageDraw

    path = Path(path)
    pts = t.points
    values = [p["reliance"] for p in pts] + [p["lift"] for p in pts] + [0.0, 1.0]
    lo, hi = math.floor(min(values)), math.ceil(max(values))
    margin = 48
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    span = size - 2 * margin

    def xy(a: float, b: float) -> tuple[float, float]:
        return (margin + (a - lo) / (hi - lo) * span, size - margin - (b - lo) / (hi - lo) * span)

    d.rectangle([margin, margin, size - margin, size - margin], outline="black")
    for v in range(lo, hi + 1):
        x, _ = xy(v, lo)
        _, y = xy(lo, v)
        d.line([x, size - margin, x, size - margin + 4], fill="black")
        d.line([margin - 4, y, margin, y], fill="black")
        d.text((x - 4, size - margin + 6), str(v), fill="black")
        d.text((margin - 18, y - 6), str(v), fill="black")

    def dashed(a, b, colour):
        (x0, y0), (x1, y1) = a, b
        steps = 60
        for i in range(0, steps, 2):
            f0, f1 = i / steps, (i + 1) / steps
            d.line([x0 + (x1 - x0) * f0, y0 + (y1 - y0) * f0,
                    x0 + (x1 - x0) * f1, y0 + (y1 - y0) * f1], fill=colour)  # fmt: skip

    dashed(xy(lo, lo), xy(hi, hi), (120, 120, 120))
    dashed(xy(RELIED, lo), xy(RELIED, hi), (70, 110, 200))
    dashed(xy(lo, RELIED), xy(hi, RELIED), (70, 110, 200))
    for p in sorted(pts, key=lambda p: p["found"]):
        x, y = xy(p["reliance"], p["lift"])
        box = [x - 3.5, y - 3.5, x + 3.5, y + 3.5]
        fill, outline = ((220, 40, 40), (150, 0, 0)) if p["found"] else (None, (110, 110, 110))
        (d.rectangle if p["kind"] == "cue" else d.ellipse)(box, fill=fill, outline=outline)
    cal = t.calibration
    d.text((margin, 12), f"lift vs reliance, {len(pts)} pairs of {len(t.worlds)} worlds: "
           f"spearman {_cell(cal['spearman'])}, MAE {_cell(cal['mae'])} nats", fill="black")  # fmt: skip
    d.text((size // 2 - 70, size - 22), "truth reliance (nats)", fill="black")
    d.text((4, 28), "test lift (nats)", fill="black")
    d.text((size - margin - 150, size - margin - 16), "red: found; square: cue", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
