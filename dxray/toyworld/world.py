"""The toy world's config: which shapes, colours, contexts and cues exist, and which spurious
correlations are planted in the classifier's training data.

A world is one YAML file (see `worlds/default.yaml`, which documents every field). It is
validated when loaded: an unknown key, a name that refers to nothing, a probability outside
[0, 1] or a duplicate name raises `WorldConfigError`, whose message names the file, the field
path (e.g. `correlations[1].context`) and what is allowed, with the closest valid name.

    world = load_world("dxray/toyworld/worlds/default.yaml")   # or load_world("default")
    world.correlations[0].name                                  # "circle-water"
    world.fixed().correlations                                  # the fixed release's planting
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from dxray.yamlio import Checker, read_yaml, suggest

WORLDS_DIR = Path(__file__).parent / "worlds"
IMAGE_SIZES = (32, 48, 64)
RGB = tuple[int, int, int]


class WorldConfigError(ValueError):
    """A world config that cannot be used; the message says where and what to write instead."""


# ---------------------------------------------------------------------------------------------
# What a config may name: shape rasterisers, texture generators and cue painters (implemented
# in `scenes.py`), each with its named parameters. Colours are RGB in 0..255; lengths are
# fractions of the image side, so a world renders alike at 32, 48 and 64 px.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One named parameter of a texture or cue: its default, and the allowed words if a word."""

    default: float | RGB | str
    doc: str
    choices: tuple[str, ...] = ()


SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "heart", "diamond", "hexagon")

TEXTURES: dict[str, dict[str, Param]] = {
    "water": {
        "colour": Param((30, 90, 175), "base blue"),
        "ripples": Param(5.0, "horizontal ripples per image height"),
        "amplitude": Param(0.12, "brightness swing of the ripples"),
        "highlight": Param(0.45, "how white the ripple crests get"),
    },
    "grass": {
        "colour": Param((55, 140, 40), "base green"),
        "strokes": Param(0.12, "brightness spread between vertical blade strokes"),
        "noise": Param(0.05, "per-pixel brightness noise"),
    },
    "sand": {
        "colour": Param((222, 192, 135), "base beige"),
        "speckle": Param(0.18, "fraction of pixels that are dark or light grains"),
        "dunes": Param(2.0, "dune waves per image"),
    },
    "brick": {
        "colour": Param((150, 55, 40), "brick red"),
        "mortar": Param((205, 200, 190), "mortar grey"),
        "rows": Param(6.0, "brick rows per image height"),
        "joint": Param(0.2, "mortar thickness as a fraction of a row"),
    },
    "sky": {
        "top": Param((60, 130, 225), "colour at the top"),
        "bottom": Param((165, 205, 250), "colour at the bottom"),
        "clouds": Param(3.0, "mean number of clouds"),
        "cloud_size": Param(0.12, "cloud radius"),
    },
    "snow": {
        "colour": Param((238, 240, 246), "base white"),
        "noise": Param(0.035, "per-pixel brightness noise"),
        "shadow": Param(0.10, "depth of the soft blue-grey drifts"),
    },
}

CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")

CUES: dict[str, dict[str, Param]] = {
    # A light glyph (an X, boxed by default), drawn light on dark ground and dark on light ground so it is visible
    # on every context (a white mark on snow would be invisible).
    "watermark": {
        "corner": Param(
            "bottom-right",
            "where the mark goes; random = chosen by the scene seed",
            (*CORNERS, "random"),
        ),
        "glyph": Param(
            "boxed-x", "the mark: an X, or an X inside a square outline", ("x", "boxed-x")
        ),
        "size": Param(0.22, "side of the glyph"),
        "margin": Param(0.06, "gap between the glyph and the image edge"),
        "thickness": Param(0.04, "stroke width"),
        "opacity": Param(0.75, "how strongly the glyph covers the ground"),
    },
    # A thin frame around the whole image, like a photo border.
    "border": {
        "colour": Param((255, 40, 200), "frame colour"),
        "thickness": Param(0.04, "frame width"),
    },
}


# ---------------------------------------------------------------------------------------------
# The typed world
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeClass:
    """An object class of the classifier; `shape` is the rasteriser that draws it."""

    name: str
    shape: str


@dataclass(frozen=True)
class Context:
    """A background; `params` holds every texture parameter (defaults filled in)."""

    name: str
    texture: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Cue:
    """A spurious mark such as a watermark; present in `base_rate` of unplanted scenes."""

    name: str
    kind: str
    base_rate: float
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Correlation:
    """In the classifier's training data, `class_name` meets `context` (or `cue`) with prob `p`."""

    class_name: str
    p: float
    context: str | None = None
    cue: str | None = None

    @property
    def name(self) -> str:
        """How a release refers to it: "circle-water", "star-watermark"."""
        return f"{self.class_name}-{self.context or self.cue}"

    @property
    def kind(self) -> str:
        return "context" if self.context is not None else "cue"


@dataclass(frozen=True)
class Layout:
    """Where and how big objects are, in fractions of the image side."""

    size: tuple[float, float] = (0.45, 0.7)  # object diameter range
    jitter: float = 0.12  # max offset of the object centre from the image centre
    rotate: bool = True  # random rotation for shapes that are not round


@dataclass(frozen=True)
class World:
    """A validated toy world. Build with `load_world`, `default_world` or `World.from_dict`."""

    name: str
    image_size: int
    classes: tuple[ShapeClass, ...]
    colours: Mapping[str, RGB]
    layout: Layout
    contexts: tuple[Context, ...]
    cues: tuple[Cue, ...]
    correlations: tuple[Correlation, ...]
    fixed_release_removes: tuple[str, ...] = ()
    description: str = ""
    source: str = field(default="<dict>", compare=False)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> World:
        """Validate a parsed config; errors name `source` and the field path."""
        return _parse_world(data, source)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data; `World.from_dict(w.to_dict()) == w`."""
        return {
            "name": self.name,
            "description": self.description,
            "image_size": self.image_size,
            "classes": [{"name": c.name, "shape": c.shape} for c in self.classes],
            "colours": {k: list(v) for k, v in self.colours.items()},
            "layout": {
                "size": list(self.layout.size),
                "jitter": self.layout.jitter,
                "rotate": self.layout.rotate,
            },
            "contexts": [
                {"name": c.name, "texture": c.texture, "params": _plain(c.params)}
                for c in self.contexts
            ],
            "cues": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "base_rate": c.base_rate,
                    "params": _plain(c.params),
                }
                for c in self.cues
            ],
            "correlations": [
                {"class": c.class_name, c.kind: c.context or c.cue, "p": c.p}
                for c in self.correlations
            ],
            "fixed_release": {"remove": list(self.fixed_release_removes)},
        }

    def fixed(self) -> World:
        """The world of the "fixed" release: the same, minus the correlations it removes."""
        kept = tuple(c for c in self.correlations if c.name not in self.fixed_release_removes)
        return replace(self, name=f"{self.name}-fixed", correlations=kept, fixed_release_removes=())

    @cached_property
    def class_by_name(self) -> dict[str, ShapeClass]:
        return {c.name: c for c in self.classes}

    @cached_property
    def context_by_name(self) -> dict[str, Context]:
        return {c.name: c for c in self.contexts}

    @cached_property
    def cue_by_name(self) -> dict[str, Cue]:
        return {c.name: c for c in self.cues}


def load_world(path: str | Path) -> World:
    """Load and validate a world YAML. A bare name ("default", "second") means a bundled world."""
    path = Path(path)
    if not path.exists() and path.suffix == "" and path.parent == Path("."):
        bundled = WORLDS_DIR / f"{path.name}.yaml"
        if not bundled.exists():
            names = sorted(p.stem for p in WORLDS_DIR.glob("*.yaml"))
            raise WorldConfigError(
                f"{path}: no such file and no bundled world of that name; bundled: {names}"
                + _suggest(path.name, names)
            )
        path = bundled
    data = read_yaml(path, what="world config", error=WorldConfigError)
    return World.from_dict(data, source=str(path))


def default_world() -> World:
    """The bundled default world (`worlds/default.yaml`)."""
    return load_world(WORLDS_DIR / "default.yaml")


# ---------------------------------------------------------------------------------------------
# Validation: each helper knows the file and the field path, so every error can name both.
# ---------------------------------------------------------------------------------------------

_NAME = re.compile(r"^[a-z]+$")  # names are caption words: one lowercase word each
_TOP_KEYS = {
    "name", "description", "image_size", "classes", "colours", "layout", "contexts", "cues",
    "correlations", "fixed_release",
}  # fmt: skip


def _suggest(word: str, allowed: Sequence[str]) -> str:
    return suggest(word, list(allowed), cutoff=0.5)  # names are short: a looser match helps


class _Checker(Checker):
    """The strict checker of specs (`dxray.yamlio.Checker`), plus the world's own kinds of
    value: caption-word names, RGB colours, names that must be unique."""

    def __init__(self, source: str):
        super().__init__(source, error=WorldConfigError)

    def name(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not _NAME.match(value):
            raise self.fail(
                path,
                f"{value!r} is not a valid name: use one lowercase word (a-z), it is a caption word",
            )
        return value

    def rgb(self, value: Any, path: str) -> RGB:
        ok = (
            isinstance(value, list | tuple)
            and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
        )
        if not ok:
            raise self.fail(path, f"expected an RGB triple of integers 0..255, got {value!r}")
        return (int(value[0]), int(value[1]), int(value[2]))

    def unique(self, names: list[str], path: str, what: str) -> None:
        seen: set[str] = set()
        for i, n in enumerate(names):
            if n in seen:
                raise self.fail(f"{path}[{i}].name", f"duplicate {what} name {n!r}")
            seen.add(n)

    def params(self, value: Any, path: str, spec: dict[str, Param]) -> dict[str, Any]:
        value = {} if value is None else value
        self.mapping(value, path, allowed=set(spec))
        out: dict[str, Any] = {}
        for key, param in spec.items():
            v = value.get(key, param.default)
            sub = f"{path}.{key}"
            if param.choices:
                out[key] = self.one_of(v, sub, param.choices)
            elif isinstance(param.default, tuple):
                out[key] = self.rgb(v, sub)
            else:
                out[key] = self.number(v, sub, lo=0.0, hi=1e3)
        return out


def _parse_world(data: Any, source: str) -> World:
    ck = _Checker(source)
    ck.mapping(data, "", allowed=_TOP_KEYS, required={"name", "classes", "colours", "contexts"})

    name = data["name"]
    if not isinstance(name, str) or not name:
        raise ck.fail("name", "expected a non-empty string")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ck.fail("description", "expected a string")

    image_size = data.get("image_size", 32)
    if image_size not in IMAGE_SIZES:
        raise ck.fail("image_size", f"{image_size!r} is not one of {list(IMAGE_SIZES)}")

    # Classes: `{name: circle}` draws a circle; `{name: ball, shape: circle}` names it otherwise.
    classes = []
    for i, entry in enumerate(ck.sequence(data["classes"], "classes", min_len=2)):
        p = f"classes[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        ck.mapping(entry, p, allowed={"name", "shape"}, required={"name"})
        cname = ck.name(entry["name"], f"{p}.name")
        shape = ck.one_of(entry.get("shape", cname), f"{p}.shape", SHAPES)
        classes.append(ShapeClass(cname, shape))
    ck.unique([c.name for c in classes], "classes", "class")

    colours_raw = data["colours"]
    if not isinstance(colours_raw, dict) or not colours_raw:
        raise ck.fail("colours", "expected a mapping of colour name -> [r, g, b], at least one")
    colours = {
        ck.name(k, f"colours.{k}"): ck.rgb(v, f"colours.{k}") for k, v in colours_raw.items()
    }

    layout_raw = data.get("layout", {})
    ck.mapping(layout_raw, "layout", allowed={"size", "jitter", "rotate"})
    size = layout_raw.get("size", list(Layout.size))
    if not (isinstance(size, list) and len(size) == 2):
        raise ck.fail(
            "layout.size", f"expected [min, max] fractions of the image side, got {size!r}"
        )
    lo = ck.number(size[0], "layout.size[0]", lo=0.05, hi=1.0)
    hi = ck.number(size[1], "layout.size[1]", lo=lo, hi=1.0)
    jitter = ck.number(layout_raw.get("jitter", Layout.jitter), "layout.jitter", lo=0.0, hi=0.45)
    rotate = layout_raw.get("rotate", True)
    if not isinstance(rotate, bool):
        raise ck.fail("layout.rotate", f"expected true or false, got {rotate!r}")
    layout = Layout((lo, hi), jitter, rotate)

    contexts = []
    for i, entry in enumerate(ck.sequence(data["contexts"], "contexts", min_len=2)):
        p = f"contexts[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        ck.mapping(entry, p, allowed={"name", "texture", "params"}, required={"name"})
        cname = ck.name(entry["name"], f"{p}.name")
        texture = ck.one_of(entry.get("texture", cname), f"{p}.texture", list(TEXTURES))
        params = ck.params(entry.get("params"), f"{p}.params", TEXTURES[texture])
        contexts.append(Context(cname, texture, params))
    ck.unique([c.name for c in contexts], "contexts", "context")

    cues = []
    for i, entry in enumerate(ck.sequence(data.get("cues", []), "cues")):
        p = f"cues[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        ck.mapping(entry, p, allowed={"name", "kind", "base_rate", "params"}, required={"name"})
        cname = ck.name(entry["name"], f"{p}.name")
        kind = ck.one_of(entry.get("kind", cname), f"{p}.kind", list(CUES))
        rate = ck.number(entry.get("base_rate", 0.1), f"{p}.base_rate", lo=0.0, hi=1.0)
        params = ck.params(entry.get("params"), f"{p}.params", CUES[kind])
        cues.append(Cue(cname, kind, rate, params))
    ck.unique([c.name for c in cues], "cues", "cue")
    # A scene carries at most one cue, so the cue rates are one categorical distribution.
    if sum(c.base_rate for c in cues) > 1.0 + 1e-9:
        raise ck.fail(
            "cues", "the base_rate values sum to more than 1 (a scene has at most one cue)"
        )

    class_names = [c.name for c in classes]
    context_names = [c.name for c in contexts]
    cue_names = [c.name for c in cues]
    correlations: list[Correlation] = []
    for i, entry in enumerate(ck.sequence(data.get("correlations", []), "correlations")):
        p = f"correlations[{i}]"
        ck.mapping(entry, p, allowed={"class", "context", "cue", "p"}, required={"class", "p"})
        if ("context" in entry) == ("cue" in entry):
            raise ck.fail(p, "give exactly one of 'context' or 'cue'")
        cls = ck.one_of(entry["class"], f"{p}.class", class_names)
        prob = ck.number(entry["p"], f"{p}.p", lo=0.0, hi=1.0)
        if "context" in entry:
            corr = Correlation(
                cls, prob, context=ck.one_of(entry["context"], f"{p}.context", context_names)
            )
        else:
            if not cue_names:
                raise ck.fail(f"{p}.cue", "the world defines no cues (add a 'cues' section)")
            corr = Correlation(cls, prob, cue=ck.one_of(entry["cue"], f"{p}.cue", cue_names))
        for prev in correlations:
            if prev.name == corr.name:
                raise ck.fail(p, f"duplicate correlation {corr.name!r}")
            if corr.kind == "context" and prev.kind == "context" and prev.class_name == cls:
                raise ck.fail(
                    f"{p}.context",
                    f"class {cls!r} already has a planted context ({prev.context!r}); one per class",
                )
        correlations.append(corr)
    for cls in class_names:
        planted = sum(c.p for c in correlations if c.kind == "cue" and c.class_name == cls)
        if planted > 1.0 + 1e-9:
            raise ck.fail(
                "correlations", f"the cue correlations of class {cls!r} sum to more than 1"
            )

    removes: tuple[str, ...] = ()
    if "fixed_release" in data:
        fr = ck.mapping(
            data["fixed_release"], "fixed_release", allowed={"remove"}, required={"remove"}
        )
        names = [c.name for c in correlations]
        seq = ck.sequence(fr["remove"], "fixed_release.remove")
        removes = tuple(
            ck.one_of(r, f"fixed_release.remove[{j}]", names) for j, r in enumerate(seq)
        )

    return World(
        name=name,
        image_size=int(image_size),
        classes=tuple(classes),
        colours=colours,
        layout=layout,
        contexts=tuple(contexts),
        cues=tuple(cues),
        correlations=tuple(correlations),
        fixed_release_removes=removes,
        description=description,
        source=source,
    )


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
