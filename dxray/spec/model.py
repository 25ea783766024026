"""The typed audit spec: frozen dataclasses, one per YAML section, with every default.

`AuditSpec.from_dict` and `dxray.spec.parse.load_spec` build one and validate every field;
`to_dict`/`to_yaml` write it back with defaults filled in; `spec_hash` and `run_id_for` name
its run. The engine and judge read their configs from it (`EngineSpec.to_explain_config`,
`JudgeSpec.thresholds`), importing torch only then.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

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
    # The unit-shortcut test (dxray.shortcuts.unit_score): each class unit's mean on the
    # factors' object-free renders vs on its class's object drawn on every scene (those
    # with-object renders are added for the classes with units).
    units: bool = True
    # The unit test's images of a class's object: the first `unit_seeds` seeds on each scene
    # (None: `seeds`). Its renders grow with the classes that have units (a 1,000-class CSV
    # audit: 1,000 x scenes x unit_seeds); re-scored on the sweep's 12 worlds, 8 of 16 seeds
    # found one spurious unit fewer, precision unchanged (docs/SHORTCUTS.md).
    unit_seeds: int | None = None

    @property
    def unit_object_seeds(self) -> int:
        """How many seeds of each class's object on each scene the unit test renders and reads."""
        return self.unit_seeds or self.seeds

    def entries(self, judge: JudgeSpec) -> tuple[Any, ...]:
        """The vocabulary's entries: `attributes`, or else the judge's probes."""
        return self.attributes if self.attributes is not None else judge.probes


@dataclass(frozen=True)
class GateSpec:
    """The release gate (`dxray gate`, `dxray scan --gate`; docs/SCANS.md): when a candidate run
    fails against a baseline. Outside the spec hash, like `shortcuts`: changing a threshold
    re-audits nothing."""

    # nats: a shortcut found in both runs fails when the candidate's interval starts more than
    # this above the end of the baseline's (half the 1-nat finding rule: a change that large,
    # beyond both intervals, is a new degree of reliance, not noise)
    lift_margin: float = 0.5
    # Gate units too. Off when the units are ranked per checkpoint (targets.units.top_k) of
    # separately trained models, whose channel numbers do not correspond.
    units: bool = True


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
    gate: GateSpec = field(default_factory=GateSpec)
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
        from dxray.spec.parse import parse_spec  # the parser builds this class

        return parse_spec(data, source)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain data, defaults filled in; `from_dict(s.to_dict()) == s`."""
        models = {
            role: _model_to_dict(getattr(self, role), role)
            for role in ("generator", "classifier", "segmenter")
        }
        return {"name": self.name, **models} | {
            section: _plain(dataclasses.asdict(getattr(self, section)))
            for section in ("targets", "engine", "judge", "shortcuts", "gate", "output", "ray")
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
        target. And `gate`: it judges runs, it does not make them."""
        content = self.to_dict()
        for section in ("ray", "output", "shortcuts", "gate"):
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
