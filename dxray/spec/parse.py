"""Reading an audit spec: YAML in, a validated `AuditSpec` out, or a `SpecError` naming the
file, the field path and what is allowed.

    spec = load_spec("pipelines/toy.yaml")
    spec = with_overrides(spec, **{"engine.iterations": 10, "ray.workers": 2})

Each section is read key by key against its dataclass's fields with the strict checker of
`dxray.yamlio` (the one toy worlds use too). Model sources are checked for form only: whether a
folder or hub id exists is the audit's preflight's question, so a spec written for a GPU
cluster validates on a laptop.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, get_args

from dxray.spec.model import (
    _SLUG,
    _SLUG_RULE,
    CLASSIFIER_SOURCE_KEYS,
    LCM_MAX_STEPS,
    NAME_MAX,
    RUN_ID_MAX,
    AuditSpec,
    DecoderKind,
    DType,
    EngineSpec,
    GateSpec,
    GradMode,
    InitKind,
    JudgeSpec,
    ModelRef,
    ObjectiveKind,
    OutputSpec,
    RaySpec,
    RemoveKind,
    SamplerKind,
    SamplerSpec,
    ShortcutSpec,
    SpecError,
    Targets,
    UnitJudge,
    UnitTargets,
)
from dxray.spec.unit_csv import read_units, unit_csv_path
from dxray.yamlio import Checker, Section, read_yaml, suggest
from dxray.yamlio import kind as _kind


def _fields(cls: type) -> list[str]:
    return [f.name for f in fields(cls) if f.name != "source_path"]


def _section(
    data: Any, path: str, source: str, cls: type, required: Mapping[str, str] = {}
) -> Section:  # noqa: B006
    """One mapping of the spec, read against the fields of `cls`."""
    return Section(
        data, path, Checker(source, error=SpecError), allowed=_fields(cls), required=required
    )


def load_spec(path: str | Path) -> AuditSpec:
    """Read and validate an audit spec YAML file."""
    path = Path(path)
    data = read_yaml(path, what="the audit spec", error=SpecError)
    spec = parse_spec(data, str(path))
    spec = dataclasses.replace(spec, source_path=path.resolve())
    csv_path = unit_csv_path(spec)
    if csv_path is not None and csv_path.exists():  # a missing one: the audit's preflight
        read_units(spec)
    return spec


def recorded_spec(spec_yaml: str | None, source: str = "<recorded spec>") -> AuditSpec | None:
    """The spec a run recorded (its `runs.spec_yaml`), or None when there is none or this
    version cannot read it (an older spec format): the one way every reader of a run's
    settings (scan, gate, eval, the report's thresholds) parses it."""
    import yaml

    try:
        return parse_spec(yaml.safe_load(spec_yaml or ""), source)
    except (SpecError, yaml.YAMLError, TypeError, ValueError, KeyError):
        return None


def with_overrides(spec: AuditSpec, **dotted: Any) -> AuditSpec:
    """A copy of `spec` with fields replaced by dotted path, validated like a file:
    `with_overrides(spec, **{"engine.iterations": 10, "ray.workers": 2})`."""
    label = f"{spec.source_path or '<dict>'} (with overrides)"
    data = spec.to_dict()
    for key, value in dotted.items():
        parts = key.split(".")
        if not all(parts):
            raise SpecError(f"{label}: {key!r} is not a field path; write e.g. 'engine.iterations'")
        node = data
        for depth, part in enumerate(parts[:-1]):
            if node.get(part) is None:
                node[part] = {}  # a new section: validation rejects it if it is not a field
            elif not isinstance(node[part], dict):
                where = ".".join(parts[: depth + 1])
                raise SpecError(f"{label}: {where}: holds a value, not a section; cannot set {key}")
            node = node[part]
        node[parts[-1]] = value
    return dataclasses.replace(parse_spec(data, label), source_path=spec.source_path)


_REQUIRED = {
    "name": f"a short id for the audit ({_SLUG_RULE}); it names the run and the catalog",
    "generator": "the diffusion model that renders explanations: a directory or a hub id",
    "classifier": "the classifier to audit: a directory, a hub id or a loader spec",
    "segmenter": "the text-prompted segmenter (CLIPSeg) that judges images",
}
_SOURCE_WHY = {
    "generator": "a diffusers directory or hub id",
    "classifier": "a directory, a hub id, 'torchvision:<name>', or a loader mapping",
    "segmenter": "a directory or hub id",
}


def parse_spec(data: Any, source: str) -> AuditSpec:
    """Validate parsed YAML into an `AuditSpec`; errors name `source` and the field path."""
    top = _section(data, "", source, AuditSpec, required=_REQUIRED)
    name = top.text("name", None, pattern=_SLUG, rule=_SLUG_RULE, max_length=NAME_MAX)
    generator = _parse_model(top, "generator")
    classifier = _parse_model(top, "classifier")
    segmenter = _parse_model(top, "segmenter")
    return AuditSpec(
        name=name,
        generator=generator,
        classifier=classifier,
        segmenter=segmenter,
        targets=_parse_targets(top.section("targets", allowed=_fields(Targets))),
        engine=_parse_engine(top.section("engine", allowed=_fields(EngineSpec))),
        judge=_parse_judge(top.section("judge", allowed=_fields(JudgeSpec))),
        shortcuts=_parse_shortcuts(top.section("shortcuts", allowed=_fields(ShortcutSpec))),
        gate=_parse_gate(top.section("gate", allowed=_fields(GateSpec))),
        output=_parse_output(top.section("output", allowed=_fields(OutputSpec)), name),
        ray=_parse_ray(top.section("ray", allowed=_fields(RaySpec))),
    )


def _parse_model(top: Section, role: str) -> ModelRef:
    value = top.data[role]
    if isinstance(value, str):
        value = {"source": value}  # shorthand: a model is often just its source
    if not isinstance(value, Mapping):
        raise top.error(
            role,
            "expected a directory or hub id, or a mapping with keys source, dtype"
            + (", tiny_decoder" if role == "generator" else "")
            + f"; got {_kind(value)}",
        )
    loader_keys = [key for key in value if key in CLASSIFIER_SOURCE_KEYS and key != "source"]
    if role == "classifier" and loader_keys:
        raise top.error(
            f"{role}.{loader_keys[0]}",
            "loader options go inside the source: classifier: {source: {source: "
            "w.safetensors, factory: pkg.module:build, ...}, dtype: ...}",
        )
    sec = _section(value, role, top.source, ModelRef, required={"source": _SOURCE_WHY[role]})
    source = sec.data["source"]
    if role == "classifier" and isinstance(source, Mapping):
        source = _parse_classifier_source(source, sec.at("source"), sec.source)
    elif not isinstance(source, str) or not source.strip():
        more = ", or a mapping for load_classifier" if role == "classifier" else ""
        raise sec.error("source", f"expected a directory or hub id{more}; got {_kind(source)}")
    tiny_decoder = sec.text("tiny_decoder", None, nullable=True)
    if tiny_decoder is not None and role != "generator":
        raise sec.error("tiny_decoder", "only the generator has a tiny decoder")
    return ModelRef(
        source=source,
        dtype=sec.choice("dtype", "float32", get_args(DType)),
        tiny_decoder=tiny_decoder,
    )


def _parse_classifier_source(source: Mapping, path: str, file: str) -> dict[str, Any]:
    for key in source:
        if key not in CLASSIFIER_SOURCE_KEYS:
            raise SpecError(
                f"{file}: {path}.{key}: unknown loader key; allowed: "
                f"{', '.join(CLASSIFIER_SOURCE_KEYS)}" + suggest(key, CLASSIFIER_SOURCE_KEYS)
            )
    inner = source.get("source")
    if not isinstance(inner, str) or not inner.strip():
        raise SpecError(
            f"{file}: {path}.source: expected the weights file, directory or hub id, got "
            f"{_kind(inner)}"
        )
    return copy.deepcopy(dict(source))


def _parse_targets(sec: Section) -> Targets:
    classes = _parse_classes(sec)
    units = _parse_units(sec.section("units", allowed=_fields(UnitTargets)))
    seeds = sec.sequence("seeds", [0], "integer seeds")
    if not seeds:
        raise sec.error("seeds", "needs at least one seed")
    seen: dict[int, int] = {}
    for i, seed in enumerate(seeds):
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise sec.error(f"seeds[{i}]", f"expected an integer in 0..2**63-1, got {_kind(seed)}")
        if seed in seen:
            raise sec.error(f"seeds[{i}]", f"seed {seed} is listed twice (also at [{seen[seed]}])")
        seen[seed] = i
    if classes == () and (units.top_k or units.csv is not None):
        key = "units.top_k" if units.top_k else "units.csv"
        raise sec.error(key, "units are ranked per audited class, but targets.classes is empty")
    if classes == () and not units.units:
        raise sec.error("classes", "nothing to audit: no classes and no units listed")
    return Targets(
        classes=classes,
        objective=sec.choice("objective", "ce", get_args(ObjectiveKind)),
        units=units,
        seeds=tuple(seeds),
    )


def _parse_classes(sec: Section) -> Literal["all"] | tuple[int | str, ...]:
    value = sec.value("classes", "all")
    if value == "all":
        return "all"
    if isinstance(value, str):
        raise sec.error(
            "classes",
            f"expected 'all' or a list of class indices and names (one class: [{value}]), "
            f"got {value!r}" + suggest(value, ["all"]),
        )
    items = sec.sequence("classes", [], "class indices and names")
    seen: dict[int | str, int] = {}
    for i, item in enumerate(items):
        is_index = isinstance(item, int) and not isinstance(item, bool) and item >= 0
        if not (is_index or (isinstance(item, str) and item.strip())):
            raise sec.error(
                f"classes[{i}]", f"expected a class index >= 0 or a class name, got {_kind(item)}"
            )
        if item in seen:
            raise sec.error(f"classes[{i}]", f"{item!r} is listed twice (also at [{seen[item]}])")
        seen[item] = i
    return tuple(items)


def _parse_units(sec: Section) -> UnitTargets:
    top_k = sec.integer("top_k", 0, lo=0)
    layer = sec.text("layer", None, nullable=True)
    units = sec.texts("units", (), "units", "a unit 'layer.path:channel'")
    for i, unit in enumerate(units):
        try:
            split_unit(unit)
        except ValueError as err:
            raise sec.error(f"units[{i}]", str(err)) from None
    csv_path = sec.text("csv", None, nullable=True)
    if csv_path is not None and layer is None:
        raise sec.error(
            "layer",
            "required with targets.units.csv: the CSV gives channels, the layer says "
            "where they live (e.g. avgpool for a torchvision ResNet-50)",
        )
    return UnitTargets(top_k=top_k, layer=layer, units=units, csv=csv_path)


def split_unit(unit: str) -> tuple[str, int]:
    """ "layer4.2:17" -> ("layer4.2", 17), the syntax of `dxray.models.classifier.parse_unit`."""
    layer, sep, channel = unit.strip().rpartition(":")
    if not sep or not layer or not channel.isdigit():
        raise ValueError(
            f"bad unit {unit!r}: expected 'layer.path:channel' with a channel index >= 0, "
            "e.g. 'layer4.2:17'"
        )
    return layer, int(channel)


def _parse_engine(sec: Section) -> EngineSpec:
    template = sec.text("template", EngineSpec.template)
    if template.count("{}") != 1:
        raise sec.error(
            "template",
            f"{template!r} must contain '{{}}' exactly once: the learned vectors go there",
        )
    init_words = sec.texts("init_words", EngineSpec.init_words, "words", "a word")
    if not init_words:
        raise sec.error("init_words", "needs at least one word")
    return EngineSpec(
        iterations=sec.integer("iterations", EngineSpec.iterations, lo=1),
        lr=sec.number("lr", EngineSpec.lr, lo=0.0, open_lo=True),
        n_vectors=sec.integer("n_vectors", EngineSpec.n_vectors, lo=1),
        template=template,
        init=sec.choice("init", EngineSpec.init, get_args(InitKind)),
        init_words=init_words,
        hard_prompt=sec.boolean("hard_prompt", EngineSpec.hard_prompt),
        norm_weight=sec.number("norm_weight", EngineSpec.norm_weight, lo=0.0),
        sampler=_parse_sampler(sec.section("sampler", allowed=_fields(SamplerSpec))),
        decoder=sec.choice("decoder", EngineSpec.decoder, get_args(DecoderKind)),
        decoder_checkpoint=sec.boolean("decoder_checkpoint", EngineSpec.decoder_checkpoint),
        decode_micro_batch=sec.integer("decode_micro_batch", None, lo=1, nullable=True),
        stop_prob=sec.number(
            "stop_prob", EngineSpec.stop_prob, lo=0.0, hi=1.0, open_lo=True, nullable=True
        ),
        stop_patience=sec.integer("stop_patience", EngineSpec.stop_patience, lo=1),
        batch_size=sec.integer("batch_size", EngineSpec.batch_size, lo=1),
    )


def _parse_sampler(sec: Section) -> SamplerSpec:
    kind = sec.choice("kind", SamplerSpec.kind, get_args(SamplerKind))
    steps = sec.integer("steps", SamplerSpec.steps, lo=1)
    if kind == "lcm" and steps > LCM_MAX_STEPS:
        raise sec.error("steps", f"LCM sampling takes at most {LCM_MAX_STEPS} steps, got {steps}")
    return SamplerSpec(
        kind=kind,
        steps=steps,
        # 1 is no guidance; below 1 the guided and unguided predictions swap roles.
        guidance_scale=sec.number("guidance_scale", None, lo=1.0, nullable=True),
        grad_mode=sec.choice("grad_mode", SamplerSpec.grad_mode, get_args(GradMode)),
        checkpoint=sec.boolean("checkpoint", SamplerSpec.checkpoint),
    )


def _parse_judge(sec: Section) -> JudgeSpec:
    template = sec.text("object_template", JudgeSpec.object_template)
    if "{}" not in template:
        raise sec.error(
            "object_template", f"{template!r} must contain '{{}}' where the class name goes"
        )
    core = sec.number("core", JudgeSpec.core, lo=0.0, hi=1.0)
    spurious = sec.number("spurious", JudgeSpec.spurious, lo=0.0, hi=1.0)
    if not spurious < core:
        raise sec.error(
            "spurious",
            f"must be below judge.core ({core:g}), got {spurious:g}: presence at or below "
            "spurious means the object is absent, at or above core that it is there",
        )
    queries = sec.value("class_queries", {})
    if not isinstance(queries, Mapping):
        raise sec.error(
            "class_queries", f"expected a mapping class name -> query, got {_kind(queries)}"
        )
    for name, query in queries.items():
        if not isinstance(name, str):
            raise sec.error(f"class_queries.{name}", "class names are strings: quote the key")
        if not isinstance(query, str) or not query.strip():
            raise sec.error(
                f"class_queries.{name}", f"expected a non-empty query, got {_kind(query)}"
            )
    return JudgeSpec(
        object_template=template,
        core=core,
        spurious=spurious,
        probes=sec.texts("probes", (), "queries", "a query"),
        class_queries=dict(queries),
        units=sec.choice("units", JudgeSpec.units, get_args(UnitJudge)),
        keep=sec.number("keep", JudgeSpec.keep, lo=0.0, hi=1.0, open_lo=True),
        remove=sec.choice("remove", JudgeSpec.remove, get_args(RemoveKind)),
    )


def _parse_shortcuts(sec: Section) -> ShortcutSpec:
    template = sec.text("template", ShortcutSpec.template)
    if template.count("{}") != 1:
        raise sec.error(
            "template", f"{template!r} must contain '{{}}' exactly once: the attribute goes there"
        )
    attributes = sec.value("attributes", None)
    if attributes is not None:
        # Entries are checked by dxray.shortcuts.vocabulary, which skips (and reports) a bad
        # one instead of refusing the whole audit; only the list itself is checked here.
        attributes = tuple(copy.deepcopy(sec.sequence("attributes", (), "attributes")))
    objects = sec.value("objects", "all")
    if objects != "all" and (isinstance(objects, bool) or not isinstance(objects, int)):
        raise sec.error(
            "objects", f"expected 'all' or a number of top classes (e.g. 5), got {_kind(objects)}"
        )
    if isinstance(objects, int) and objects < 1:
        raise sec.error("objects", f"must be >= 1, got {objects}")
    seeds = sec.integer("seeds", ShortcutSpec.seeds, lo=1)
    unit_seeds = sec.integer("unit_seeds", None, lo=1, nullable=True)
    if unit_seeds is not None and unit_seeds > seeds:
        raise sec.error(
            "unit_seeds", f"{unit_seeds} is more than seeds ({seeds}): use at most {seeds}"
        )
    return ShortcutSpec(
        enabled=sec.boolean("enabled", ShortcutSpec.enabled),
        template=template,
        attributes=attributes,
        seeds=seeds,
        objects=objects,
        with_object=sec.choice(
            "with_object", ShortcutSpec.with_object, ("findings", "all", "none")
        ),
        min_lift=sec.number("min_lift", ShortcutSpec.min_lift, lo=0.0),
        confidence=sec.number("confidence", ShortcutSpec.confidence, lo=0.5, hi=0.999),
        min_images=sec.integer("min_images", ShortcutSpec.min_images, lo=1),
        guidance_scale=sec.number("guidance_scale", None, lo=1.0, nullable=True),
        batch_size=sec.integer("batch_size", ShortcutSpec.batch_size, lo=1),
        pool=sec.integer("pool", ShortcutSpec.pool, lo=0),
        top=sec.integer("top", ShortcutSpec.top, lo=1),
        fill=sec.choice("fill", ShortcutSpec.fill, ("texture", "blur", "mean")),
        units=sec.boolean("units", ShortcutSpec.units),
        unit_seeds=unit_seeds,
    )


def _parse_gate(sec: Section) -> GateSpec:
    return GateSpec(
        lift_margin=sec.number("lift_margin", GateSpec.lift_margin, lo=0.0),
        units=sec.boolean("units", GateSpec.units),
    )


def _parse_output(sec: Section, name: str) -> OutputSpec:
    return OutputSpec(
        catalog=sec.text("catalog", f"catalogs/{name}"),
        run_id=sec.text(
            "run_id", None, nullable=True, pattern=_SLUG, rule=_SLUG_RULE, max_length=RUN_ID_MAX
        ),
    )


def _parse_ray(sec: Section) -> RaySpec:
    return RaySpec(
        address=sec.text("address", None, nullable=True),
        workers=sec.integer("workers", RaySpec.workers, lo=1),
        num_gpus_per_worker=sec.number("num_gpus_per_worker", RaySpec.num_gpus_per_worker, lo=0.0),
        num_cpus_per_worker=sec.integer("num_cpus_per_worker", RaySpec.num_cpus_per_worker, lo=1),
        max_retries=sec.integer("max_retries", RaySpec.max_retries, lo=0),
    )
