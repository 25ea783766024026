"""Which hidden units the platform audits per class: `dxray.models.units.rank_units` (head
weight x mean activation on the class's images), with no dataset.

An audit has no images of the classes, so the class's images are the generator's: a few
renders of the class's object query ("a tench"), the closest data-free stand-in.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dxray.models.units import head_weight, rank_units


def head_and_layer(classifier, layer: str | None) -> tuple[str, str]:
    """(the head: the classifier's last `nn.Linear`, the layer whose units it reads).

    `layer` None: the module whose output is the head's very input tensor, found with one
    traced forward; name the layer when the model reshapes that tensor between modules."""
    linears = [n for n, m in classifier.model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the classifier has no nn.Linear head: name the units' layer explicitly")
    head = linears[-1]
    return head, layer if layer is not None else _feeding_module(classifier, head)


def _feeding_module(classifier, head_name: str) -> str:
    head = dict(classifier.model.named_modules())[head_name]
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
def render_prompts(generator, prompts: list[str], per_prompt: int, steps: int = 4) -> Tensor:
    """`per_prompt` renders of each prompt, [len(prompts) * per_prompt, 3, H, W]."""
    from dxray.explain.prompt import encode_text
    from dxray.explain.sampler import SamplerConfig, decode, draw_noise, sample

    texts = [p for p in prompts for _ in range(per_prompt)]
    cond = encode_text(generator.text_encoder, generator.tokenizer, texts)
    noise = draw_noise(generator.latent_shape, steps, list(range(len(texts))))
    latents = sample(generator, cond, noise.to(generator.device), SamplerConfig(steps=steps))
    return decode(generator, latents)


@torch.no_grad()
def rank_class_units(
    classifier, generator, class_prompts: list[str], k: int, layer: str | None = None, n: int = 8
) -> dict[int, list[tuple[str, int]]]:
    """{class index: [(layer, channel), ...] best first} for every class, ranked on `n`
    generator renders of each class's prompt."""
    head, layer = head_and_layer(classifier, layer)
    weight = head_weight(classifier, head, layer)
    activation = torch.stack(
        [
            classifier.outputs(render_prompts(generator, [prompt], n), [layer])
            .units[layer]
            .float()
            .mean(0)
            .cpu()
            for prompt in class_prompts
        ]
    )
    names = [str(i) for i in range(len(class_prompts))]
    ranked = rank_units(weight.cpu(), activation, k, class_names=names, layer=layer)
    return {int(c): [(u.layer, u.channel) for u in units] for c, units in ranked.items()}
