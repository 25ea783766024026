"""The rows a run computes: one per (target, seed), planned from the spec and the classifier.

    rows = expand_targets(spec, classifier.class_names, run_id, unit_ranking=rank)
    objective = objective_for(spec, rows[0])     # the engine's objective of a row
    rows = by_work(rows)    # rows of one (objective, seed) side by side: they share a work

A row holds exactly `TARGET_KEYS`, the target fields of the catalog's explanations table
(`dxray.catalog.schema.TARGET_FIELDS`, the one place they are declared): the run, the target
(`class:<i>` or `unit:<layer>:<channel>:<class or ->`), its kind, class, layer, channel, the
objective's repr and the seed. Order and duplicates: see `expand_targets`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dxray.catalog.schema import TARGET_FIELDS, SchemaError, check_run_id
from dxray.spec.model import AuditSpec, SpecError
from dxray.spec.parse import split_unit
from dxray.spec.unit_csv import read_units
from dxray.yamlio import suggest

if TYPE_CHECKING:
    from dxray.explain.objective import Objective

TARGET_KEYS = tuple(f.name for f in TARGET_FIELDS)

# unit_ranking(class_index, k) -> [(layer, channel), ...], best first
UnitRanking = Callable[[int, int], list[tuple[str, int]]]


def expand_targets(
    spec: AuditSpec,
    class_names: list[str],
    run_id: str,
    *,
    unit_ranking: UnitRanking | None = None,
) -> list[dict[str, Any]]:
    """The target rows of a run: one per (target, seed), in a fixed order, no duplicates.

    Order: the classes (as listed, or by index for "all"), the listed units, each class's
    ranked units (`unit_ranking(class_index, top_k)` -> [(layer, channel), ...], best first),
    then the CSV's units of audited classes (in file order); every target with every seed, the
    seeds innermost. A unit reached twice for the same class is kept once.
    """
    # 1. Check inputs
    if not class_names:
        raise ValueError("class_names is empty: the classifier's class names are needed")
    try:
        check_run_id(run_id)
    except SchemaError as err:
        raise ValueError(str(err)) from None
    source = str(spec.source_path) if spec.source_path is not None else "<dict>"
    units = spec.targets.units
    if units.top_k and unit_ranking is None:
        raise ValueError(
            f"targets.units.top_k is {units.top_k}: pass unit_ranking(class_index, k), the "
            "function that ranks the classifier's units for a class"
        )

    # 2. The audited classes, by index or name; the judge's per-class queries name real classes
    classes = _resolve_classes(spec.targets.classes, class_names, source)
    for name in spec.judge.class_queries:
        if name not in class_names:
            raise SpecError(
                f"{source}: judge.class_queries.{name}: no class of the classifier is named "
                f"{name!r}" + suggest(name, class_names, n=5)
            )

    # 3. Targets, duplicates dropped (a unit ranked and in the CSV for one class is one target)
    targets: dict[str, dict[str, Any]] = {}

    def add(kind: str, class_index: int | None, layer: str | None, channel: int | None) -> None:
        if kind == "class":
            target_id = f"class:{class_index}"
        else:
            target_id = f"unit:{layer}:{channel}:{'-' if class_index is None else class_index}"
        targets.setdefault(
            target_id,
            {
                "target_id": target_id,
                "kind": kind,
                "class_index": class_index,
                "class_name": None if class_index is None else class_names[class_index],
                "layer": layer,
                "channel": channel,
            },
        )

    for c in classes:
        add("class", c, None, None)
    for unit in units.units:
        layer, channel = split_unit(unit)
        add("unit", None, layer, channel)
    if units.top_k:
        for c in classes:
            for layer, channel in _ranked(unit_ranking, c, units.top_k):
                add("unit", c, layer, channel)
    if units.csv is not None:
        audited = set(classes)
        for c, channel in _read_unit_csv(spec, class_names, source):
            if c in audited:
                add("unit", c, units.layer, channel)

    # 4. Every target with every seed
    rows = []
    for target in targets.values():
        objective = repr(objective_for(spec, target))
        for seed in spec.targets.seeds:
            rows.append({"run_id": run_id, **target, "objective": objective, "seed": seed})
    return rows


def work_key(row: Mapping[str, Any]) -> tuple[str, int]:
    """What a target row's explanation depends on: its objective and its seed. A unit ranked
    for two classes is one objective: its rows share one optimisation (`by_work`)."""
    return str(row["objective"]), int(row["seed"])


def by_work(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` in order, but each row that shares its `work_key` with an earlier one moved
    next to it, so that a batch cut on distinct keys holds every row of a work."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(work_key(row), []).append(row)
    return [row for group in groups.values() for row in group]


def objective_for(spec: AuditSpec, row: Mapping[str, Any]) -> Objective:
    """The engine objective of a target row: the class objective the spec asks for, or the
    unit's mean activation."""
    from dxray.explain.objective import ClassCE, ClassLogit, Unit

    if row["kind"] == "unit":
        return Unit(row["layer"], int(row["channel"]))
    make = ClassCE if spec.targets.objective == "ce" else ClassLogit
    return make(int(row["class_index"]))


def _resolve_classes(classes, class_names: list[str], source: str) -> list[int]:
    n = len(class_names)
    if classes == "all":
        return list(range(n))
    resolved: dict[int, int] = {}  # class index -> position in the list
    for i, key in enumerate(classes):
        path = f"targets.classes[{i}]"
        # As the classifier reads it: a name first; "3" is an index unless a class is so named.
        if isinstance(key, str) and key in class_names:
            index = class_names.index(key)
        elif isinstance(key, str) and not _is_index(key.strip()):
            by_lower = {name.lower(): name for name in class_names}
            close = difflib.get_close_matches(key.lower(), list(by_lower), n=5, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""
            raise SpecError(
                f"{source}: {path}: the classifier has no class named {key!r}{hint} "
                f"Give a class name or an index in 0..{n - 1}."
            )
        else:
            index = int(key)
            if not 0 <= index < n:
                raise SpecError(
                    f"{source}: {path}: class index {index} out of range: the classifier has "
                    f"{n} classes (0..{n - 1})"
                )
        if index in resolved:
            raise SpecError(
                f"{source}: {path}: {key!r} is class {index} ({class_names[index]!r}), already "
                f"listed as targets.classes[{resolved[index]}]"
            )
        resolved[index] = i
    return list(resolved)


def _is_index(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _ranked(unit_ranking: UnitRanking, class_index: int, k: int) -> list[tuple[str, int]]:
    ranked = list(unit_ranking(class_index, k))
    if len(ranked) > k:
        raise ValueError(
            f"unit_ranking({class_index}, {k}) returned {len(ranked)} units, not <= {k}"
        )
    for item in ranked:
        ok = (
            isinstance(item, tuple | list)
            and len(item) == 2
            and isinstance(item[0], str)
            and item[0]
            and isinstance(item[1], int)
            and not isinstance(item[1], bool)
            and item[1] >= 0
        )
        if not ok:
            raise ValueError(
                f"unit_ranking({class_index}, {k}) must return (layer, channel) pairs, got {item!r}"
            )
    return [(layer, channel) for layer, channel in ranked]


def _read_unit_csv(spec: AuditSpec, class_names: list[str], source: str) -> list[tuple[int, int]]:
    """(class_index, feature_index) pairs of the unit CSV, in file order."""
    table = read_units(spec)
    for unit in table.units:
        if unit.class_index >= len(class_names):
            raise SpecError(
                f"{source}: targets.units.csv: '{table.path}' line {unit.line}: class index "
                f"{unit.class_index} out of range: the classifier has {len(class_names)} "
                "classes. Is the CSV for another classifier?"
            )
    return [(u.class_index, u.feature_index) for u in table.units]
