"""The audits an evaluation runs, as specs: the main audit on a zoo's truth units, the fixed
release's classes, the probes and the shortcut vocabulary the world's factors give."""

from __future__ import annotations

from pathlib import Path

from dxray.spec.model import AuditSpec
from dxray.spec.parse import with_overrides


def eval_spec(spec: AuditSpec, zoo: str | Path, *, seeds: int, catalog: str | Path) -> AuditSpec:
    """`spec`, aimed at the zoo's truth: the zoo's models (generator, classifier, segmenter,
    wherever its manifest says they are), every class, every truth unit (and no others),
    `seeds` seeds, results in `catalog`. Engine and judge settings stay the spec's."""
    from dxray.toyworld.zoo import zoo_part

    if seeds < 1:
        raise ValueError(f"seeds must be >= 1; got {seeds}")
    units_csv = zoo_part(zoo, "truth") / "units.csv"
    if not units_csv.is_file():
        raise FileNotFoundError(f"{units_csv} is missing: write it with `dxray zoo truth {zoo}`")
    return with_overrides(
        spec,
        **{
            "generator.source": str(zoo_part(zoo, "generator")),
            "classifier": {"source": str(zoo_part(zoo, "classifier"))},
            "segmenter": {"source": str(zoo_part(zoo, "segmenter"))},
            "targets.classes": "all",
            "targets.units.top_k": 0,
            "targets.units.units": [],
            "targets.units.layer": "penultimate",
            "targets.units.csv": str(units_csv.resolve()),
            "targets.seeds": list(range(seeds)),
            "judge.probes": list(
                dict.fromkeys([*spec.judge.probes, *factor_probes(zoo), *object_probes(spec, zoo)])
            ),
            # The shortcut test on the world's own contexts and cues (every world's, tuned on
            # none): contexts as scenes, cues as overlays, in the world's caption grammar.
            "shortcuts.enabled": True,
            "shortcuts.attributes": world_vocabulary(zoo),
            "output.catalog": str(catalog),
            "output.run_id": None,
        },
    )


def world_vocabulary(zoo: str | Path) -> list:
    """The shortcut test's vocabulary for the zoo's world (`attribute_vocabulary`)."""
    from dxray.toyworld.scenes import attribute_vocabulary
    from dxray.toyworld.zoo import zoo_world

    return attribute_vocabulary(zoo_world(zoo))


def factor_probes(zoo: str | Path) -> list[str]:
    """A probe for every context and cue of the zoo's world ("water", "a watermark")."""
    return [e if isinstance(e, str) else e["name"] for e in world_vocabulary(zoo)]


def object_probes(spec: AuditSpec, zoo: str | Path) -> list[str]:
    """The judge's object query of every class of the zoo's world."""
    from dxray.toyworld.data import class_names
    from dxray.toyworld.zoo import zoo_world

    return [spec.judge.object_query(name) for name in class_names(zoo_world(zoo))]


def classes_only(spec: AuditSpec, classifier: str | Path) -> AuditSpec:
    """`spec` with another classifier, auditing its classes only."""
    return with_overrides(
        spec,
        **{
            "classifier": {"source": str(classifier)},
            "targets.units.top_k": 0,
            "targets.units.units": [],
            "targets.units.csv": None,
            "output.run_id": None,
        },
    )
