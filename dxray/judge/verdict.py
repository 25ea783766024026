"""Core or spurious: a verdict from how present the class's object is in its explanation images.

An explanation image is rendered to maximise one class of the classifier. If the segmenter finds
the class's object in it ("a tench"), the classifier was driven by the object: a *core* feature.
If the image scores high for the class while the object is absent, the classifier was driven by
context alone (water, a watermark): a *spurious* feature.

Presence is the segmenter's score in [0, 1] (a robust maximum of CLIPSeg's per-pixel
probabilities, see `dxray.models.segmenter.presence_from_masks`):

- presence >= `Thresholds.core` (0.5: the object is more likely there than not) -> "core";
- presence <= `Thresholds.spurious` (0.2: the segmenter finds next to nothing) -> "spurious";
- in between -> "uncertain".

Why "uncertain" exists: mid-range scores come from part of an object, an object-like texture,
or a segmenter that does not know the class well. Forcing those into core/spurious would turn
the segmenter's doubt into confident-looking bias statistics and blur the agreement with ground
truth; kept apart, they are counted separately and flagged for a human to look at.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor

Verdict = Literal["core", "spurious", "uncertain"]


@dataclass(frozen=True)
class Thresholds:
    """Presence cut-offs; 0 <= spurious < core <= 1."""

    core: float = 0.5  # at or above: the object is there
    spurious: float = 0.2  # at or below: the object is not there

    def __post_init__(self):
        if not 0.0 <= self.spurious < self.core <= 1.0:
            raise ValueError(
                "thresholds need 0 <= spurious < core <= 1; got "
                f"spurious={self.spurious}, core={self.core}"
            )


def verdict(presence: float, thresholds: Thresholds = Thresholds()) -> Verdict:
    """The verdict for one explanation image from its object presence score."""
    presence = float(presence)
    if math.isnan(presence):
        raise ValueError("presence is NaN: the image or its segmentation failed upstream")
    if presence >= thresholds.core:
        return "core"
    if presence <= thresholds.spurious:
        return "spurious"
    return "uncertain"


def verdicts(
    presence: Tensor | Sequence[float], thresholds: Thresholds = Thresholds()
) -> list[Verdict]:
    """`verdict` of each score in a 1-D tensor or a list."""
    if isinstance(presence, Tensor):
        if presence.ndim != 1:
            raise ValueError(
                f"presence must be 1-D, one score per image; got {tuple(presence.shape)}"
            )
        presence = presence.detach().cpu().tolist()
    return [verdict(p, thresholds) for p in presence]


# A WordNet synset id such as "n01440764", as ImageNet class lists prefix their names with.
_WNID = re.compile(r"^n\d{8}(?=[\s:_,-]|$)[\s:_-]*")


def object_query(class_name: str, template: str = "a {}") -> str:
    """The segmenter's text query for a class's object, e.g. "n01440764 tench, Tinca tinca" -> "a tench".

    The readable first name is taken as: drop a leading WordNet id ("n01440764"), keep the text
    before the first comma (ImageNet lists synonyms after it: "tench, Tinca tinca"), turn
    underscores into spaces ("great_white_shark"), and squeeze whitespace. `template` must hold
    "{}", which is replaced by that name.
    """
    if "{}" not in template:
        raise ValueError(
            f"template must contain '{{}}' where the class name goes; got {template!r}"
        )
    name = _WNID.sub("", class_name.strip())
    name = name.split(",")[0].replace("_", " ")
    name = " ".join(name.split())
    if not name:
        raise ValueError(f"class name {class_name!r} has no readable name to query")
    return template.replace("{}", name)


def aggregate(verdicts: Sequence[Verdict]) -> Verdict:
    """One verdict for a target from those of its seeds: the most common one; a tie -> "uncertain".

    E.g. core, core, spurious -> core; core, spurious -> uncertain; core, spurious, uncertain ->
    uncertain. Seeds that disagree evenly say the evidence is mixed, which is what "uncertain"
    means.
    """
    if not verdicts:
        raise ValueError("aggregate needs at least one verdict")
    unknown = set(verdicts) - {"core", "spurious", "uncertain"}
    if unknown:
        raise ValueError(f"unknown verdict(s) {sorted(unknown)}")
    counts = Counter(verdicts).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return "uncertain"
    return counts[0][0]
