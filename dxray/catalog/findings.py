"""The answer a user acts on: what a run's classifier relies on, in one set of words.

Three kinds of result, never mixed:

- a **shortcut finding**: the class-shortcut test (docs/SHORTCUTS.md) measured that the class's
  score rises on an attribute rendered with no object of any class (a `class_shortcuts` row
  with `finding`: lift >= the spec's min_lift, its interval above 0);
- a **spurious unit** (`unit_summary` verdict 'spurious'): for a unit audited for a class, the
  unit-shortcut test found that an attribute with no object drives it more than the class's
  object does (its margin's interval above 0); for a unit the test did not read (no class, or
  the test off), the intervention: it keeps at least the spec's `judge.keep` share of its
  activation once the objects are removed from its explanation image (the majority of its
  seeds). `judged_by` says which;
- a **lead**: an attribute a class's object-free explanation singled out that the test did not
  confirm. Leads are shown apart, never beside findings.

Whether a class's own explanation shows its object (`class_summary.object_in_explanation`) is
none of these: it is context for a finding (`ShortcutFinding.relation`).

`read_answer(con, run_id)` reads them from a connected catalog (`dxray.catalog.views.connect`);
`Answer.lines()` is the terminal's text and the HTML report draws the same objects and
sentences; the release gate (`dxray.catalog.gate`) decides on the same definitions, read from
the same views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import duckdb

from dxray.text import MISSING


def odds_factor(lift: float) -> str:
    """e^lift, the factor by which the class's odds grow, said the way a reader says it:
    "2.9x", "15x", "1,100x"."""
    factor = math.exp(lift)
    if factor < 10:
        return f"{factor:.1f}x"
    if factor < 1000:
        return f"{factor:.0f}x"
    return f"{float(f'{factor:.2g}'):,.0f}x"


def nats(value: float) -> str:
    """ "1 nat", "2.5 nats"."""
    return f"{value:g} nat" + ("" if value == 1 else "s")


def _number(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


@dataclass(frozen=True)
class ShortcutFinding:
    """A class whose score rises on an attribute with none of the classes' objects in the
    image: the class-shortcut test's finding."""

    class_index: int
    class_name: str
    attribute: str
    kind: str  # "scene" (the image is the attribute) or "overlay" (drawn on a scene, paired)
    lift: float  # nats of centred logit over the vocabulary's average scene (overlay: paired)
    low: float
    high: float
    images: int  # usable images (overlay: pairs)
    confidence: float = 0.95
    with_object_lift: float | None = None  # what the attribute adds beside the class's object
    object_in_explanation: str | None = None  # shown | absent | unclear, or None: not audited
    object_shown: int = 0  # seeds whose explanation shows the object ...
    judged: int = 0  # ... of the judged seeds
    singled_out: bool = False  # the class's object-free explanation singled it out too

    @property
    def label(self) -> str:
        return f"{self.class_name} <- {self.attribute}"

    @property
    def odds(self) -> str:
        return odds_factor(self.lift)

    def sentence(self) -> str:
        """One plain sentence a reader can forward."""
        where = (
            f"when {self.attribute} is added to an image with no {self.class_name}"
            if self.kind == "overlay"
            else f"on {self.attribute} with no {self.class_name} in the image"
        )
        unit = "pairs" if self.kind == "overlay" else "images"
        return (
            f"{self.class_name}: its score rises {self.lift:.1f} nats (about {self.odds} the "
            f"odds) {where} ({self.images} {unit}, {self.confidence:.0%} interval "
            f"{self.low:.1f} to {self.high:.1f})"
        )

    def relation(self) -> str | None:
        """How this finding relates to the class's own explanation (the image optimised for
        the class), or None when the class's explanation was not audited."""
        name, seeds = self.class_name, f"{self.object_shown} of {self.judged} seeds"
        if self.object_in_explanation == "shown":
            return (
                f"Its own explanation paints the {name} ({seeds}), so that image does not "
                "show this shortcut: the test finds it by asking without the object."
            )
        if self.object_in_explanation == "absent":
            return (
                f"Its own explanation shows no {name} (in {self.judged - self.object_shown} "
                f"of {self.judged} seeds), which agrees: the class fires on context."
            )
        if self.object_in_explanation == "unclear":
            return f"Its own explanation is unclear about the {name} ({seeds} show it)."
        return None


@dataclass(frozen=True)
class SpuriousUnit:
    """A hidden unit judged spurious: by the unit-shortcut test (an attribute without any
    object drives it more than its class's object), or by the intervention (it keeps firing
    once the objects are cut out of its image)."""

    target_id: str
    layer: str
    channel: int
    class_name: str | None  # the class it was ranked for (top-k units), if any
    activation: float | None  # mean over seeds, on its explanation image
    activation_without_objects: float | None  # ... with the objects removed
    kept: float | None  # mean share of the activation kept
    keep: float  # the spec's threshold: spurious at this share or more
    spurious_seeds: int
    judged: int
    judged_by: str = "intervention"  # or "unit test"
    factor: str | None = None  # unit test: the attribute that drives it most
    factor_response: float | None = None  # ... its mean on that attribute's object-free renders
    object_response: float | None = None  # ... and on its class's object
    low: float | None = None  # the margin's interval
    high: float | None = None

    @property
    def name(self) -> str:
        return f"{self.layer}:{self.channel}"

    @property
    def label(self) -> str:
        return self.name + (f" (a top unit of {self.class_name})" if self.class_name else "")

    def sentence(self) -> str:
        if self.judged_by == "unit test":
            return (
                f"unit {self.label}: fires {_number(self.factor_response)} on {self.factor} with "
                f"no object vs {_number(self.object_response)} on the {self.class_name} "
                f"(margin {_number(self.low)} to {_number(self.high)}, 95% interval)"
            )
        kept = MISSING if self.kept is None else f"{self.kept:.0%}"
        return (
            f"unit {self.label}: keeps {kept} of its activation once every object is removed "
            f"from its image ({_number(self.activation)} -> "
            f"{_number(self.activation_without_objects)}; spurious at {self.keep:.0%} or more), "
            f"in {self.spurious_seeds} of {self.judged} seeds"
        )


@dataclass(frozen=True)
class Lead:
    """An attribute a class's object-free explanation singled out, not confirmed by the test."""

    class_name: str
    attribute: str
    rate: float  # share of the class's top pool images that show the attribute
    pool_rate: float | None  # ... and of the whole pool
    pool_lift: float | None  # the class's score on pool images with it minus without (nats)
    lift: float | None  # the test's lift for the pair (None: not in the vocabulary)
    low: float | None
    high: float | None
    min_lift: float

    @property
    def label(self) -> str:
        return f"{self.class_name} <- {self.attribute}?"

    def sentence(self) -> str:
        shown = f"{self.attribute} is in {self.rate:.0%} of its object-free explanation's images"
        if self.pool_rate is not None:
            shown += f" ({self.pool_rate:.0%} of all)"
        if self.pool_lift is not None:
            shown += f" and its score is {self.pool_lift:.1f} nats higher on those that show it"
        if self.lift is None:
            return f"{self.label} {shown}; the test's vocabulary has no such attribute"
        return (
            f"{self.label} {shown}, but the test measured {self.lift:.1f} nats "
            f"({self.low:.1f} to {self.high:.1f}): not a finding (needs {nats(self.min_lift)} "
            "with the interval above 0)"
        )


@dataclass
class Answer:
    """What one run found, findings first."""

    run_id: str
    classes: int
    units: int
    failed_seeds: int
    shortcut_tested: bool  # the run has the class-shortcut test's results
    attributes: int  # the vocabulary's attributes the test could use
    min_lift: float
    keep: float
    findings: list[ShortcutFinding] = field(default_factory=list)
    spurious_units: list[SpuriousUnit] = field(default_factory=list)
    leads: list[Lead] = field(default_factory=list)
    unit_test: bool = False  # the unit-shortcut test judged the run's class units

    @property
    def classes_with_shortcuts(self) -> int:
        return len({f.class_index for f in self.findings})

    def lines(self) -> list[str]:
        """The terminal's answer: findings, spurious units, then leads, each one line."""
        return [text for _, text in self.tagged_lines()]

    def tagged_lines(self) -> list[tuple[str, str]]:
        """`lines()` with what each line is: "head", "finding", "unit", "lead" or "note"."""
        out = []
        if self.shortcut_tested:
            head = (
                f"Shortcuts: {self.classes_with_shortcuts} of {self.classes} classes rely on an "
                f"attribute without their object ({len(self.findings)} findings; "
                f"{self.attributes} attributes tested)"
            )
            out += [("head", head + (":" if self.findings else "."))]
            out += [("finding", f"  - {f.sentence()}") for f in self.findings]
        else:
            out += [("head", "Shortcuts: not tested (the spec's shortcuts.enabled is off).")]
        if self.units:
            how = (
                "by the unit-shortcut test: an attribute without any object drives it more than "
                "its class's object"
                if self.unit_test
                else f"by removing the objects; spurious when a unit keeps {self.keep:.0%} or more"
            )
            head = f"Spurious units: {len(self.spurious_units)} of {self.units} ({how})"
            out += [("head", head + (":" if self.spurious_units else "."))]
            out += [("unit", f"  - {u.sentence()}") for u in self.spurious_units]
        if self.leads:
            out += [("head", "Leads the test did not confirm (not findings):")]
            out += [("lead", f"  - {lead.sentence()}") for lead in self.leads]
        if self.failed_seeds:
            out += [
                ("note", f"Failed seeds: {self.failed_seeds} (see the report or the audit view).")
            ]
        return out


def _rows(con: duckdb.DuckDBPyConnection, query: str, run_id: str) -> list[dict]:
    return con.sql(query, params={"run_id": run_id}).to_arrow_table().to_pylist()


@dataclass(frozen=True)
class RunThresholds:
    """The cut-offs a run was judged with (its spec's; the defaults when unknown)."""

    min_lift: float  # shortcuts: nats of lift for a finding
    confidence: float  # shortcuts: the interval's level
    keep: float  # units: spurious when this share of the activation survives
    core: float  # classes: object presence at or above: shown
    spurious: float  # classes: object presence at or below: absent


def run_thresholds(con: duckdb.DuckDBPyConnection, run_id: str) -> RunThresholds:
    """The thresholds of the spec the run was made with; the spec's defaults when the run's
    spec is not recorded or no longer parses."""
    from dxray.spec.model import JudgeSpec, ShortcutSpec
    from dxray.spec.parse import recorded_spec

    rows = _rows(con, "SELECT spec_yaml FROM runs WHERE run_id = $run_id", run_id)
    spec = recorded_spec(rows[0]["spec_yaml"], f"run {run_id}") if rows else None
    # an older or hand-written spec: the defaults are the best guess
    judge = spec.judge if spec is not None else JudgeSpec()
    shortcuts = spec.shortcuts if spec is not None else ShortcutSpec()
    return RunThresholds(
        shortcuts.min_lift, shortcuts.confidence, judge.keep, judge.core, judge.spurious
    )


def read_answer(con: duckdb.DuckDBPyConnection, run_id: str) -> Answer:
    """The findings, spurious units and leads of `run_id` on a connected catalog."""
    limits = run_thresholds(con, run_id)
    min_lift, confidence, keep = limits.min_lift, limits.confidence, limits.keep
    counts = _rows(
        con,
        "SELECT count(*) FILTER (WHERE kind = 'class') AS classes, "
        "count(*) FILTER (WHERE kind = 'unit') AS units, "
        "count(*) FILTER (WHERE judged_by = 'unit test') AS unit_tested, "
        "coalesce(sum(failed), 0) AS failed FROM target_summary WHERE run_id = $run_id",
        run_id,
    )[0]
    shortcuts = _rows(
        con,
        "SELECT * FROM class_shortcuts WHERE run_id = $run_id "
        "ORDER BY lift DESC NULLS LAST, class_index, attribute",
        run_id,
    )
    tested_classes = {r["class_index"] for r in shortcuts}
    explained = {
        r["class_index"]: r
        for r in _rows(
            con,
            "SELECT class_index, n_object_shown, judged FROM class_summary WHERE run_id = $run_id",
            run_id,
        )
    }
    findings = [
        ShortcutFinding(
            class_index=r["class_index"],
            class_name=r["class_name"],
            attribute=r["attribute"],
            kind=r["kind"],
            lift=r["lift"],
            low=r["low"],
            high=r["high"],
            images=r["images"],
            confidence=confidence,
            with_object_lift=r["with_object_lift"],
            object_in_explanation=r["object_in_explanation"],
            object_shown=(explained.get(r["class_index"]) or {}).get("n_object_shown") or 0,
            judged=(explained.get(r["class_index"]) or {}).get("judged") or 0,
            singled_out=bool(r["candidate"]),
        )
        for r in shortcuts
        if r["finding"]
    ]
    by_pair = {(r["class_index"], r["attribute"]): r for r in shortcuts}
    leads = []
    for c in _rows(
        con,
        "SELECT class_index, class_name, attribute, rate, pool_rate, pool_lift "
        "FROM shortcut_candidates "
        "WHERE run_id = $run_id AND candidate ORDER BY class_index, rate DESC, attribute",
        run_id,
    ):
        tested = by_pair.get((c["class_index"], c["attribute"]))
        if tested is not None and tested["finding"]:
            continue  # confirmed: it is a finding (marked singled_out there)
        leads.append(
            Lead(
                class_name=c["class_name"],
                attribute=c["attribute"],
                rate=c["rate"],
                pool_rate=c["pool_rate"],
                pool_lift=c.get("pool_lift"),
                lift=None if tested is None else tested["lift"],
                low=None if tested is None else tested["low"],
                high=None if tested is None else tested["high"],
                min_lift=min_lift,
            )
        )
    units = [
        SpuriousUnit(
            target_id=u["target_id"],
            layer=u["layer"],
            channel=u["channel"],
            class_name=u["class_name"],
            activation=u["mean_activation"],
            activation_without_objects=u["mean_activation_without_objects"],
            kept=u["mean_kept"],
            keep=keep,
            spurious_seeds=u["n_spurious"],
            judged=u["judged"],
            judged_by=u["judged_by"] or "intervention",
            factor=u["unit_factor"],
            factor_response=u["factor_response"],
            object_response=u["object_response"],
            low=u["unit_low"],
            high=u["unit_high"],
        )
        for u in _rows(
            con,
            "SELECT * FROM unit_summary WHERE run_id = $run_id AND verdict = 'spurious' "
            "ORDER BY unit_margin DESC NULLS LAST, mean_kept DESC NULLS LAST, layer, channel, "
            "class_index NULLS LAST",
            run_id,
        )
    ]
    attributes = len({r["attribute"] for r in shortcuts})
    return Answer(
        run_id=run_id,
        classes=counts["classes"] or len(tested_classes),
        units=counts["units"],
        failed_seeds=int(counts["failed"]),
        shortcut_tested=bool(shortcuts),
        attributes=attributes,
        min_lift=min_lift,
        keep=keep,
        findings=findings,
        spurious_units=units,
        leads=leads,
        unit_test=bool(counts["unit_tested"]),
    )
