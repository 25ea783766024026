"""The attribute vocabulary of the shortcut test, and the images it asks the generator for.

Two kinds of attribute:

- a **scene** fills an image on its own: "water", "sand", "a forest". Rendered from its text
  alone; its lift compares its images with those of every scene of the vocabulary.
- an **overlay** sits on an image: "a watermark", "a frame", "text". Rendered on every scene
  ("water with a watermark") and compared with the same scene, same seed, without it (a paired
  difference): an overlay on its own is not an image a generator knows how to draw.

Vocabulary entries (a spec's `shortcuts.attributes`, or the judge's probes by default):

    water                                             a scene; the probe and the text are "water"
    {name: a watermark, overlay: with a watermark}    an overlay, appended to every scene's text
    {name: a dark-skinned face, prompt: a portrait of a dark-skinned person}
                                                      a scene with its own text

`name` is what the segmenter is asked to find and what reports show. An entry that cannot be
used (empty, not a string or mapping, a duplicate) is skipped with a message, never a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

AttributeKind = Literal["scene", "overlay"]
Variant = Literal["object_free", "with_object"]
ENTRY_KEYS = ("name", "prompt", "overlay")


@dataclass(frozen=True)
class Attribute:
    name: str  # the segmenter's query and the report's label: "water", "a watermark"
    kind: AttributeKind
    phrase: str  # scene: the text that renders it; overlay: the text appended to a scene


@dataclass(frozen=True)
class Render:
    """One image the test asks for. `key` is unique within a run: resume skips keys done."""

    key: str
    variant: Variant
    scene: str  # the scene attribute's name
    overlay: str | None  # the overlay attribute's name, or None for the bare scene
    class_index: int | None  # with_object: whose object is in the image
    prompt: str
    seed: int

    @property
    def attribute(self) -> str:
        """The attribute the image must show (the overlay if any, else the scene)."""
        return self.overlay or self.scene


def parse_vocabulary(entries: Iterable[Any]) -> tuple[list[Attribute], list[str]]:
    """(usable attributes in order, one message per skipped entry)."""
    attributes: list[Attribute] = []
    problems: list[str] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        attribute, problem = _parse_entry(entry)
        if attribute is not None and attribute.name in seen:
            problem = f"{attribute.name!r} is listed twice; the second is skipped"
            attribute = None
        if attribute is None:
            problems.append(f"attribute [{i}] skipped: {problem}")
            continue
        seen.add(attribute.name)
        attributes.append(attribute)
    if attributes and not any(a.kind == "scene" for a in attributes):
        problems.append(
            "no scene attribute: overlays are rendered on scenes (e.g. water, grass), so the "
            f"overlay(s) {[a.name for a in attributes]} are skipped; add scene attributes"
        )
        attributes = []
    return attributes, problems


# A prompt's text encoder reads 77 tokens; 200 characters is already more than one prompt.
MAX_TEXT = 200


def _short(value: Any, limit: int = 60) -> str:
    """`value`'s repr, cut to `limit` characters for a message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text):,} characters)"


def _parse_entry(entry: Any) -> tuple[Attribute | None, str]:
    if isinstance(entry, str):
        if not entry.strip():
            return None, "an empty string; give the attribute's text, e.g. 'water'"
        if len(entry) > MAX_TEXT:
            return None, f"{_short(entry)} is longer than {MAX_TEXT} characters"
        text = " ".join(entry.split())
        return Attribute(text, "scene", text), ""
    if not isinstance(entry, Mapping):
        return None, (
            f"{type(entry).__name__} {_short(entry)} is neither a string ('water') nor a "
            "mapping ({name: a watermark, overlay: with a watermark})"
        )
    unknown = [k for k in entry if k not in ENTRY_KEYS]
    if unknown:
        return None, f"unknown key(s) {unknown}; allowed: {', '.join(ENTRY_KEYS)}"
    texts = {}
    for key in ENTRY_KEYS:
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            return None, f"{key} must be a non-empty string, got {_short(value)}"
        if value is not None and len(value) > MAX_TEXT:
            return None, f"{key} {_short(value)} is longer than {MAX_TEXT} characters"
        texts[key] = " ".join(value.split()) if value is not None else None
    if texts["name"] is None:
        return None, f"{_short(dict(entry))} has no name (what the segmenter looks for)"
    if texts["prompt"] is not None and texts["overlay"] is not None:
        return None, f"{texts['name']!r} gives both prompt (a scene) and overlay: pick one"
    if texts["overlay"] is not None:
        return Attribute(texts["name"], "overlay", texts["overlay"]), ""
    return Attribute(texts["name"], "scene", texts["prompt"] or texts["name"]), ""


def object_free_renders(
    attributes: Sequence[Attribute], template: str, seeds: Sequence[int], tag: str = ""
) -> list[Render]:
    """Every scene alone and every overlay on every scene, once per seed. A render's key holds
    its prompt (and `tag`: settings that change the image, e.g. the guidance scale), so a
    changed template or setting renders anew instead of reusing old images."""
    scenes = [a for a in attributes if a.kind == "scene"]
    overlays = [a for a in attributes if a.kind == "overlay"]
    out = []
    for scene in scenes:
        for overlay in [None, *overlays]:
            text = scene.phrase if overlay is None else f"{scene.phrase} {overlay.phrase}"
            prompt = _fill(template, text)
            out += _renders("object_free", scene, overlay, None, prompt, seeds, tag)
    return out


def with_object_renders(
    attributes: Sequence[Attribute],
    template: str,
    seeds: Sequence[int],
    objects: Mapping[int, str],
    tag: str = "",
) -> list[Render]:
    """For each class (index -> its object's text, "a tench"): the object on every scene, and
    with every overlay: "a tench on water", "a tench on water with a watermark"."""
    scenes = [a for a in attributes if a.kind == "scene"]
    overlays = [a for a in attributes if a.kind == "overlay"]
    out = []
    for index, thing in objects.items():
        for scene in scenes:
            for overlay in [None, *overlays]:
                text = f"{thing} on {scene.phrase}"
                if overlay is not None:
                    text = f"{text} {overlay.phrase}"
                prompt = _fill(template, text)
                out += _renders("with_object", scene, overlay, index, prompt, seeds, tag)
    return out


def _renders(variant, scene, overlay, class_index, prompt, seeds, tag) -> list[Render]:
    parts = [
        variant,
        scene.name,
        overlay.name if overlay else "",
        "" if class_index is None else str(class_index),
        prompt,
        *([tag] if tag else []),
    ]
    return [
        Render("|".join([*parts, str(seed)]), variant, scene.name,
               overlay.name if overlay else None, class_index, prompt, int(seed))
        for seed in seeds
    ]  # fmt: skip


def _fill(template: str, text: str) -> str:
    if template.count("{}") != 1:
        raise ValueError(f"shortcut template {template!r} must contain '{{}}' exactly once")
    return template.replace("{}", text)
