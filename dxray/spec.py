"""The audit spec: what to audit, with which models, how hard, and where it runs.

An audit is one YAML file; `pipelines/toy.yaml` documents every field. `load_spec` reads it
into a frozen `AuditSpec` and checks every field on the way. An unknown key, a value of the
wrong type, a number out of range or a choice that does not exist raises `SpecError`, whose
message names the file, the field path and what is allowed:

    pipelines/toy.yaml: engine.iteratons: unknown key; allowed: iterations, lr, ...
    (did you mean 'iterations'?)

Typical use:

    spec = load_spec("pipelines/toy.yaml")
    spec = with_overrides(spec, **{"engine.iterations": 10, "ray.workers": 2})
    rows = expand_targets(spec, classifier.class_names, run_id)   # dxray.run.targets

Model sources are checked for form only. Whether a directory or hub id exists is for the
loaders to find out when the audit starts, so a spec written for a GPU cluster validates on a
laptop. Model paths are passed on as written (relative to the directory dxray runs from); the
unit CSV is relative to the spec file, because it belongs with the spec.

torch is imported only when an engine object is asked for (`EngineSpec.to_explain_config`,
`JudgeSpec.thresholds`), so loading and checking a spec stays instant.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from math import isfinite
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import yaml

from dxray.labels import UnitCsv, UnitCsvError, read_unit_csv
from dxray.yamlio import StrictLoader as _StrictLoader

if TYPE_CHECKING:
    from dxray.explain.optimize import ExplainConfig
    from dxray.judge.verdict import Thresholds

# The engine's choices, written out here so that checking a spec needs no torch.
# tests/test_spec.py keeps them equal to the engine's own.
DType = Literal["float32", "bfloat16", "float16"]
ObjectiveKind = Literal["logit", "ce"]
SamplerKind = Literal["auto", "lcm", "ddim"]
GradMode = Literal["full", "detached", "last"]
InitKind = Literal["random", "words"]
DecoderKind = Literal["vae", "tiny"]
UnitJudge = Literal["intervention", "presence"]
RemoveKind = Literal["all", "own"]
LCM_MAX_STEPS = 50  # LCM's timestep grid is its teacher's 50-step schedule
# The keys of a classifier dict source (`load_classifier`'s SPEC_KEYS).
CLASSIFIER_SOURCE_KEYS = (
    "source", "factory", "factory_kwargs", "input_size", "mean", "std", "class_names", "outputs",
)  # fmt: skip

# A name that can go into a path and a Hive partition ("run_id=<id>/"): no "/", no "=".
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SLUG_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit"
# A run id names a partition folder and a lock file: at most 128 characters (the catalog's
# rule, dxray.catalog.schema.RUN_ID). A derived one is "<name>-<8 hex>-<8 hex>", so a name
# may take 128 - 18.
RUN_ID_MAX = 128
NAME_MAX = RUN_ID_MAX - 18


class SpecError(ValueError):
    """An audit spec that cannot be used; the message names the file, the field and the fix."""


# ---------------------------------------------------------------------------------------------
# The typed spec
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A model to load. `source` goes to its loader unchanged: a directory or a hub id, and for
    a classifier any form `load_classifier` takes, dicts with a factory included."""

    source: str | dict[str, Any]
    dtype: DType = "float32"  # the CPU default; bfloat16 halves a GPU's memory and time
    tiny_decoder: str | None = None  # generator only: a TAESD-like decoder used while optimising

    def torch_dtype(self):
        """`dtype` as a torch.dtype."""
        import torch

        return getattr(torch, self.dtype)


@dataclass(frozen=True)
class UnitTargets:
    """Hidden units to explain, beside the classes.

    A unit CSV (Salient ImageNet's labels) has a header line and one row per unit:

        class_index,feature_index
        0,17
        0,412

    `feature_index` is a channel of `layer`; `class_index` the class it was annotated for.
    Other columns (a core/spurious label, say) are ignored here.
    """

    top_k: int = 0  # per audited class, ranked by head weight x mean activation; 0: none
    # The layer that top_k and csv channels live on (e.g. "avgpool" for a torchvision ResNet-50).
    # None: the ranking picks (the input of the classifier's last linear layer); a csv needs it.
    layer: str | None = None
    units: tuple[str, ...] = ()  # "layer.path:channel", explained for no class in particular
    csv: str | None = None  # relative to the spec file


@dataclass(frozen=True)
class Targets:
    """What to explain: classes and units, each once per seed."""

    classes: Literal["all"] | tuple[int | str, ...] = "all"  # indices and/or names
    # The class log-probability: unlike the logit, it also pushes the other classes down, so
    # the image shows what sets the class apart rather than what makes any class confident.
    objective: ObjectiveKind = "ce"
    units: UnitTargets = field(default_factory=UnitTargets)
    seeds: tuple[int, ...] = (0,)  # noise seeds; each one a full explanation of every target


@dataclass(frozen=True)
class SamplerSpec:
    """`dxray.explain.sampler.SamplerConfig` as a spec writes it (`engine.sampler`)."""

    kind: SamplerKind = "auto"  # "lcm" for an LCMScheduler, else "ddim"
    steps: int = 4
    # None: 8.0 for LCM-distilled UNets, 1.0 (no classifier-free guidance) otherwise.
    guidance_scale: float | None = None
    grad_mode: GradMode = "full"
    checkpoint: bool = False  # recompute UNet activations in backward: less memory, ~1.5x time


@dataclass(frozen=True)
class EngineSpec:
    """The explain engine's settings (`ExplainConfig`), plus how many targets share a batch.

    Defaults are the engine's; see docs/ENGINE.md for what each one does.
    """

    iterations: int = 200
    lr: float = 0.1
    n_vectors: int = 4
    template: str = "a photo of {}"
    init: InitKind = "random"
    init_words: tuple[str, ...] = ("object",)  # used when init is "words"
    hard_prompt: bool = False
    norm_weight: float = 0.0
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    decoder: DecoderKind = "tiny"  # while optimising; the final image always uses the full VAE
    decoder_checkpoint: bool = False
    decode_micro_batch: int | None = None
    stop_prob: float | None = 0.9  # None: always run every iteration
    stop_patience: int = 3
    # Targets optimised together in one batch on one worker. Rows are independent, so this
    # changes speed and memory, not results (up to rounding).
    batch_size: int = 8

    def to_explain_config(self) -> ExplainConfig:
        """The engine's config for these settings."""
        from dxray.explain.optimize import ExplainConfig
        from dxray.explain.sampler import SamplerConfig

        return ExplainConfig(
            iterations=self.iterations,
            lr=self.lr,
            n_vectors=self.n_vectors,
            template=self.template,
            init=self.init,
            init_words=self.init_words,
            hard_prompt=self.hard_prompt,
            norm_weight=self.norm_weight,
            sampler=SamplerConfig(**dataclasses.asdict(self.sampler)),
            decoder=self.decoder,
            decoder_checkpoint=self.decoder_checkpoint,
            decode_micro_batch=self.decode_micro_batch,
            stop_prob=self.stop_prob,
            stop_patience=self.stop_patience,
        )


@dataclass(frozen=True)
class JudgeSpec:
    """How explanation images are judged: the object query, the verdict cut-offs, the probes."""

    object_template: str = "a {}"  # the segmenter's query for a class's object: "a tench"
    core: float = 0.5  # presence at or above: the object is there
    spurious: float = 0.2  # presence at or below: the object is not there
    probes: tuple[str, ...] = ()  # attribute queries scored on every image ("a watermark")
    class_queries: dict[str, str] = field(default_factory=dict)  # class name -> its own query
    # How unit targets are judged (class targets always by presence): "intervention" removes
    # the objects from the unit's image and measures the unit again (dxray.judge.intervention);
    # "presence" asks whether the unit's class's object is in the image, like a class target.
    units: UnitJudge = "intervention"
    keep: float = 0.5  # intervention: a unit keeping this share of its activation is spurious
    # intervention: remove every class's object ("all": one segmenter decoder pass per class
    # and image) or only the unit's own class's ("own": for classifiers with many classes)
    remove: RemoveKind = "all"

    def thresholds(self) -> Thresholds:
        """The verdict cut-offs."""
        from dxray.judge.verdict import Thresholds

        return Thresholds(core=self.core, spurious=self.spurious)

    def object_query(self, class_name: str) -> str:
        """The segmenter's query for `class_name`: its override, else the template's."""
        if class_name in self.class_queries:
            return self.class_queries[class_name]
        from dxray.judge.verdict import object_query

        return object_query(class_name, self.object_template)


@dataclass(frozen=True)
class ShortcutSpec:
    """The class-shortcut test (dxray.shortcuts): does a class fire on an attribute without its
    object? Renders every attribute from text with no object, keeps the images the segmenter
    confirms, and scores every class's centred logit on them (docs/SHORTCUTS.md)."""

    enabled: bool = False
    # How an attribute's text becomes a prompt: "a photo of {}" for SD-family generators.
    template: str = "a photo of {}"
    # Entries as dxray.shortcuts.vocabulary reads them: "water", {name: a watermark, overlay:
    # with a watermark}, {name: ..., prompt: ...}. None: the judge's probes, each a scene.
    # Unusable entries are skipped with a message (and a row in the catalog), not a crash.
    attributes: tuple[Any, ...] | None = None
    seeds: int = 16  # noise seeds per prompt: 16 images per attribute before the checks
    # Objects an object-free image must not show: "all" the classes', or the classifier's k
    # most likely on the image (an integer: a 1,000-class model checks 5 queries, not 1,000).
    objects: Literal["all"] | int = "all"
    # The with-object variant ("{object} on {attribute}", paired): for the classes with a
    # finding ("findings"), every class ("all": cost grows with the classes) or none.
    with_object: Literal["findings", "all", "none"] = "findings"
    min_lift: float = 1.0  # nats of centred logit for a finding (the truth's reliance rule)
    confidence: float = 0.95  # the bootstrap interval's, whose lower end must exceed 0
    min_images: int = 4  # usable images (overlay: pairs) a finding needs at least
    guidance_scale: float | None = None  # None: the engine's sampler setting
    batch_size: int = 32  # images rendered together on one worker
    # Object-free explanations (open discovery beyond the vocabulary): `pool` random soft
    # prompts rendered once with every object erased (shared by all classes); a class's
    # explanation is its `top` images by centred logit. 1,024 keeps an attribute the
    # generator draws in 1% of random renders at ~10 images, more than `top`. 0: off.
    pool: int = 1024
    top: int = 8
    fill: Literal["texture", "blur", "mean"] = "texture"  # how erased objects are filled

    def entries(self, judge: JudgeSpec) -> tuple[Any, ...]:
        """The vocabulary's entries: `attributes`, or else the judge's probes."""
        return self.attributes if self.attributes is not None else judge.probes


@dataclass(frozen=True)
class OutputSpec:
    """Where results land."""

    # Relative to the directory dxray runs from, not to the spec. None: "catalogs/<name>".
    catalog: str | None = None
    # None: derived from the name, the classifier's weights and the spec (`run_id_for`), so
    # running the same spec again resumes the same run.
    run_id: str | None = None


@dataclass(frozen=True)
class RaySpec:
    """Where the audit runs."""

    # None: start Ray inside the process (a laptop); "auto": join the cluster (ray job submit).
    address: str | None = None
    workers: int = 1
    num_gpus_per_worker: float = 0.0
    # Also the worker's torch threads: two threads on one busy core thrash.
    num_cpus_per_worker: int = 1
    max_retries: int = 2  # a batch whose worker dies is retried this often, then marked "error"


@dataclass(frozen=True)
class AuditSpec:
    """A validated audit. Build it with `load_spec` or `AuditSpec.from_dict`."""

    name: str
    generator: ModelRef
    classifier: ModelRef
    segmenter: ModelRef
    targets: Targets = field(default_factory=Targets)
    engine: EngineSpec = field(default_factory=EngineSpec)
    judge: JudgeSpec = field(default_factory=JudgeSpec)
    shortcuts: ShortcutSpec = field(default_factory=ShortcutSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    ray: RaySpec = field(default_factory=RaySpec)
    source_path: Path | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.output.catalog is None:
            output = dataclasses.replace(self.output, catalog=f"catalogs/{self.name}")
            object.__setattr__(self, "output", output)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> AuditSpec:
        """Validate parsed YAML; errors name `source` and the field path."""
        return _parse_spec(data, source)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data, defaults filled in; `from_dict(s.to_dict()) == s`."""
        models = {
            role: _model_to_dict(getattr(self, role), role)
            for role in ("generator", "classifier", "segmenter")
        }
        return {"name": self.name, **models} | {
            section: _plain(dataclasses.asdict(getattr(self, section)))
            for section in ("targets", "engine", "judge", "shortcuts", "output", "ray")
        }

    def to_yaml(self) -> str:
        """The normalised spec as YAML: every field, defaults filled in."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def spec_hash(self) -> str:
        """sha256 of the normalised content, blind to key order and to how a field is spelt
        (a model as a string or as {source: ...}). Where and how wide the audit runs (`ray`,
        `output`, `engine.batch_size`) is left out: it does not change the results, so a
        spec moved to a bigger cluster, or to smaller batches after running out of memory,
        keeps its run id. So is `shortcuts`: its images are keyed by prompt and seed, so
        turning the test on for a finished run adds it to that run instead of redoing every
        target."""
        content = self.to_dict()
        for section in ("ray", "output", "shortcuts"):
            del content[section]
        del content["engine"]["batch_size"]
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def run_id_for(self, classifier_sha256: str) -> str:
        """`output.run_id` if set, else `<name>-<weights sha256[:8]>-<spec hash[:8]>`: the same
        spec on the same classifier weights resumes the same run."""
        if self.output.run_id is not None:
            return self.output.run_id
        if not re.fullmatch(r"[0-9a-fA-F]{8,}", str(classifier_sha256)):
            raise ValueError(f"classifier_sha256 must be a hex digest, got {classifier_sha256!r}")
        return f"{self.name}-{classifier_sha256[:8].lower()}-{self.spec_hash()[:8]}"


def load_spec(path: str | Path) -> AuditSpec:
    """Read and validate an audit spec YAML file."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)
    except OSError as err:
        raise SpecError(f"{path}: cannot read the audit spec ({err.strerror})") from err
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from err
    spec = _parse_spec(data, str(path))
    spec = dataclasses.replace(spec, source_path=path.resolve())
    csv_path = unit_csv_path(spec)
    if csv_path is not None and csv_path.exists():  # a missing one: the audit's preflight
        read_units(spec)
    return spec


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
    return dataclasses.replace(_parse_spec(data, label), source_path=spec.source_path)


# ---------------------------------------------------------------------------------------------
# The unit CSV: where it is, and that it reads (the rows it adds: dxray.run.targets)
# ---------------------------------------------------------------------------------------------


def unit_csv_path(spec: AuditSpec) -> Path | None:
    """The unit CSV's path (relative to the spec file, where there is one), or None."""
    if spec.targets.units.csv is None:
        return None
    path = Path(spec.targets.units.csv).expanduser()
    if not path.is_absolute() and spec.source_path is not None:
        path = spec.source_path.parent / path
    return path


def read_units(spec: AuditSpec) -> UnitCsv | None:
    """The spec's unit CSV, read and checked (either format of `dxray.labels`), or None when
    the spec has none. Errors are SpecErrors naming the spec, the CSV, the line and column."""
    path = unit_csv_path(spec)
    if path is None:
        return None
    source = str(spec.source_path) if spec.source_path is not None else "<dict>"
    try:
        return read_unit_csv(path)
    except UnitCsvError as err:
        raise SpecError(f"{source}: targets.units.csv: {err}") from err


# ---------------------------------------------------------------------------------------------
# Validation: each check knows the file and the field path, so every error can name both.
# ---------------------------------------------------------------------------------------------

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


def suggest(word: Any, allowed: Sequence[Any], n: int = 1) -> str:
    close = difflib.get_close_matches(str(word), [str(a) for a in allowed], n=n, cutoff=0.6)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def _kind(value: Any) -> str:
    return "nothing (null)" if value is None else f"{type(value).__name__} {value!r}"


_NONE: Mapping[str, str] = {}


class _Section:
    """One mapping of the spec, read key by key against the fields of a dataclass."""

    def __init__(
        self, data: Any, path: str, source: str, cls: type, required: Mapping[str, str] = _NONE
    ):
        self.path, self.source = path, source
        self.allowed = [f.name for f in fields(cls) if f.name != "source_path"]
        if data is None:
            data = {}  # "engine:" with nothing under it: every default
        if not isinstance(data, Mapping):
            raise self.error(
                "", f"expected a mapping with keys {', '.join(self.allowed)}; got {_kind(data)}"
            )
        for key in data:
            if key not in self.allowed:
                raise self.error(
                    str(key),
                    f"unknown key; allowed: {', '.join(self.allowed)}" + suggest(key, self.allowed),
                )
        for key in required:
            if key not in data:
                raise self.error(key, f"missing (required): {required[key]}")
        self.data = data

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, problem: str) -> SpecError:
        path = self.at(key) if key else self.path
        return SpecError(
            f"{self.source}: {path}: {problem}" if path else f"{self.source}: {problem}"
        )

    def value(self, key: str, default: Any) -> Any:
        return self.data.get(key, default)

    def integer(
        self, key: str, default: int | None, *, lo: int, nullable: bool = False
    ) -> int | None:
        value = self.value(key, default)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            also = " or null" if nullable else ""
            raise self.error(key, f"expected an integer >= {lo}{also}, got {_kind(value)}")
        if value < lo:
            raise self.error(key, f"must be >= {lo}, got {value}")
        return value

    def number(
        self,
        key: str,
        default: float | None,
        *,
        lo: float,
        hi: float | None = None,
        open_lo: bool = False,
        nullable: bool = False,
    ) -> float | None:
        value = self.value(key, default)
        if value is None and nullable:
            return None
        bounds = (f"> {lo:g}" if open_lo else f">= {lo:g}") + (
            f" and <= {hi:g}" if hi is not None else ""
        )
        allowed = f"a number {bounds}" + (" or null" if nullable else "")
        if isinstance(value, str) and _is_finite_number(value):
            # YAML 1.1 reads 1e-3 (no dot) as text; 1.0e-3 or 0.001 is a number.
            raise self.error(
                key, f"expected {allowed}, got the text {value!r}; write it as {float(value)!r}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not isfinite(value):
            raise self.error(key, f"expected {allowed}, got {_kind(value)}")
        if (value <= lo if open_lo else value < lo) or (hi is not None and value > hi):
            raise self.error(key, f"must be {bounds}, got {value}")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.value(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {_kind(value)}")
        return value

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        value = self.value(key, default)
        if not isinstance(value, str) or value not in choices:
            raise self.error(
                key,
                f"{value!r} is not one of {', '.join(choices)}" + suggest(value, choices),
            )
        return value

    def text(
        self,
        key: str,
        default: str | None,
        *,
        nullable: bool = False,
        slug: bool = False,
        max_length: int | None = None,
    ) -> str | None:
        value = self.value(key, default)
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            also = " or null" if nullable else ""
            raise self.error(key, f"expected a non-empty string{also}, got {_kind(value)}")
        if slug and not _SLUG.match(value):
            raise self.error(key, f"{value!r} is not a valid id: use {_SLUG_RULE}")
        if max_length is not None and len(value) > max_length:
            raise self.error(
                key, f"is {len(value)} characters long; use at most {max_length} (it names folders)"
            )
        return value

    def sequence(self, key: str, default: Sequence[Any], what: str) -> list:
        value = self.value(key, default)
        if not isinstance(value, list | tuple):
            raise self.error(key, f"expected a list of {what}, got {_kind(value)}")
        return list(value)

    def texts(self, key: str, default: Sequence[str], what: str, item: str) -> tuple[str, ...]:
        """A list of distinct non-empty strings: `what` names the list, `item` one entry."""
        items = self.sequence(key, default, what)
        seen: dict[str, int] = {}
        for i, entry in enumerate(items):
            if not isinstance(entry, str) or not entry.strip():
                raise self.error(
                    f"{key}[{i}]", f"expected {item} (a non-empty string), got {_kind(entry)}"
                )
            if entry in seen:
                raise self.error(
                    f"{key}[{i}]", f"{entry!r} is listed twice (also at [{seen[entry]}])"
                )
            seen[entry] = i
        return tuple(items)

    def section(self, key: str, cls: type) -> _Section:
        return _Section(self.data.get(key), self.at(key), self.source, cls)


def _is_finite_number(text: str) -> bool:
    try:
        return isfinite(float(text))
    except ValueError:
        return False


def _parse_spec(data: Any, source: str) -> AuditSpec:
    top = _Section(data, "", source, AuditSpec, required=_REQUIRED)
    name = top.text("name", None, slug=True, max_length=NAME_MAX)
    generator = _parse_model(top, "generator")
    classifier = _parse_model(top, "classifier")
    segmenter = _parse_model(top, "segmenter")
    return AuditSpec(
        name=name,
        generator=generator,
        classifier=classifier,
        segmenter=segmenter,
        targets=_parse_targets(top.section("targets", Targets)),
        engine=_parse_engine(top.section("engine", EngineSpec)),
        judge=_parse_judge(top.section("judge", JudgeSpec)),
        shortcuts=_parse_shortcuts(top.section("shortcuts", ShortcutSpec)),
        output=_parse_output(top.section("output", OutputSpec), name),
        ray=_parse_ray(top.section("ray", RaySpec)),
    )


def _parse_model(top: _Section, role: str) -> ModelRef:
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
    sec = _Section(value, role, top.source, ModelRef, required={"source": _SOURCE_WHY[role]})
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


def _parse_targets(sec: _Section) -> Targets:
    classes = _parse_classes(sec)
    units = _parse_units(sec.section("units", UnitTargets))
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


def _parse_classes(sec: _Section) -> Literal["all"] | tuple[int | str, ...]:
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


def _parse_units(sec: _Section) -> UnitTargets:
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


def _parse_engine(sec: _Section) -> EngineSpec:
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
        sampler=_parse_sampler(sec.section("sampler", SamplerSpec)),
        decoder=sec.choice("decoder", EngineSpec.decoder, get_args(DecoderKind)),
        decoder_checkpoint=sec.boolean("decoder_checkpoint", EngineSpec.decoder_checkpoint),
        decode_micro_batch=sec.integer("decode_micro_batch", None, lo=1, nullable=True),
        stop_prob=sec.number(
            "stop_prob", EngineSpec.stop_prob, lo=0.0, hi=1.0, open_lo=True, nullable=True
        ),
        stop_patience=sec.integer("stop_patience", EngineSpec.stop_patience, lo=1),
        batch_size=sec.integer("batch_size", EngineSpec.batch_size, lo=1),
    )


def _parse_sampler(sec: _Section) -> SamplerSpec:
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


def _parse_judge(sec: _Section) -> JudgeSpec:
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


def _parse_shortcuts(sec: _Section) -> ShortcutSpec:
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
    return ShortcutSpec(
        enabled=sec.boolean("enabled", ShortcutSpec.enabled),
        template=template,
        attributes=attributes,
        seeds=sec.integer("seeds", ShortcutSpec.seeds, lo=1),
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
    )


def _parse_output(sec: _Section, name: str) -> OutputSpec:
    return OutputSpec(
        catalog=sec.text("catalog", f"catalogs/{name}"),
        run_id=sec.text("run_id", None, nullable=True, slug=True, max_length=RUN_ID_MAX),
    )


def _parse_ray(sec: _Section) -> RaySpec:
    return RaySpec(
        address=sec.text("address", None, nullable=True),
        workers=sec.integer("workers", RaySpec.workers, lo=1),
        num_gpus_per_worker=sec.number("num_gpus_per_worker", RaySpec.num_gpus_per_worker, lo=0.0),
        num_cpus_per_worker=sec.integer("num_cpus_per_worker", RaySpec.num_cpus_per_worker, lo=1),
        max_retries=sec.integer("max_retries", RaySpec.max_retries, lo=0),
    )


def _model_to_dict(ref: ModelRef, role: str) -> dict[str, Any]:
    out = {"source": copy.deepcopy(ref.source), "dtype": ref.dtype}
    if role == "generator":
        out["tiny_decoder"] = ref.tiny_decoder
    return out


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively: what YAML and JSON write."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
