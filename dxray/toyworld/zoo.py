"""The toy zoo: every model of the toy world, trained, gated and described in one folder.

    <zoo>/generator/         SD-family generator (diffusers layout)   train_generator
    <zoo>/classifier/        the audited, biased classifier            train_classifier
    <zoo>/classifier-fixed/  its release with a correlation removed
    <zoo>/oracle/            independent judge (object, context, cue)  never used by the engine
    <zoo>/segmenter/         CLIPSeg trained on the world              train_segmenter
    <zoo>/truth/, truth-fixed/  ground truth Parquet + units.csv      truth.compute_truth
    <zoo>/gates.json         `check_zoo` results (gates.write_gates: its one writer and shape)
    <zoo>/zoo.json           the manifest: the zoo's world, and parts shared with other zoos

`dxray zoo train` builds it, `dxray zoo check` prints the gate table, `dxray zoo truth` writes
the ground truth. The committed zoos are in dxray/toyworld/zoo/: default, and reshuffled (the
default world's visuals with other planted correlations).

A zoo need not hold every part. Its manifest may share parts of another zoo, by a path relative
to the zoo: a world with the same visuals as another needs no generator or segmenter of its own
(they only know how things look), and an oracle trained on unbiased scenes serves every world
with the same classes, contexts and cues:

    {"world": "reshuffled",
     "shared": {"generator": "../default/generator", "segmenter": "../default/segmenter",
                "oracle": "../default/oracle"}}

Every reader locates a part with `zoo_part(zoo, "generator")` (the zoo's own folder first, else
the shared one, checked against the zoo's world) and the world with `zoo_world(zoo)`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dxray.toyworld.data import class_names
from dxray.toyworld.gates import GATES_FILE, GateRow, gate_rows, read_gates, write_gates
from dxray.toyworld.scenes import caption_words
from dxray.toyworld.world import WORLDS_DIR, World, WorldConfigError, load_world

ZOOS_DIR = Path(__file__).parent / "zoo"
DEFAULT_ZOO = ZOOS_DIR / "default"
MANIFEST_FILE = "zoo.json"
TRUTH_RECORD = "truth.json"  # how a truth folder was computed: world, classifier, n, seed, k

# The parts of a zoo, each a folder named like the part, and the command that makes it.
PARTS: dict[str, str] = {
    "generator": "dxray zoo train --out {zoo} --world {world} --parts generator",
    "segmenter": "dxray zoo train --out {zoo} --world {world} --parts segmenter",
    "classifier": "dxray zoo train --out {zoo} --world {world} --parts classifiers",
    "classifier-fixed": "dxray zoo train --out {zoo} --world {world} --parts classifiers",
    "oracle": "dxray zoo train --out {zoo} --world {world} --parts classifiers",
    "truth": "dxray zoo truth {zoo} --world {world}",
    "truth-fixed": "dxray zoo truth {zoo} --world {world}",
}


class ZooError(ValueError):
    """A zoo that cannot be used as asked: a missing part, a bad manifest, a shared part that
    does not fit the zoo's world. The message names the zoo, the part and what to do."""


# ---------------------------------------------------------------------------------------------
# Locating parts: own folder, else the manifest's shared path
# ---------------------------------------------------------------------------------------------


def read_manifest(zoo: str | Path) -> dict[str, Any]:
    """The zoo's `zoo.json`, checked: {"world": str, "shared": {part: path}}, both optional;
    {} when the zoo has none."""
    path = Path(zoo) / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ZooError(f"{path}: not a readable JSON manifest ({e})") from e
    if not isinstance(data, dict):
        raise ZooError(f"{path}: expected a JSON object, got {type(data).__name__}")
    unknown = set(data) - {"world", "shared"}
    if unknown:
        raise ZooError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: world, shared")
    if "world" in data and not (isinstance(data["world"], str) and data["world"]):
        raise ZooError(f"{path}: world: expected a bundled world name or a YAML path")
    shared = data.get("shared", {})
    if not isinstance(shared, dict):
        raise ZooError(f"{path}: shared: expected an object of part -> path")
    for part, where in shared.items():
        if part not in PARTS:
            raise ZooError(f"{path}: shared.{part}: not a part of a zoo; parts: {list(PARTS)}")
        if not isinstance(where, str) or not where:
            raise ZooError(f"{path}: shared.{part}: expected a path relative to the zoo")
    return data


def _locate(zoo: Path, part: str) -> tuple[Path | None, bool]:
    """(where `part` is, whether it is shared); (None, False) when nowhere."""
    if part not in PARTS:
        raise ValueError(f"unknown zoo part {part!r}; parts: {list(PARTS)}")
    own = zoo / part
    if own.is_dir():
        return own, False
    shared = read_manifest(zoo).get("shared", {})
    if part in shared:
        # normpath: "zoo/reshuffled/../default/generator" -> "zoo/default/generator", lexically
        where = Path(os.path.normpath(zoo / shared[part]))
        if not where.is_dir():
            raise ZooError(
                f"zoo '{zoo}': part {part!r} is shared from '{shared[part]}' ({MANIFEST_FILE}), "
                f"but '{where}' is not a folder"
            )
        return where, True
    return None, False


def has_part(zoo: str | Path, part: str) -> bool:
    """Whether the zoo holds `part` or shares it (see `zoo_part`)."""
    return _locate(Path(zoo), part)[0] is not None


def zoo_part(zoo: str | Path, part: str) -> Path:
    """Where the zoo's `part` (a key of `PARTS`) is: the zoo's own folder `<zoo>/<part>` first,
    else the path its manifest shares, relative to the zoo. A shared part is checked against
    the zoo's world (see `check_shared_part`). Raises `ZooError` naming the part and the command
    that makes it when the zoo has neither."""
    zoo = Path(zoo)
    where, shared = _locate(zoo, part)
    if where is None:
        try:
            world = zoo_world(zoo).name
        except ZooError:
            world = "<world>"
        how = PARTS[part].format(zoo=zoo, world=world)
        raise ZooError(
            f"zoo '{zoo}' has no {part}: no folder '{zoo / part}', and its {MANIFEST_FILE} "
            f"shares none. Make it with: {how} (or share another zoo's in {MANIFEST_FILE}: "
            f'{{"shared": {{"{part}": "../<zoo>/{part}"}}}})'
        )
    if shared:
        check_shared_part(part, where, zoo_world(zoo), zoo=zoo)
    return where


def zoo_world(zoo: str | Path) -> World:
    """The world the zoo was trained on: its manifest's "world" (a bundled name, or a YAML path
    relative to the zoo), else the world that gates.json or the parts' training records name."""
    zoo = Path(zoo)
    named = read_manifest(zoo).get("world")
    source = MANIFEST_FILE
    if named is None:
        named, source = _recorded_world(zoo)
    if named is None:
        raise ZooError(
            f"zoo '{zoo}': cannot tell its world: no {MANIFEST_FILE} with a \"world\", and no "
            f"{GATES_FILE} or training record names one. Add {zoo / MANIFEST_FILE}: "
            '{"world": "<bundled name or YAML path>"}'
        )
    if named.endswith((".yaml", ".yml")):
        target = zoo / named  # relative to the zoo (an absolute path stays as it is)
    else:
        bundled = WORLDS_DIR / f"{named}.yaml"
        target = bundled if bundled.is_file() else named  # load_world names what exists
    try:
        return load_world(target)
    except WorldConfigError as e:
        raise ZooError(f"zoo '{zoo}': the world {named!r} of its {source}: {e}") from e


def _recorded_world(zoo: Path) -> tuple[str | None, str]:
    """A world name from gates.json, else from the first training record that names one."""
    try:
        world = read_gates(zoo).get("world")  # not in the classifier trainer's old gates.json
    except (OSError, ValueError):
        world = None
    if isinstance(world, str) and world:
        return world, GATES_FILE
    records = []
    for part, record in (
        ("classifier", "training.json"),
        ("classifier-fixed", "training.json"),
        ("oracle", "training.json"),
        ("segmenter", "dxray_train.json"),
        ("generator", "dxray_train.json"),
    ):
        where, _ = _locate(zoo, part)
        if where is not None:
            records.append(where / record)
    for path in records:
        try:
            world = json.loads(path.read_text()).get("world")
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
        if isinstance(world, dict):  # the generator's record: {"name": ..., "config": ...}
            world = world.get("name")
        if isinstance(world, str) and world:
            return world, str(path.relative_to(zoo) if path.is_relative_to(zoo) else path)
    return None, ""


def tokenizer_words(folder: str | Path) -> set[str]:
    """The whole words of a saved CLIP-style tokenizer (its "<word></w>" tokens), read from
    tokenizer.json or vocab.json in `folder`."""
    folder = Path(folder)
    for name in ("tokenizer.json", "vocab.json"):
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                vocab = data["model"]["vocab"] if name == "tokenizer.json" else data
                return {token[: -len("</w>")] for token in vocab if token.endswith("</w>")}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise ZooError(f"'{path}': not a readable tokenizer vocabulary ({e!r})") from e
    raise ZooError(f"'{folder}' holds no tokenizer.json or vocab.json: cannot read its words")


def check_shared_part(part: str, where: str | Path, world: World, *, zoo: str | Path = "") -> None:
    """Can `part` at `where`, trained for another zoo, serve `world`? A generator's or
    segmenter's tokenizer must hold every caption word of the world as one token (a word it
    never saw would be drawn or segmented from byte pieces, i.e. not at all); a classifier,
    fixed release or oracle must have the world's outputs. Raises `ZooError` otherwise."""
    from dxray.toyworld.nets import oracle_output_names

    where = Path(where)
    label = f"zoo '{zoo}': shared {part} '{where}'" if zoo else f"{part} '{where}'"
    if part in ("generator", "segmenter"):
        words = tokenizer_words(where / "tokenizer" if part == "generator" else where)
        missing = [w for w in caption_words(world) if w not in words]
        if missing:
            raise ZooError(
                f"{label} does not know the caption word(s) {missing} of world "
                f"{world.name!r}: it can only serve worlds whose classes, colours, contexts and "
                f"cues it was trained on. Train one for this world with: "
                + PARTS[part].format(zoo=zoo or "<zoo>", world=world.name)
            )
    elif part in ("classifier", "classifier-fixed", "oracle"):
        want = oracle_output_names(world) if part == "oracle" else class_names(world)
        try:
            got = json.loads((where / "classifier.json").read_text()).get("class_names")
        except (OSError, json.JSONDecodeError) as e:
            raise ZooError(f"{label}: cannot read its classifier.json ({e})") from e
        if got != want:
            raise ZooError(f"{label} has outputs {got}; world {world.name!r} needs {want}")


def check_zoo(
    zoo: str | Path,
    world: World | None = None,
    *,
    steps: int = 4,
    guidance_scale: float = 1.0,
    write: bool = False,
):
    """Every gate of the zoo at `zoo`, returned; with `write`, also recorded in gates.json
    (a check alone leaves the zoo's files as they are: a committed zoo stays clean). Parts are
    found with `zoo_part` (shared ones included); `world` defaults to `zoo_world(zoo)`. The
    segmenter and generator gates are skipped when the zoo has no such part."""
    from dxray.models.classifier_io import load_classifier
    from dxray.models.generator import load_generator
    from dxray.models.segmenter import load_segmenter
    from dxray.toyworld.generator_gates import generator_gates
    from dxray.toyworld.segmenter_training.gates import segmenter_gates
    from dxray.toyworld.truth_gates import classifier_gates

    zoo = Path(zoo)
    world = world if world is not None else zoo_world(zoo)
    started = time.perf_counter()
    oracle = load_classifier(zoo_part(zoo, "oracle"))
    rows: list[GateRow] = []
    rows += gate_rows(
        "classifier",
        classifier_gates(
            world,
            load_classifier(zoo_part(zoo, "classifier")),
            fixed=load_classifier(zoo_part(zoo, "classifier-fixed")),
            oracle=oracle,
        ),
    )
    if has_part(zoo, "segmenter"):
        segmenter = load_segmenter(zoo_part(zoo, "segmenter"))
        rows += gate_rows("segmenter", segmenter_gates(segmenter, world))
    if has_part(zoo, "generator"):
        generator = load_generator(zoo_part(zoo, "generator"))
        rows += generator_gates(
            world,
            generator,
            oracle,
            steps=steps,
            guidance_scale=guidance_scale,
            segmenter=load_segmenter(zoo_part(zoo, "segmenter"))
            if has_part(zoo, "segmenter")
            else None,
        )
    located = {part: _locate(zoo, part) for part in PARTS}
    shared = {
        part: os.path.relpath(w, zoo) for part, (w, is_shared) in located.items() if is_shared
    }
    if write:
        write_gates(
            zoo,
            rows,
            world=world.name,
            seconds=time.perf_counter() - started,
            sampler={"steps": steps, "guidance_scale": guidance_scale},
            shared=shared,
        )
    return rows


def write_zoo_truth(
    zoo: str | Path,
    world: World | None = None,
    *,
    n: int = 500,
    seed: int = 0,
    k: int = 5,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Measure the ground truth of the zoo's classifier and fixed release (found with
    `zoo_part`) and write it into the zoo's own truth/ and truth-fixed/ (Parquet, units.csv,
    and truth.json: what was measured, with which n, seed and k). `world` defaults to
    `zoo_world(zoo)`. Returns the folders written."""
    from dxray.models.classifier_io import load_classifier
    from dxray.toyworld.truth import compute_truth
    from dxray.toyworld.truth_io import write_truth

    zoo = Path(zoo)
    world = world if world is not None else zoo_world(zoo)
    written = []
    for part, folder in (("classifier", "truth"), ("classifier-fixed", "truth-fixed")):
        if not has_part(zoo, part):
            continue
        started = time.perf_counter()
        source = zoo_part(zoo, part)
        tables = compute_truth(world, load_classifier(source), n=n, seed=seed, k=k)
        out = write_truth(zoo / folder, *tables, classes=class_names(world))
        record = {
            "world": world.name,
            "classifier": os.path.relpath(source, zoo),
            "n": n,
            "seed": seed,
            "k": k,
            "seconds": round(time.perf_counter() - started, 1),
        }
        (out / TRUTH_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        written.append(out)
        if progress is not None:
            progress(f"wrote {out}")
    return written


def build_tiny_zoo(root: str | Path, world: World | None = None) -> Path:
    """A deliberately tiny, untrained zoo (generator, classifier, segmenter) in the real
    formats, built in seconds: for tests and smoke runs of the platform, not for verdicts.
    A bundled world is named in the zoo's zoo.json, so `zoo_world` finds it."""
    from dxray.models.build import GeneratorArch, build_generator
    from dxray.models.classifier import Preprocessing
    from dxray.models.classifier_io import save_classifier
    from dxray.toyworld.nets import toy_cnn
    from dxray.toyworld.segmenter_training.config import ToySegmenterConfig
    from dxray.toyworld.segmenter_training.model import build_toy_segmenter
    from dxray.toyworld.world import default_world

    root, world = Path(root), world or default_world()
    build_generator(GeneratorArch(latent_size=8), seed=0).save_pretrained(root / "generator")
    torch.manual_seed(0)
    kwargs = dict(num_classes=len(world.classes), width=4, hidden=8, depth=1, grid=2)
    save_classifier(
        root / "classifier",
        toy_cnn(**kwargs),
        factory="dxray.toyworld.nets:toy_cnn",
        factory_kwargs=kwargs,
        preprocessing=Preprocessing((16, 16), (0.5,) * 3, (0.5,) * 3),
        class_names=class_names(world),
    )
    config = ToySegmenterConfig(
        image_size=16, patch_size=4, vision_hidden=16, vision_layers=2, vision_heads=2,
        extract_layers=(1,), text_hidden=16, text_heads=2, projection_dim=16, reduce_dim=8,
        decoder_heads=2,
    )  # fmt: skip
    build_toy_segmenter(world, config, seed=0).save_pretrained(root / "segmenter")
    try:
        bundled = load_world(world.name) == world
    except WorldConfigError:
        bundled = False
    if bundled:  # so that zoo_world finds it
        (root / MANIFEST_FILE).write_text(json.dumps({"world": world.name}, indent=2) + "\n")
    return root
