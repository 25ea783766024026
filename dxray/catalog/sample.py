"""A small synthetic catalog: two checkpoints' audits of a five-class shape classifier.

Made with the real writer, for tests, for trying the SQL, and for previewing the report
without running an audit (`python -m dxray.catalog.sample OUT_DIR`). The numbers are fixed
so that tests can check views and diffs against values worked out by hand:

run "ckpt-a" (the biased checkpoint) -> run "ckpt-b" (retrained); whether each class's
explanation shows its object:
  class 0 circle    absent (water)        -> shown      "changed"
  class 1 square    shown                 -> absent     "changed" (a retried error in a)
  class 2 star      absent (watermark)    -> absent     "unchanged"
  class 3 triangle  shown, seed 1 errors  -> shown      "unchanged"
  class 4 hexagon   shown + doubtful (tie -> unclear) -> shown  "changed"
  two units of layer "features.4", judged by intervention: 17 (ranked for circle) keeps 90-95%
  of its activation without the objects in a (spurious) and 40-45% in b ("resolved"); 3 is
  silent (uncertain) and diverges ("nan") in b.
The shortcut test: circle <- water in a only, star <- a watermark in both, square <- grass in b
only (SHORTCUT_LIFTS).
"""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image, ImageDraw

from dxray.catalog.writer import CatalogWriter

CLASS_NAMES = ("circle", "square", "star", "triangle", "hexagon")
PROBES = ("water", "a watermark", "grass")
RUN_IDS = ("ckpt-a", "ckpt-b")

# run -> target -> per seed: (status, presence, probability, {probe: presence}, context)
# status None = an ordinary converged row; "error"/"nan" rows have no verdict and no image.
_W, _M, _G = "water", "a watermark", "grass"
SEEDS: dict[str, dict[str, list[tuple]]] = {
    "ckpt-a": {
        "class:0": [
            (None, 0.10, 0.90, {_W: 0.90, _M: 0.10, _G: 0.00}, "water"),
            (None, 0.05, 0.70, {_W: 0.80, _M: 0.20, _G: 0.10}, "water"),
        ],
        "class:1": [
            (None, 0.80, 0.60, {_W: 0.10, _M: 0.00, _G: 0.60}, "grass"),
            (None, 0.90, 0.80, {_W: 0.20, _M: 0.10, _G: 0.40}, "grass"),
        ],
        "class:2": [
            (None, 0.15, 0.95, {_W: 0.00, _M: 0.90, _G: 0.20}, "mark"),
            (None, 0.00, 0.85, {_W: 0.10, _M: 0.70, _G: 0.30}, "mark"),
        ],
        "class:3": [
            (None, 0.70, 0.50, {_W: 0.30, _M: 0.00, _G: 0.50}, "grass"),
            ("error", None, None, None, None),
        ],
        "class:4": [
            (None, 0.60, 0.40, {_W: 0.20, _M: 0.20, _G: 0.20}, "plain"),
            (None, 0.30, 0.30, {_W: 0.60, _M: 0.10, _G: 0.00}, "water"),
        ],
        "unit:features.4:17:0": [
            (None, 0.05, None, {_W: 0.90, _M: 0.00, _G: 0.00}, "water"),
            (None, 0.10, None, {_W: 0.70, _M: 0.00, _G: 0.10}, "water"),
        ],
        "unit:features.4:3:-": [
            (None, 0.40, None, {_W: 0.00, _M: 0.80, _G: 0.00}, "mark"),
            (None, 0.35, None, {_W: 0.00, _M: 0.60, _G: 0.00}, "mark"),
        ],
    },
    "ckpt-b": {
        "class:0": [
            (None, 0.80, 0.85, {_W: 0.30, _M: 0.00, _G: 0.10}, "plain"),
            (None, 0.70, 0.75, {_W: 0.60, _M: 0.00, _G: 0.00}, "water"),
        ],
        "class:1": [
            (None, 0.10, 0.70, {_W: 0.00, _M: 0.10, _G: 0.90}, "grass"),
            (None, 0.20, 0.60, {_W: 0.00, _M: 0.00, _G: 0.80}, "grass"),
        ],
        "class:2": [
            (None, 0.10, 0.90, {_W: 0.00, _M: 0.80, _G: 0.00}, "mark"),
            (None, 0.05, 0.80, {_W: 0.00, _M: 0.90, _G: 0.10}, "mark"),
        ],
        "class:3": [
            (None, 0.75, 0.55, {_W: 0.20, _M: 0.00, _G: 0.40}, "grass"),
            (None, 0.65, 0.45, {_W: 0.10, _M: 0.00, _G: 0.30}, "plain"),
        ],
        "class:4": [
            (None, 0.90, 0.65, {_W: 0.10, _M: 0.00, _G: 0.10}, "plain"),
            (None, 0.85, 0.55, {_W: 0.00, _M: 0.10, _G: 0.20}, "plain"),
        ],
        "unit:features.4:17:0": [
            (None, 0.60, None, {_W: 0.40, _M: 0.00, _G: 0.00}, "water"),
            (None, 0.55, None, {_W: 0.20, _M: 0.00, _G: 0.00}, "plain"),
        ],
        "unit:features.4:3:-": [
            (None, 0.30, None, {_W: 0.00, _M: 0.70, _G: 0.00}, "mark"),
            ("nan", None, None, None, None),
        ],
    },
}
# The crowd's label of the unit ranked for class 0 (Salient ImageNet's format: 3 of 5 workers
# said background or separate object): spurious. Run a agrees (spurious), run b does not.
LABEL = {"source": "salient-imagenet", "file": "discover_spurious_features.csv",
         "class_index": 0, "layer": "features.4", "channel": 17, "rank": 1,
         "wordnet_id": "n01440764", "label": "spurious", "votes_main_object": 2,
         "votes_separate_object": 1, "votes_background": 2, "answers": 5}  # fmt: skip
# An attempt that failed before the row above succeeded (resume retried it).
RETRIED = {"ckpt-a": [("class:1", 0)]}

WORDS = {
    "water": ["water", "lake", "blue"],
    "grass": ["grass", "field", "green"],
    "mark": ["watermark", "logo", "text"],
    "plain": ["shape", "object", "white"],
}


@dataclass
class SampleCatalog:
    root: Path
    run_ids: tuple[str, ...] = RUN_IDS
    class_names: tuple[str, ...] = CLASS_NAMES
    files: list[Path] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows written, all runs


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _shape(draw: ImageDraw.ImageDraw, index: int, box: tuple[int, int, int, int], fill) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if index == 0:
        draw.ellipse(box, fill=fill)
    elif index == 1:
        draw.rectangle(box, fill=fill)
    elif index == 2:
        draw.regular_polygon((cx, cy, r), 5, fill=fill)
        draw.regular_polygon((cx, cy, r), 5, rotation=36, fill=fill)
    elif index == 3:
        draw.regular_polygon((cx, cy, r), 3, fill=fill)
    else:
        draw.regular_polygon((cx, cy, r), 6, fill=fill)


def sample_images(
    index: int, presence: float, context: str, seed: int, size: int = 64
) -> tuple[bytes, bytes]:
    """A toy explanation image and its object mask: the class's shape (drawn only when the
    object is `present` enough) on a context background."""
    backgrounds = {
        "water": (48, 110, 190),
        "grass": (70, 150, 70),
        "mark": (200, 190, 170),
        "plain": (150, 150, 160),
    }
    image = Image.new("RGB", (size, size), backgrounds[context])
    draw = ImageDraw.Draw(image)
    for i in range(0, size, 8):  # a little texture: waves, blades, paper lines
        shade = tuple(min(255, c + 25) for c in backgrounds[context])
        draw.line([(0, i + seed % 4), (size, i + 3 + seed % 4)], fill=shade, width=1)
    if context == "mark":
        draw.text((size * 0.15, size * 0.4), "(c) stock", fill=(90, 90, 90))
    mask = Image.new("L", (size, size), 0)
    if presence >= 0.3:
        offset = (seed * 7) % (size // 4)
        box = (size // 4 + offset // 2, size // 4, 3 * size // 4 + offset // 2, 3 * size // 4)
        _shape(draw, index, box, (245, 240, 230))
        _shape(ImageDraw.Draw(mask), index, box, int(255 * presence))
    return _png(image), _png(mask)


def _target_fields(target_id: str, class_names: tuple[str, ...]) -> dict:
    parts = target_id.split(":")
    if parts[0] == "class":
        index = int(parts[1])
        return {
            "kind": "class",
            "class_index": index,
            "class_name": class_names[index],
            "objective": f"ClassCE({index})",
        }
    layer, channel, ranked = parts[1], int(parts[2]), parts[3]
    index = None if ranked == "-" else int(ranked)
    return {
        "kind": "unit",
        "class_index": index,
        "class_name": None if index is None else class_names[index],
        "layer": layer,
        "channel": channel,
        "objective": f"Unit('{layer}', {channel})",
    }


# The class-shortcut test (docs/SHORTCUTS.md): run -> (class index, attribute) -> (lift, low,
# high); every other (class, attribute) pair lifts 0.0 [-0.3, 0.3]. A finding: lift >= 1 and
# low > 0. circle-water vanishes in b, square-grass appears, star-watermark stays.
SHORTCUT_ATTRIBUTES = (("water", "scene"), ("grass", "scene"), ("a watermark", "overlay"))
SHORTCUT_LIFTS = {
    "ckpt-a": {(0, "water"): (2.4, 1.9, 2.9), (2, "a watermark"): (2.0, 1.6, 2.4),
               (1, "grass"): (0.4, 0.1, 0.7)},
    "ckpt-b": {(0, "water"): (0.6, 0.2, 1.0), (2, "a watermark"): (2.1, 1.7, 2.5),
               (1, "grass"): (1.3, 0.9, 1.7)},
}  # fmt: skip
# ... and what the attribute adds beside the class's own object, for the findings
SHORTCUT_WITH_OBJECT = {"ckpt-a": {(0, "water"): 0.3, (2, "a watermark"): 1.5},
                        "ckpt-b": {(2, "a watermark"): 1.4, (1, "grass"): 0.2}}  # fmt: skip


# ... and what the object-free explanations single out (rate in the class's top pool images):
# in a, circle-water (confirmed) and hexagon-grass (a false lead, not confirmed). Every class
# chose the same two pool images (SHORTCUT_POOL: 2 per run).
SHORTCUT_CANDIDATES = {"ckpt-a": {(0, "water"): 1.0, (4, "grass"): 0.75, (2, "water"): 0.25},
                       "ckpt-b": {(2, "a watermark"): 0.875}}  # fmt: skip


def _unit_shortcut_rows(class_names: tuple[str, ...], at: datetime) -> list[dict]:
    """The unit-shortcut test of one run: class 0's unit 3 driven by water (spurious), its
    unit 5 by its object (core)."""
    score_id = at.strftime("%Y%m%dT%H%M%S.%fZ")
    common = {"score_id": score_id, "class_index": 0, "class_name": class_names[0],
              "layer": "penultimate", "factors_from": "findings", "factor": "water",
              "factor_images": 16, "object_images": 64, "created_at": at}  # fmt: skip
    return [
        {**common, "unit": "penultimate:3", "channel": 3, "factor_response": 2.5,
         "object_response": 0.4, "margin": 2.1, "low": 1.8, "high": 2.4, "verdict": "spurious"},
        {**common, "unit": "penultimate:5", "channel": 5, "factor_response": 0.2,
         "object_response": 3.1, "margin": -2.9, "low": -3.2, "high": -2.6, "verdict": "core"},
    ]  # fmt: skip


def _shortcut_rows(run_id: str, class_names: tuple[str, ...], at: datetime):
    """(shortcut_images rows, shortcuts rows) of one run."""
    score_id = at.strftime("%Y%m%dT%H%M%S.%fZ")
    rows = []
    for c, name in enumerate(class_names):
        for attribute, kind in SHORTCUT_ATTRIBUTES:
            lift, low, high = SHORTCUT_LIFTS[run_id].get((c, attribute), (0.0, -0.3, 0.3))
            common = {"score_id": score_id, "class_index": c, "class_name": name,
                      "attribute": attribute, "kind": kind, "created_at": at}  # fmt: skip
            rows.append(
                {**common, "method": "object_free", "lift": lift, "low": low, "high": high,
                 "images": 16 if kind == "scene" else 30, "rendered": 16 if kind == "scene" else 32,
                 "dropped_object": 0 if kind == "scene" else 2, "dropped_attribute": 0,
                 "failed": 0, "finding": lift >= 1.0 and low > 0.0, "note": ""}
            )  # fmt: skip
            beside = SHORTCUT_WITH_OBJECT[run_id].get((c, attribute))
            if beside is not None:
                rows.append(
                    {**common, "method": "with_object", "lift": beside, "low": beside - 0.5,
                     "high": beside + 0.5, "images": 16, "rendered": 16, "finding": None}
                )  # fmt: skip
    candidates = [
        {"score_id": score_id, "class_index": c, "class_name": class_names[c],
         "attribute": attribute, "rate": rate, "pool_rate": 0.2, "images": 8,
         "mean_z": 1.0, "candidate": rate >= 0.75, "chosen": ["pool|0", "pool|1"],
         "created_at": at}
        for (c, attribute), rate in SHORTCUT_CANDIDATES[run_id].items()
    ]  # fmt: skip
    images = []
    for seed in range(2):
        for scene, overlay in (("water", None), ("grass", None), ("water", "a watermark")):
            z = [0.0] * len(class_names)
            context = "mark" if overlay else scene
            lift = SHORTCUT_LIFTS[run_id].get((2 if overlay else 0, overlay or scene))
            z[2 if overlay else 0] = lift[0] if lift else 0.0
            images.append(
                {"render_id": f"object_free|{scene}|{overlay or ''}||{seed}",
                 "variant": "object_free", "scene": scene, "overlay": overlay,
                 "prompt": f"{scene} with a watermark" if overlay else scene, "seed": seed,
                 "status": "kept", "object_presence": 0.01, "object_query": "a circle",
                 "attribute_presence": 0.9, "logits": z,
                 "png": sample_images(4, 0.0, context, seed)[0], "created_at": at}
            )  # fmt: skip
    pool = [
        {"render_id": f"pool|{seed}", "seed": seed, "status": "kept", "object_presence": 0.9,
         "left_presence": 0.02, "erased_fraction": 0.3, "logits": [1.0] + [0.0] * 4,
         "probe_scores": [("water", 0.9), ("grass", 0.1), ("a watermark", 0.0)],
         "words": json.dumps([["water"], ["blue"]]),
         "png": sample_images(4, 0.0, "water", seed)[0], "created_at": at}
        for seed in range(2)
    ]  # fmt: skip
    return images, rows, candidates, pool


def write_sample(
    root: str | os.PathLike, class_names: tuple[str, ...] | list[str] = CLASS_NAMES
) -> SampleCatalog:
    """Write the sample catalog under `root` (two runs, each in batches of a few targets)."""
    class_names = tuple(class_names)
    writer = CatalogWriter(root)
    sample = SampleCatalog(Path(root), class_names=class_names)
    start = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    for r, run_id in enumerate(RUN_IDS):
        created = start + timedelta(days=r)
        writer.write_run(
            run_id,
            created_at=created,
            versions={"torch": "2.13.0", "diffusers": "0.42.1"},
            name=f"toy shapes audit, checkpoint {'ab'[r]}",
            spec_yaml="classifier: toy-shapes\nseeds: [0, 1]\n",
            generator="toyworld/generator",
            classifier=f"toyworld/classifier-{'ab'[r]}",
            classifier_sha256=("a1" if r == 0 else "b2") * 32,
            segmenter="toyworld/segmenter",
            num_targets=sum(len(s) for s in SEEDS[run_id].values()),
        )
        targets = list(SEEDS[run_id].items())
        for b in range(0, len(targets), 3):  # worker batches of 3 targets
            explanations, verdicts, images = [], [], []
            for target_id, seeds in targets[b : b + 3]:
                fields = _target_fields(target_id, class_names)
                for seed, (status, presence, probability, probes, context) in enumerate(seeds):
                    at = created + timedelta(minutes=1 + b, seconds=seed)
                    row = {**fields, "target_id": target_id, "seed": seed, "created_at": at}
                    if (target_id, seed) in RETRIED.get(run_id, []):
                        explanations.append(
                            {
                                **row,
                                "status": "error",
                                "error": "RuntimeError: worker lost",
                                "created_at": at - timedelta(seconds=30),
                            }
                        )
                    if status == "error":
                        explanations.append(
                            {**row, "status": "error", "error": "CUDA out of memory", "steps": 0}
                        )
                        continue
                    if status == "nan":
                        explanations.append(
                            {**row, "status": "nan", "steps": 12, "objective_value": float("nan")}
                        )
                        continue
                    words = [[[w, round(0.9 - 0.1 * i, 2)]] for i, w in enumerate(WORDS[context])]
                    explanations.append(
                        {
                            **row,
                            "status": "converged",
                            "steps": 40 + seed,
                            "objective_value": -0.1 - presence,
                            "probability": probability,
                            "converged": True,
                            "words": json.dumps(words),
                            "prompt_vectors": [0.1 * seed] * 6,
                            "vector_shape": [3, 2],
                            "seconds": 2.5,
                            "worker": f"worker-{b // 3}",
                        }
                    )
                    index = fields["class_index"] if fields["class_index"] is not None else 4
                    verdict = (
                        "core"
                        if presence >= 0.5
                        else "spurious"
                        if presence <= 0.2
                        else "uncertain"
                    )
                    ranked = fields["class_index"] is not None
                    query = f"a {class_names[index].split(',')[0]}" if ranked else "a shape"
                    judged = {"judged_by": "presence"}
                    if fields["kind"] == "unit":  # by intervention: the share kept decides
                        kept = None if verdict == "uncertain" else round(1.0 - presence, 2)
                        judged = {
                            "judged_by": "intervention",
                            "kept": kept,
                            "activation": 2.0,
                            "activation_without_objects": None if kept is None else 2.0 * kept,
                        }
                    verdicts.append(
                        {
                            "target_id": target_id,
                            "seed": seed,
                            "object_query": query,
                            "presence": presence,
                            "verdict": verdict,
                            "probe_scores": probes,
                            "created_at": at,
                            **judged,
                        }
                    )
                    png, mask = sample_images(index, presence, context, seed)
                    images.append(
                        {
                            "target_id": target_id,
                            "seed": seed,
                            "png": png,
                            "mask_png": mask,
                            "created_at": at,
                        }
                    )
            writer.write_batch(run_id, explanations, verdicts, images)
            for name, rows in (
                ("explanations", explanations),
                ("verdicts", verdicts),
                ("images", images),
            ):
                sample.rows[name] = sample.rows.get(name, 0) + len(rows)
        writer.write(
            "labels", [{**LABEL, "class_name": class_names[0], "created_at": created}], run_id
        )
        shortcut_images, shortcuts, candidates, pool = _shortcut_rows(run_id, class_names, created)
        writer.write("shortcut_pool", pool, run_id)
        writer.write("shortcut_images", shortcut_images, run_id)
        writer.write("shortcuts", shortcuts, run_id)
        writer.write("shortcut_candidates", candidates, run_id)
        units = _unit_shortcut_rows(class_names, created)
        writer.write("unit_shortcuts", units, run_id)
        sample.rows["unit_shortcuts"] = sample.rows.get("unit_shortcuts", 0) + len(units)
        sample.rows["shortcut_images"] = sample.rows.get("shortcut_images", 0) + len(
            shortcut_images
        )
        sample.rows["shortcuts"] = sample.rows.get("shortcuts", 0) + len(shortcuts)
        writer.finish_run(run_id, "finished", wall_seconds=120.0 + r)
        sample.rows["runs"] = sample.rows.get("runs", 0) + 2
    sample.files = sorted(Path(root).glob("*/run_id=*/part-*.parquet"))
    return sample


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "catalogs/sample")
    made = write_sample(out)
    print(f"wrote {len(made.files)} files under {out}: {made.rows}")
