"""Deterministic rendering of toy-world scenes: an image, exact masks and a caption.

A scene is one `SceneSpec` (object class, colour, size, position, rotation, context, cue, seed).
`render` paints, in order:

1. the context texture, procedural and seeded by `spec.seed` (same seed, same texture);
2. the object, filled flat where its analytic inside-test holds at the pixel centre, so the
   object mask is exact (no anti-aliasing, no partial pixels);
3. the cue on top of both (the watermark glyph in its corner, or a frame).

Masks partition the image: "cue" = the pixels the cue painted, "object" = the object's pixels
not covered by the cue (what is visible of it), "context" = everything else. Lengths in a spec
are fractions of the image side and positions are in [0, 1] (x right, y down), so a spec
renders alike at 32, 48 and 64 px. Rendering is pure numpy, about 0.2 ms per 32 px scene.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from dxray.toyworld.world import CORNERS, CUES, SHAPES, TEXTURES, World, _suggest


@dataclass(frozen=True)
class SceneSpec:
    """Everything that determines a scene; `render(world, spec)` is a pure function of it."""

    shape: str | None  # object class name; None = a context-only scene
    colour: str | None  # colour name (None when there is no object)
    size: float  # object diameter, fraction of the image side
    position: tuple[float, float]  # object centre (cx, cy) in [0, 1], x right, y down
    rotation: float  # degrees, counter-clockwise on screen
    context: str
    cue: str | None
    seed: int  # seeds the texture (and the watermark corner when it is "random")


@dataclass
class Scene:
    image: np.ndarray  # float32 [3, H, W] in [0, 1]
    masks: dict[str, np.ndarray]  # "object", "context", "cue": bool [H, W], a partition
    caption: str
    spec: SceneSpec


MASK_KEYS = ("object", "context", "cue")


def caption(spec: SceneSpec) -> str:
    """The scene's caption. One grammar, for every scene:

        caption := [ART COLOUR CLASS "on"] CONTEXT ["with" ART CUE]
        ART     := "an" before a vowel, else "a"

    e.g. "a red circle on water", "an orange star on sand with a watermark", "water",
    "grass with a watermark".
    """
    words = []
    if spec.shape is not None:
        words += [_article(spec.colour), spec.colour, spec.shape, "on"]
    words.append(spec.context)
    if spec.cue is not None:
        words += ["with", _article(spec.cue), spec.cue]
    return " ".join(words)


def caption_words(world: World) -> list[str]:
    """Every word a caption of this world can use (for building a tokenizer)."""
    words = {"a", "an", "on", "with"}
    words |= {c.name for c in world.classes} | set(world.colours)
    words |= {c.name for c in world.contexts} | {c.name for c in world.cues}
    return sorted(words)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def render(world: World, spec: SceneSpec) -> Scene:
    """Render one scene. Same spec -> bit-identical image and masks."""
    # 1. Check the spec against the world
    _check_spec(world, spec)
    h = w = world.image_size
    x, y = _pixel_centres(h, w)

    # 2. Context texture (seeded stream 0)
    context = world.context_by_name[spec.context]
    tex_rng = np.random.default_rng([spec.seed, 0])
    image = TEXTURE_PAINTERS[context.texture](tex_rng, x, y, context.params)

    # 3. Object, exact mask on pixel centres
    if spec.shape is not None:
        shape = world.class_by_name[spec.shape].shape
        obj = shape_mask(shape, x, y, spec.size, spec.position, spec.rotation)
        image[obj] = np.asarray(world.colours[spec.colour], dtype=np.float64) / 255.0
    else:
        obj = np.zeros((h, w), dtype=bool)

    # 4. Cue on top (seeded stream 1)
    if spec.cue is not None:
        cue = world.cue_by_name[spec.cue]
        cue_rng = np.random.default_rng([spec.seed, 1])
        cue_mask = CUE_PAINTERS[cue.kind](cue_rng, image, cue.params)
    else:
        cue_mask = np.zeros((h, w), dtype=bool)

    # 5. Masks as a partition of the image
    obj = obj & ~cue_mask
    masks = {"object": obj, "context": ~(obj | cue_mask), "cue": cue_mask}
    out = np.clip(image, 0.0, 1.0).astype(np.float32).transpose(2, 0, 1)
    return Scene(np.ascontiguousarray(out), masks, caption(spec), spec)


def render_batch(
    world: World, specs: Sequence[SceneSpec]
) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[str]]:
    """Render many scenes: images float32 [N, 3, H, W], masks bool [N, H, W] per key, captions."""
    if not specs:
        raise ValueError("render_batch needs at least one spec")
    scenes = [render(world, s) for s in specs]
    images = torch.from_numpy(np.stack([s.image for s in scenes]))
    masks = {k: torch.from_numpy(np.stack([s.masks[k] for s in scenes])) for k in MASK_KEYS}
    return images, masks, [s.caption for s in scenes]


def _check_spec(world: World, spec: SceneSpec) -> None:
    def known(value: Any, names: Sequence[str], what: str) -> None:
        if value not in names:
            raise ValueError(
                f"SceneSpec.{what}={value!r} is not in world {world.name!r}: {list(names)}"
                + _suggest(str(value), list(names))
            )

    known(spec.context, list(world.context_by_name), "context")
    if spec.shape is not None:
        known(spec.shape, list(world.class_by_name), "shape")
        known(spec.colour, list(world.colours), "colour")
    if spec.cue is not None:
        known(spec.cue, list(world.cue_by_name), "cue")
    if not isinstance(spec.seed, int | np.integer) or spec.seed < 0:
        raise ValueError(f"SceneSpec.seed must be a non-negative integer, got {spec.seed!r}")


@lru_cache(maxsize=8)
def _pixel_centres(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1]: x[i, j] = (j + 0.5) / w, y[i, j] = (i + 0.5) / h."""
    x, y = np.meshgrid((np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


# ---------------------------------------------------------------------------------------------
# Shapes: an inside-test in the shape's own frame (u right, v down), evaluated at pixel
# centres. Every shape fits in the unit disc, and the object's `size` is that disc's diameter.
# ---------------------------------------------------------------------------------------------


def shape_mask(
    shape: str,
    x: np.ndarray,
    y: np.ndarray,
    size: float,
    position: tuple[float, float],
    rotation: float,
) -> np.ndarray:
    """Pixels whose centre (x, y) lies inside the shape; exact, no anti-aliasing."""
    r = size / 2.0
    dx, dy = x - position[0], y - position[1]
    t = np.deg2rad(rotation)
    # Rotating the shape by +t on screen (y down) = rotating the points by -t into its frame.
    u = (np.cos(t) * dx - np.sin(t) * dy) / r
    v = (np.sin(t) * dx + np.cos(t) * dy) / r
    return SHAPE_TESTS[shape](u, v)


def _regular_polygon(n: int, radius: float = 1.0, start_deg: float = -90.0) -> np.ndarray:
    a = np.deg2rad(start_deg + 360.0 * np.arange(n) / n)
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def _star_polygon(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular_polygon(points)
    inner_pts = _regular_polygon(points, inner, -90.0 + 180.0 / points)
    return np.stack([outer, inner_pts], axis=1).reshape(-1, 2)


def _inside_polygon(u: np.ndarray, v: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Even-odd crossing test; works for non-convex polygons such as the star."""
    inside = np.zeros(u.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(verts, np.roll(verts, -1, axis=0), strict=True):
        if y1 == y2:
            continue  # a horizontal edge is never crossed by a horizontal ray
        crosses = (y1 > v) != (y2 > v)
        x_at = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (u < x_at)
    return inside


_TRIANGLE = _regular_polygon(3)
_HEXAGON = _regular_polygon(6, start_deg=0.0)
_STAR = _star_polygon()


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # The classic implicit heart (x^2 + y^2 - 1)^3 <= x^2 y^3 (y up), scaled into the unit disc.
    hx, hy = 1.27 * u, -1.27 * v + 0.24
    return (hx**2 + hy**2 - 1.0) ** 3 - hx**2 * hy**3 <= 0.0


SHAPE_TESTS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": lambda u, v: u**2 + v**2 <= 1.0,
    "ring": lambda u, v: (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.55**2),
    "square": lambda u, v: (np.abs(u) <= 0.7) & (np.abs(v) <= 0.7),
    "diamond": lambda u, v: np.abs(u) / 0.7 + np.abs(v) <= 1.0,
    "cross": lambda u, v: (
        ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(u) <= 0.95) & (np.abs(v) <= 0.3))
    ),
    "triangle": lambda u, v: _inside_polygon(u, v, _TRIANGLE),
    "hexagon": lambda u, v: _inside_polygon(u, v, _HEXAGON),
    "star": lambda u, v: _inside_polygon(u, v, _STAR),
    "heart": _heart,
}


# ---------------------------------------------------------------------------------------------
# Textures: (rng, x, y, params) -> float64 [H, W, 3], cheap numpy, varied by the rng.
# ---------------------------------------------------------------------------------------------


def _rgb(c: Sequence[int]) -> np.ndarray:
    return np.asarray(c, dtype=np.float64) / 255.0


def _water(rng, x, y, p):
    # Horizontal ripples that wobble sideways, a second oblique swell, white crests.
    f = p["ripples"] * rng.uniform(0.8, 1.25)
    wobble = 0.04 * np.sin(2 * np.pi * (rng.uniform(1.0, 3.0) * x + rng.random()))
    wave = np.sin(2 * np.pi * (f * (y + wobble) + rng.random()))
    swell = np.sin(2 * np.pi * (1.7 * f * (0.8 * y + 0.3 * x) + rng.random()))
    shade = p["amplitude"] * (wave + 0.5 * swell) / 1.5 - 0.08 * (y - 0.5)
    img = _rgb(p["colour"]) * (1.0 + shade[..., None])
    crest = np.clip((wave - 0.75) / 0.25, 0.0, 1.0)[..., None] * p["highlight"]
    return img * (1.0 - crest) + crest


def _grass(rng, x, y, p):
    # Vertical blade strokes: each pixel column has its own brightness and a slow streak.
    h, w = x.shape
    column = rng.normal(0.0, p["strokes"], size=w)
    streak = 0.5 * p["strokes"] * np.sin(2 * np.pi * (3.0 * y + rng.random(size=w)))
    noise = rng.normal(0.0, p["noise"], size=(h, w))
    shade = column[None, :] + streak + noise + 0.1 * (y - 0.5)
    return _rgb(p["colour"]) * (1.0 + shade[..., None])


def _sand(rng, x, y, p):
    # Gentle dunes plus grains: most grains darker, some lighter, hue kept.
    a = rng.uniform(0.0, np.pi)
    dunes = 0.05 * np.sin(2 * np.pi * (p["dunes"] * (np.cos(a) * x + np.sin(a) * y) + rng.random()))
    grains = rng.random(x.shape) < p["speckle"]
    grain = np.where(rng.random(x.shape) < 0.7, -0.3, 0.12) * rng.uniform(0.5, 1.0, x.shape)
    shade = dunes + grains * grain
    return _rgb(p["colour"]) * (1.0 + shade[..., None])


def _brick(rng, x, y, p):
    # Staggered rows of bricks (twice as wide as tall) with mortar joints; each brick its shade.
    rows = p["rows"]
    yy = y * rows + rng.random()
    row = np.floor(yy).astype(np.int64)
    xx = x * rows / 2.0 + 0.5 * (row % 2) + rng.random()
    col = np.floor(xx).astype(np.int64)
    joint = p["joint"]
    mortar = ((yy - row) < joint) | ((xx - col) < joint / 2.0)
    shades = rng.normal(0.0, 0.1, size=(64, 64))
    shade = shades[row % 64, col % 64] + rng.normal(0.0, 0.03, size=x.shape)
    img = _rgb(p["colour"]) * (1.0 + shade[..., None])
    img[mortar] = _rgb(p["mortar"]) * (1.0 + 0.5 * shade[mortar][:, None])
    return img


def _sky(rng, x, y, p):
    # Vertical gradient with a few soft white clouds, each three horizontal puffs.
    img = _rgb(p["top"]) * (1.0 - y[..., None]) + _rgb(p["bottom"]) * y[..., None]
    cover = np.zeros(x.shape)
    r = p["cloud_size"]
    for _ in range(rng.poisson(p["clouds"])):
        cx, cy = rng.uniform(-0.1, 1.1), rng.uniform(0.0, 0.9)
        for dx in (-1.2 * r, 0.0, 1.2 * r):
            s = r * rng.uniform(0.6, 1.1)
            cover += np.exp(-(((x - cx - dx) / (1.6 * s)) ** 2 + ((y - cy) / s) ** 2))
    cover = np.clip(cover, 0.0, 0.92)[..., None]
    return img * (1.0 - cover) + cover


def _snow(rng, x, y, p):
    # Near-white with soft blue-grey drifts (a few slow waves) and fine grain.
    field = np.zeros(x.shape)
    for _ in range(3):
        a = rng.uniform(0.0, 2 * np.pi)
        f = rng.uniform(1.0, 2.5)
        field += np.sin(2 * np.pi * (f * (np.cos(a) * x + np.sin(a) * y) + rng.random()))
    drift = np.clip(field / 3.0, 0.0, 1.0)[..., None] * p["shadow"]
    tint = np.array([1.0, 0.85, 0.35])  # drifts lose red and green more than blue
    grain = rng.normal(0.0, p["noise"], size=x.shape)[..., None]
    return _rgb(p["colour"]) * (1.0 - drift * tint) + grain


TEXTURE_PAINTERS: dict[str, Callable[..., np.ndarray]] = {
    "water": _water,
    "grass": _grass,
    "sand": _sand,
    "brick": _brick,
    "sky": _sky,
    "snow": _snow,
}


# ---------------------------------------------------------------------------------------------
# Cues: paint onto the image in place, return the exact mask of the pixels painted.
# ---------------------------------------------------------------------------------------------


def _watermark(rng, image, p):
    # A light "X" (optionally boxed) in a corner; light on dark ground, dark on light ground, semi-opaque.
    h, w = image.shape[:2]
    n = max(3, round(p["size"] * w))
    m = max(1, round(p["margin"] * w))
    corner = p["corner"]
    if corner == "random":
        corner = CORNERS[rng.integers(len(CORNERS))]
    x0 = m if corner.endswith("left") else w - m - n
    y0 = m if corner.startswith("top") else h - m - n
    b, a = np.mgrid[0:h, 0:w] + 0.5
    a, b = a - x0, b - y0  # pixel centres in the glyph box, 0..n
    in_box = (a >= 0) & (a <= n) & (b >= 0) & (b <= n)
    half = max(0.5, p["thickness"] * w / 2.0)  # at least the 1-pixel line through centres
    stroke = np.minimum(np.abs(a - b), np.abs(a + b - n)) / np.sqrt(2.0) <= half
    if p["glyph"] == "boxed-x":
        stroke |= np.minimum(np.minimum(a, n - a), np.minimum(b, n - b)) <= half
    mask = in_box & stroke
    ground = image[mask]
    # One ink for the whole glyph (per-pixel choice breaks it up on brick and mortar).
    ink = 1.0 if float((ground @ np.array([0.299, 0.587, 0.114])).mean()) < 0.6 else 0.15
    image[mask] = (1.0 - p["opacity"]) * ground + p["opacity"] * ink
    return mask


def _border(rng, image, p):
    h, w = image.shape[:2]
    t = max(1, round(p["thickness"] * w))
    mask = np.ones((h, w), dtype=bool)
    mask[t:-t, t:-t] = False
    image[mask] = _rgb(p["colour"])
    return mask


CUE_PAINTERS: dict[str, Callable[..., np.ndarray]] = {"watermark": _watermark, "border": _border}

# The config vocabulary in world.py and the painters here must name the same things.
assert set(SHAPE_TESTS) == set(SHAPES)
assert set(TEXTURE_PAINTERS) == set(TEXTURES)
assert set(CUE_PAINTERS) == set(CUES)


def attribute_vocabulary(world: World) -> list:
    """The world's contexts and cues as a shortcut-test vocabulary (`dxray.shortcuts`), in the
    caption grammar: each context a scene ("water"), each cue an overlay drawn on every
    context ({name: "a watermark", overlay: "with a watermark"}); the names are the queries
    the zoo's segmenter was trained on."""
    entries: list = [c.name for c in world.contexts]
    for cue in world.cues:
        article = _article(cue.name)
        entries.append({"name": f"{article} {cue.name}", "overlay": f"with {article} {cue.name}"})
    return entries
