"""Which hidden units to audit per class: head weight x mean activation (Salient ImageNet's
ranking), measured on reference images."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def head_weight(classifier, layer: str | None) -> tuple[str, Tensor]:
    """(the layer whose channels the head reads, the head's weight [classes, channels]).

    The head is the classifier's last `nn.Linear`. `layer` None: the module whose output is
    the head's very input tensor (found with one traced forward); give `layer` when the model
    transforms that tensor in its forward code, between modules."""
    linears = [(n, m) for n, m in classifier.model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the classifier has no nn.Linear head: name the units' layer explicitly")
    head_name, head = linears[-1]
    if layer is None:
        layer = _feeding_module(classifier, head_name, head)
    weight = head.weight.detach().float()
    channels = classifier.unit_channels(layer)
    if weight.shape[1] != channels:
        raise ValueError(
            f"layer {layer!r} has {channels} channels but the head {head_name!r} reads "
            f"{weight.shape[1]}: set units.layer to the layer the head reads"
        )
    return layer, weight


def _feeding_module(classifier, head_name: str, head: nn.Module) -> str:
    # Keep the tensors themselves (not ids: a freed tensor's id can be reused).
    outputs: list[tuple[str, object]] = []
    fed: list[object] = []
    hooks = [head.register_forward_pre_hook(lambda _m, args: fed.append(args[0]))]
    for name, module in classifier.model.named_modules():
        if name and name != head_name:
            hooks.append(
                module.register_forward_hook(
                    lambda _m, _i, out, name=name: outputs.append((name, out))
                )
            )
    try:
        h, w = classifier.preprocessing.input_size
        with torch.no_grad():
            classifier(torch.zeros(1, 3, h, w, device=classifier.device, dtype=classifier.dtype))
    finally:
        for hook in hooks:
            hook.remove()
    names = [name for name, out in outputs if fed and out is fed[-1]]
    if not names:
        raise ValueError(f"no module's output feeds {head_name!r} directly: set units.layer")
    return min(names, key=lambda n: (n.count("."), len(n)))


@torch.no_grad()
def rank_units(classifier, images: Tensor, k: int, layer: str | None = None) -> dict[int, list]:
    """For every class, its k units with the largest head weight x mean activation over
    `images`: {class_index: [(layer, channel), ...]}, best first."""
    layer, weight = head_weight(classifier, layer)
    activation = classifier.outputs(images, [layer]).units[layer].float().mean(0).cpu()
    contribution = weight.cpu() * activation[None, :]
    top = contribution.topk(min(k, contribution.shape[1]), dim=1).indices
    return {c: [(layer, int(j)) for j in top[c]] for c in range(weight.shape[0])}


@torch.no_grad()
def reference_images(generator, n: int = 32, steps: int = 2, seed: int = 0) -> Tensor:
    """A data-free reference set: the generator's unconditional images (empty prompt), the
    closest thing to "the data" an audit without a dataset has."""
    from dxray.explain.prompt import encode_text
    from dxray.explain.sampler import SamplerConfig, decode, draw_noise, sample

    cond = encode_text(generator.text_encoder, generator.tokenizer, [""] * n)
    noise = draw_noise(generator.latent_shape, steps, [seed + i for i in range(n)])
    latents = sample(generator, cond, noise.to(generator.device), SamplerConfig(steps=steps))
    return decode(generator, latents)
