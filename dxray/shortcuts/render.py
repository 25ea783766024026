"""Render the vocabulary's prompts and decide which images count.

    images = render_text(generator, prompts, seeds, SamplerConfig(steps=4))
    checked = check_images(classifier, segmenter, images, wanted, objects="all", ...)

An object-free image counts only if the segmenter finds no object of any audited class in it
(otherwise a lift could come from the object the generator slipped in) and does find the
attribute the prompt asked for (otherwise the lift would be the attribute's prompt, not the
attribute). A with-object image counts if its own class's object and the attribute are there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dxray.explain.prompt import encode_text
from dxray.explain.sampler import SamplerConfig, decode, draw_noise, sample

PRESENT = 0.5  # presence at or above: there (the core verdict's and the probe rates' cut)


@torch.no_grad()
def render_text(
    generator,
    prompts: Sequence[str],
    seeds: Sequence[int],
    config: SamplerConfig = SamplerConfig(),
    *,
    tiny: bool = False,
    batch_size: int = 64,
) -> Tensor:
    """Images [N, 3, H, W] in [0, 1] (float32, CPU), one per prompt with its own noise seed,
    through the engine's sampler and (by default) the full VAE. No optimisation."""
    if len(prompts) != len(seeds):
        raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds; give one each")
    te, tok = generator.text_encoder, generator.tokenizer
    uncond = encode_text(te, tok, [""])
    images = []
    for i in range(0, len(prompts), batch_size):
        cond = encode_text(te, tok, list(prompts[i : i + batch_size]))
        images.append(render_conditions(generator, cond, seeds[i : i + batch_size], config,
                                        uncond, tiny=tiny))  # fmt: skip
    return torch.cat(images)


def render_conditions(
    generator, cond: Tensor, seeds: Sequence[int], config: SamplerConfig, uncond: Tensor,
    *, tiny: bool = False,
) -> Tensor:  # fmt: skip
    """Images [N, 3, H, W] in [0, 1] (float32, CPU) of text-encoder conditions `cond` [N, L, d],
    row i with noise seed `seeds[i]`: the engine's sampler, then the decoder. No optimisation;
    text prompts (`render_text`) and soft prompts (`discover.render_pool`) both end here."""
    noise = draw_noise(generator.latent_shape, config.steps, [int(s) for s in seeds])
    noise = noise.to(device=cond.device, dtype=cond.dtype)
    return (
        decode(generator, sample(generator, cond, noise, config, uncond), tiny=tiny).float().cpu()
    )


@dataclass
class CheckedImages:
    """What the classifier and the segmenter say of each image."""

    logits: Tensor  # [N, C] the classifier's logits
    object_presence: Tensor  # [N] object_free: the highest presence of any checked object;
    #                          with_object: the presence of the image's own object
    object_query: list[str]  # [N] which object that was
    attribute_presence: Tensor  # [N] presence of the attribute the image must show
    # [N] "kept", or why not: "object" (an object where none may be), "no object" (with_object:
    # its own object is missing), "no attribute"
    status: list[str]
    # layer -> [N, channels]: the spatial mean of every channel of the layers asked for
    units: dict[str, Tensor] = field(default_factory=dict)


@torch.no_grad()
def check_images(
    classifier,
    segmenter,
    images: Tensor,
    attributes: Sequence[str],
    object_queries: Sequence[str],
    *,
    own_object: Sequence[int | None] | None = None,
    top_k: int | None = None,
    present: float = PRESENT,
    layers: Sequence[str] = (),
) -> CheckedImages:
    """Classify and segment `images`; `attributes[i]` is what image i must show.

    Object-free images (own_object[i] None) must show none of the classes' objects
    (`object_queries[c]` is class c's): all of them, or with `top_k` only the classifier's
    k most likely classes on that image (a 1,000-class model: 5 queries an image, not 1,000).
    With-object images (own_object[i] = class c) must show class c's object. Each image is
    encoded once by the segmenter; every query costs one light decoder pass. `layers`: hidden
    layers whose channel means come back too (the unit-shortcut test reads them)."""
    n = images.shape[0]
    own = list(own_object) if own_object is not None else [None] * n
    if len(attributes) != n or len(own) != n:
        raise ValueError("attributes and own_object need one entry per image")
    x = images.to(classifier.device, classifier.dtype)
    out = classifier.outputs(x, list(layers))
    logits = out.logits.float().cpu()
    units = {layer: out.units[layer].float().cpu() for layer in layers}
    if len(object_queries) != logits.shape[1]:
        raise ValueError(
            f"{len(object_queries)} object queries for a classifier with {logits.shape[1]} classes"
        )
    # Which classes each image is checked for
    if top_k is None:
        wanted = [list(range(logits.shape[1]))] * n
    else:
        k = min(top_k, logits.shape[1])
        wanted = logits.topk(k, dim=1).indices.tolist()
    wanted = [w if o is None else [o] for w, o in zip(wanted, own, strict=True)]
    classes = sorted({c for w in wanted for c in w})
    queries = [object_queries[c] for c in classes] + list(dict.fromkeys(attributes))
    scores = segmenter.probe(images.to(segmenter.device, segmenter.dtype), queries).float().cpu()
    column = {q: j for j, q in enumerate(queries)}
    at = {c: j for j, c in enumerate(classes)}
    best, best_query, found, status = [], [], [], []
    for i in range(n):
        per_class = [(float(scores[i, at[c]]), object_queries[c]) for c in wanted[i]]
        presence, query = max(per_class)
        attribute = float(scores[i, column[attributes[i]]])
        best.append(presence)
        best_query.append(query)
        found.append(attribute)
        if own[i] is None and presence >= present:
            status.append("object")
        elif own[i] is not None and presence < present:
            status.append("no object")  # the generator did not draw the class's object
        elif attribute < present:
            status.append("no attribute")
        else:
            status.append("kept")
    return CheckedImages(logits, torch.tensor(best), best_query, torch.tensor(found), status, units)
