"""The catalog's tables: one pyarrow schema each, and `validate` for the boundary.

Every table has a `run_id` (also the hive partition, `run_id=<id>/`). Result tables key their
rows by (run_id, target_id, seed); a target that failed still has an `explanations` row with
status "error" and its error text, so nothing goes silently missing. PNG blobs live in
`images` alone so that scans of the other tables stay small. docs/PLATFORM.md describes the
fields; this module is the single source of their types.
"""

from __future__ import annotations

import re

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


RUNS = pa.schema(
    [
        _required("run_id", pa.string()),
        _required("created_at", TIMESTAMP),  # when the run started; the same on every row
        _required("updated_at", TIMESTAMP),  # when this row was written: the latest row wins
        pa.field("name", pa.string()),
        pa.field("spec_yaml", pa.string()),
        pa.field("generator", pa.string()),
        pa.field("classifier", pa.string()),
        pa.field("classifier_sha256", pa.string()),
        pa.field("segmenter", pa.string()),
        pa.field("dxray_version", pa.string()),
        pa.field("versions_json", pa.string()),  # {"torch": "2.13.0", "diffusers": ...}
        pa.field("num_targets", pa.int64()),  # (target, seed) rows the run was asked for
        _required("status", pa.string()),
        pa.field("wall_seconds", pa.float64()),
        pa.field("error", pa.string()),  # why a run failed
    ]
)

# The target fields (docs/PLATFORM.md, "Targets"), shared by the explanations table.
TARGET_FIELDS = [
    _required("run_id", pa.string()),
    _required("target_id", pa.string()),
    _required("kind", pa.string()),
    pa.field("class_index", pa.int32()),
    pa.field("class_name", pa.string()),
    pa.field("layer", pa.string()),
    pa.field("channel", pa.int32()),
    _required("objective", pa.string()),
    _required("seed", pa.int64()),
]

EXPLANATIONS = pa.schema(
    TARGET_FIELDS
    + [
        _required("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("steps", pa.int32()),
        pa.field("objective_value", pa.float64()),
        pa.field("probability", pa.float64()),
        pa.field("converged", pa.bool_()),
        pa.field("words", pa.string()),  # JSON: per vector, [[word, cosine], ...] nearest first
        pa.field("prompt_vectors", pa.list_(pa.float32())),  # flattened; see vector_shape
        pa.field("vector_shape", pa.list_(pa.int32())),
        pa.field("seconds", pa.float64()),
        pa.field("worker", pa.string()),
        _required("created_at", TIMESTAMP),
    ]
)

VERDICTS = pa.schema(
    [
        _required("run_id", pa.string()),
        _required("target_id", pa.string()),
        _required("seed", pa.int64()),
        pa.field("object_query", pa.string()),
        pa.field("presence", pa.float64()),
        pa.field("verdict", pa.string()),
        # "presence" (is the class's object there: class targets, and units with judge.units:
        # presence) or "intervention" (units: does the unit survive removing the objects)
        pa.field("judged_by", pa.string()),
        pa.field("kept", pa.float64()),  # intervention: share of the unit's activation kept
        # intervention: the unit's activation on its image, and with the objects removed
        pa.field("activation", pa.float64()),
        pa.field("activation_without_objects", pa.float64()),
        pa.field("probe_scores", pa.map_(pa.string(), pa.float64())),  # probe -> presence
        _required("created_at", TIMESTAMP),
    ]
)

IMAGES = pa.schema(
    [
        _required("run_id", pa.string()),
        _required("target_id", pa.string()),
        _required("seed", pa.int64()),
        _required("png", pa.binary()),
        # Single-channel PNG of the segmenter's per-pixel object probability (0..255); an RGBA
        # PNG is read through its alpha. The report draws its >= 0.5 outline on the image.
        pa.field("mask_png", pa.binary()),
        _required("created_at", TIMESTAMP),
    ]
)

# Human labels of the audited units, from the spec's unit CSV (dxray.labels): Salient
# ImageNet's crowd answers as published, or dxray's own CSV with a label column. Written when
# a run starts (again on resume: the view keeps the latest), so SQL can compare them with the
# run's verdicts (view `label_agreement`) and `dxray score` can score the run against them.
LABELS = pa.schema(
    [
        _required("run_id", pa.string()),
        _required("source", pa.string()),  # the CSV's format: salient-imagenet | dxray
        pa.field("file", pa.string()),  # the CSV's file name
        _required("class_index", pa.int32()),
        pa.field("class_name", pa.string()),
        _required("layer", pa.string()),
        _required("channel", pa.int32()),
        pa.field("rank", pa.int32()),  # Salient ImageNet: the feature's rank for its class
        pa.field("wordnet_id", pa.string()),
        pa.field("label", pa.string()),  # core | spurious
        pa.field("votes_main_object", pa.int32()),
        pa.field("votes_separate_object", pa.int32()),
        pa.field("votes_background", pa.int32()),
        pa.field("answers", pa.int32()),
        _required("created_at", TIMESTAMP),
    ]
)

# The class-shortcut test (dxray/shortcuts/, docs/SHORTCUTS.md). One row per rendered image:
# what it was asked to show, whether it passed the checks, and the classifier's logits on it
# (every class: the images are shared by all of them). `render_id` keys resume.
SHORTCUT_IMAGES = pa.schema(
    [
        _required("run_id", pa.string()),
        _required("render_id", pa.string()),
        _required("variant", pa.string()),  # object_free | with_object
        _required("scene", pa.string()),  # the scene attribute rendered
        pa.field("overlay", pa.string()),  # the overlay attribute drawn on it, if any
        pa.field("class_index", pa.int32()),  # with_object: whose object is in the image
        pa.field("class_name", pa.string()),
        _required("prompt", pa.string()),
        _required("seed", pa.int64()),
        # kept | object | no object | no attribute | error
        _required("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("object_presence", pa.float64()),  # the checked object's presence (see status)
        pa.field("object_query", pa.string()),  # ... and which object that was
        pa.field("attribute_presence", pa.float64()),  # of the attribute the image must show
        pa.field("logits", pa.list_(pa.float32())),  # the classifier's, one per class
        # layer -> its channel means, for the layers of the run's class units (the unit test)
        pa.field("unit_means", pa.map_(pa.string(), pa.list_(pa.float32()))),
        pa.field("png", pa.binary()),
        pa.field("seconds", pa.float64()),  # the worker batch's time, shared by its images
        pa.field("worker", pa.string()),
        _required("created_at", TIMESTAMP),
    ]
)

# Object-free explanations (dxray/shortcuts/discover.py): one row per pool image, a random
# soft prompt rendered with every object erased. Logits and probes are of the erased image.
SHORTCUT_POOL = pa.schema(
    [
        _required("run_id", pa.string()),
        _required("render_id", pa.string()),
        _required("seed", pa.int64()),
        _required("status", pa.string()),  # kept | object (one is left after erasing) | error
        pa.field("error", pa.string()),
        pa.field("object_presence", pa.float64()),  # of any object, before erasing
        pa.field("left_presence", pa.float64()),  # ... after erasing
        pa.field("erased_fraction", pa.float64()),  # share of the image erased
        pa.field("logits", pa.list_(pa.float32())),  # on the erased image, one per class
        pa.field("probe_scores", pa.map_(pa.string(), pa.float64())),  # attribute -> presence
        pa.field("words", pa.string()),  # JSON: the soft prompt's nearest words
        pa.field("png", pa.binary()),  # the erased image (at most 128 px)
        pa.field("seconds", pa.float64()),
        pa.field("worker", pa.string()),
        _required("created_at", TIMESTAMP),
    ]
)

# What each class's object-free explanation shows: per attribute, its rate in the class's top
# pool images vs in the whole pool, and the pool lift; a candidate by `discover.CandidateRule`.
SHORTCUT_CANDIDATES = pa.schema(
    [
        _required("run_id", pa.string()),
        _required("score_id", pa.string()),
        _required("class_index", pa.int32()),
        pa.field("class_name", pa.string()),
        _required("attribute", pa.string()),
        pa.field("rate", pa.float64()),
        pa.field("pool_rate", pa.float64()),
        pa.field("images", pa.int64()),
        pa.field("mean_z", pa.float64()),  # the class's centred logit on its chosen images
        # the class's mean centred logit on the pool's images with the attribute minus without
        pa.field("pool_lift", pa.float64()),
        pa.field("candidate", pa.bool_()),
        pa.field("chosen", pa.list_(pa.string())),  # render ids of the class's explanation
        _required("created_at", TIMESTAMP),
    ]
)

# The unit-shortcut test (dxray/shortcuts/unit_score.py): per class unit, its mean on the
# factors' object-free images vs on the class's object, the margin, its interval, the verdict.
UNIT_SHORTCUTS = pa.schema(
    [
        _required("run_id", pa.string()),
        _required("score_id", pa.string()),
        _required("class_index", pa.int32()),
        pa.field("class_name", pa.string()),
        _required("unit", pa.string()),  # "layer:channel"
        pa.field("layer", pa.string()),
        pa.field("channel", pa.int64()),
        pa.field("factors_from", pa.string()),  # findings (the class's) | vocabulary (all)
        pa.field("factor", pa.string()),  # the factor that drives the unit most
        pa.field("factor_response", pa.float64()),
        pa.field("object_response", pa.float64()),
        pa.field("margin", pa.float64()),  # factor - object
        pa.field("low", pa.float64()),
        pa.field("high", pa.float64()),
        pa.field("factor_images", pa.int64()),
        pa.field("object_images", pa.int64()),
        pa.field("verdict", pa.string()),  # spurious | core | uncertain
        pa.field("note", pa.string()),
        _required("created_at", TIMESTAMP),
    ]
)

# The test's result: one row per (class, attribute, method), recomputed from shortcut_images
# at the end of every session of a run (`score_id` tells the scorings apart; the views show
# the latest). Entries of the vocabulary that could not be used are rows too (class null).
SHORTCUTS = pa.schema(
    [
        _required("run_id", pa.string()),
        _required("score_id", pa.string()),
        pa.field("class_index", pa.int32()),
        pa.field("class_name", pa.string()),
        _required("attribute", pa.string()),
        pa.field("kind", pa.string()),  # scene | overlay
        # object_free: the class on the attribute without any object; with_object: what the
        # attribute adds beside the class's own object (paired, same seed)
        _required("method", pa.string()),
        pa.field("lift", pa.float64()),  # nats of centred logit
        pa.field("low", pa.float64()),  # bootstrap interval (confidence in the spec)
        pa.field("high", pa.float64()),
        pa.field("images", pa.int64()),  # usable images (overlays: pairs) behind the lift
        pa.field("rendered", pa.int64()),
        pa.field("dropped_object", pa.int64()),
        pa.field("dropped_attribute", pa.int64()),
        pa.field("failed", pa.int64()),
        pa.field("finding", pa.bool_()),  # lift >= min_lift, interval above 0, enough images
        pa.field("note", pa.string()),  # why there is no lift, or why an entry was skipped
        _required("created_at", TIMESTAMP),
    ]
)

# `dxray eval` (dxray/eval/, docs/EVALUATION.md): one evaluation of an audit run against a toy
# zoo's ground truth. `eval_id` tells evaluations of the same run apart; the views show the
# latest one.
_EVAL_KEYS = [
    _required("run_id", pa.string()),  # the evaluated (main) audit run
    _required("eval_id", pa.string()),
    pa.field("world", pa.string()),
]

EVAL_METRICS = pa.schema(
    _EVAL_KEYS
    + [
        # neurons | classes | always-core/never (in `setting`) | success | bias | bias-fixed
        # | baseline | cost
        _required("section", pa.string()),
        _required("setting", pa.string()),  # "default", a judge, a method or an ablation
        _required("metric", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("n", pa.int64()),
        _required("created_at", TIMESTAMP),
    ]
)

EVAL_NEURONS = pa.schema(
    _EVAL_KEYS
    + [
        pa.field("class_name", pa.string()),
        pa.field("unit", pa.string()),  # "layer:channel"
        pa.field("selection", pa.string()),  # how the truth picked it: top | factor
        pa.field("truth", pa.string()),  # core | spurious, by intervention on real scenes
        pa.field("margin", pa.float64()),  # factor response - object response
        pa.field("object_response", pa.float64()),
        pa.field("factor_response", pa.float64()),
        pa.field("factor", pa.string()),
        pa.field("seeds", pa.int64()),  # usable explanations of the unit
        pa.field("presence", pa.float64()),  # mean object presence over them
        pa.field("verdict", pa.string()),  # dxray's, over seeds; null: not audited
        pa.field("intervention", pa.string()),  # the intervention judge's, over seeds
        pa.field("agree", pa.bool_()),
        _required("created_at", TIMESTAMP),
    ]
)

EVAL_CLASSES = pa.schema(
    _EVAL_KEYS
    + [
        pa.field("release", pa.string()),  # biased | fixed (the zoo's classifier-fixed)
        pa.field("class_name", pa.string()),
        pa.field("factor_kind", pa.string()),  # context | cue
        pa.field("factor", pa.string()),
        pa.field("probe", pa.string()),
        pa.field("planted", pa.bool_()),
        pa.field("reliance_logit", pa.float64()),  # measured: factor alone vs neutral
        # measured: what the factor adds to the class's log-probability beside its object
        pa.field("with_object_logprob", pa.float64()),
        pa.field("relied", pa.bool_()),  # truth: reliance_logit >= the rule's threshold
        pa.field("images", pa.int64()),
        pa.field("presence", pa.float64()),  # mean probe presence, this class's explanations
        pa.field("other_presence", pa.float64()),  # ... the other classes' explanations
        pa.field("difference", pa.float64()),
        pa.field("cohens_d", pa.float64()),
        pa.field("flagged", pa.bool_()),  # dxray's finding, from the class's explanations
        pa.field("flagged_by_units", pa.bool_()),  # ... from its spurious units' explanations
        pa.field("agree", pa.bool_()),
        # The class-shortcut test (object-free renders, centred logits): lift and interval
        pa.field("shortcut_lift", pa.float64()),
        pa.field("shortcut_low", pa.float64()),
        pa.field("shortcut_high", pa.float64()),
        pa.field("shortcut_images", pa.int64()),
        pa.field("shortcut_found", pa.bool_()),  # its finding
        pa.field("shortcut_with_object", pa.float64()),  # the lift beside the class's object
        # The object-free explanations: the factor's rate in the class's top pool images, in
        # the pool, and whether that singles it out (a candidate)
        pa.field("explanation_rate", pa.float64()),
        pa.field("explanation_pool_rate", pa.float64()),
        pa.field("explanation_candidate", pa.bool_()),
        _required("created_at", TIMESTAMP),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "runs": RUNS,
    "explanations": EXPLANATIONS,
    "verdicts": VERDICTS,
    "images": IMAGES,
    "labels": LABELS,
    "shortcut_images": SHORTCUT_IMAGES,
    "shortcuts": SHORTCUTS,
    "shortcut_pool": SHORTCUT_POOL,
    "shortcut_candidates": SHORTCUT_CANDIDATES,
    "unit_shortcuts": UNIT_SHORTCUTS,
    "eval_metrics": EVAL_METRICS,
    "eval_neurons": EVAL_NEURONS,
    "eval_classes": EVAL_CLASSES,
}
TABLES = tuple(SCHEMAS)

# Allowed values of the enumerated string columns (null is allowed where the field is).
CHOICES: dict[str, dict[str, frozenset[str]]] = {
    "runs": {"status": frozenset({"running", "finished", "partial", "failed"})},
    "explanations": {
        "kind": frozenset({"class", "unit"}),
        "status": frozenset({"converged", "max_iterations", "nan", "error"}),
    },
    "verdicts": {
        "verdict": frozenset({"core", "spurious", "uncertain"}),
        "judged_by": frozenset({"presence", "intervention"}),
    },
    "images": {},
    "labels": {
        "source": frozenset({"salient-imagenet", "dxray"}),
        "label": frozenset({"core", "spurious"}),
    },
    "shortcut_images": {
        "variant": frozenset({"object_free", "with_object"}),
        "status": frozenset({"kept", "object", "no object", "no attribute", "error"}),
    },
    "shortcut_pool": {"status": frozenset({"kept", "object", "error"})},
    "shortcut_candidates": {},
    "unit_shortcuts": {
        "verdict": frozenset({"core", "spurious", "uncertain"}),
        "factors_from": frozenset({"findings", "vocabulary"}),
    },
    "shortcuts": {
        "kind": frozenset({"scene", "overlay"}),
        "method": frozenset({"object_free", "with_object", "vocabulary"}),
    },
    "eval_metrics": {},
    "eval_neurons": {
        "truth": frozenset({"core", "spurious"}),
        "verdict": frozenset({"core", "spurious", "uncertain"}),
        "intervention": frozenset({"core", "spurious", "uncertain"}),
    },
    "eval_classes": {"release": frozenset({"biased", "fixed"})},
}

# A run id becomes a folder name (`run_id=<id>`) and a SQL literal: keep it plain.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class SchemaError(ValueError):
    """Rows that do not fit a catalog table; the message names the table and the column."""


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise SchemaError(
            f"run_id {run_id!r} is not usable as a partition name: use 1-128 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return run_id


# The key of a (run, target, seed) table's row: explanations, verdicts, images.
ROW_KEYS = ("run_id", "target_id", "seed")


def payload_columns(table_name: str) -> tuple[str, ...]:
    """A (run, target, seed) table's columns besides its key and `created_at`: what a worker's
    result row carries for that table (dxray.run.pipeline.split_rows)."""
    skip = {*ROW_KEYS, "created_at"}
    return tuple(name for name in schema(table_name).names if name not in skip)


def schema(table_name: str) -> pa.Schema:
    """The schema of one catalog table."""
    try:
        return SCHEMAS[table_name]
    except KeyError:
        raise SchemaError(
            f"unknown catalog table {table_name!r}; the tables are {', '.join(TABLES)}"
        ) from None


def validate(table_name: str, table: pa.Table) -> pa.Table:
    """Check that `table` has exactly the columns and types of `table_name`, no nulls where a
    field is required, and only allowed values in enumerated columns. Returns the table with
    its columns in schema order; raises SchemaError naming what is wrong."""
    expected = schema(table_name)
    names = set(table.column_names)
    missing = [f.name for f in expected if f.name not in names]
    extra = [n for n in table.column_names if expected.get_field_index(n) < 0]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            parts.append(f"unknown column(s) {extra}")
        raise SchemaError(f"{table_name}: {'; '.join(parts)}")
    for field in expected:
        column = table.column(field.name)
        if not column.type.equals(field.type):
            raise SchemaError(
                f"{table_name}.{field.name} has type {column.type}; expected {field.type}"
            )
        if not field.nullable and column.null_count:
            raise SchemaError(
                f"{table_name}.{field.name} is required but {column.null_count} row(s) are null"
            )
    for name, allowed in CHOICES[table_name].items():
        values = set(table.column(name).drop_null().unique().to_pylist())
        bad = values - allowed
        if bad:
            raise SchemaError(
                f"{table_name}.{name} has value(s) {sorted(bad)}; allowed: {sorted(allowed)}"
            )
    return table.select([f.name for f in expected]).cast(expected)


def empty(table_name: str) -> pa.Table:
    """A table with no rows and the schema of `table_name`."""
    return schema(table_name).empty_table()
