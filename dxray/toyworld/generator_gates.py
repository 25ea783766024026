"""The generator's gates: does it draw the world as the engine will sample it? Judged by the
zoo's oracle (`generator_gates`); `check_zoo` (zoo.py) runs them with the zoo's other gates."""

from __future__ import annotations

import torch

from dxray.toyworld.data import class_names, colour_names, context_names, sample_specs
from dxray.toyworld.gates import GateRow, check, gate_rows
from dxray.toyworld.scenes import SceneSpec, caption, render_batch
from dxray.toyworld.world import World


def _check(group: str, name: str, value: float, op: str, threshold: float) -> GateRow:
    """A `dxray.toyworld.gates.check` row of `group` ("info": shown, not a gate)."""
    return gate_rows(group, [check(name, value, op, threshold)])[0]


@torch.no_grad()
def generator_gates(
    world: World,
    generator,
    oracle,
    *,
    steps: int = 4,
    guidance_scale: float = 1.0,
    seeds: int = 1,
    segmenter=None,
) -> list[GateRow]:
    """The generator, judged by the oracle at the engine's sampler setting.

    - object / context recognised in samples of every "a <colour> <shape> on <context>";
    - context-only captions ("water") give no object;
    - the ceiling: the oracle on VAE reconstructions of real scenes (shapes lost in the
      latents cannot come back in samples);
    - with a `segmenter`: its object presence on the same generated images (the ones it
      judges in an audit), against what the oracle sees in them (balanced accuracy >= 0.9).
    """
    from dxray.toyworld.generator_training.samples import sample_captions
    from dxray.toyworld.nets import oracle_predict

    classes, contexts = class_names(world), context_names(world)
    specs = [
        SceneSpec(shape=s, colour=c, size=0.6, position=(0.5, 0.5), rotation=0.0, context=x,
                  cue=None, seed=0)
        for s in classes for c in colour_names(world) for x in contexts
    ]  # fmt: skip
    captions = [caption(s) for s in specs] * seeds
    seed_list = list(range(len(captions)))
    with_object = sample_captions(
        generator, captions, seed_list, steps=steps, guidance_scale=guidance_scale
    )
    pred = oracle_predict(oracle, with_object)
    want_object = torch.tensor([classes.index(s.shape) for s in specs] * seeds)
    want_context = torch.tensor([contexts.index(s.context) for s in specs] * seeds)
    rows = [
        _check("generator", "object_recognised", (pred["object"] == want_object).float().mean(),
               ">=", 0.8),
        _check("generator", "context_recognised",
               (pred["context"] == want_context).float().mean(), ">=", 0.95),
    ]  # fmt: skip
    empty = contexts * max(4, seeds)
    context_only = sample_captions(
        generator, empty, list(range(len(empty))), steps=steps, guidance_scale=guidance_scale
    )
    seen_empty = oracle_predict(oracle, context_only)["object"]
    none = (seen_empty == -1).float().mean()
    rows.append(_check("generator", "context_only_no_object", none, ">=", 0.9))
    if segmenter is not None:
        from dxray.judge.verdict import object_query
        from dxray.toyworld.segmenter_training.gates import presence_accuracy

        both = torch.cat([with_object, context_only])
        seen = torch.cat([pred["object"], seen_empty])
        present = seen[:, None] == torch.arange(len(classes))[None, :]
        device_images = both.to(segmenter.device, segmenter.dtype)
        score = presence_accuracy(
            segmenter, device_images, [object_query(c) for c in classes], present
        )
        rows.append(
            _check("segmenter", "generated_object_presence_accuracy", score.balanced, ">=", 0.9)
        )
    # Ceiling: real scenes through the VAE and back.
    real = sample_specs(world, 256, seed=123, mode="unbiased")
    scenes, _, _ = render_batch(world, real)
    vae = generator.vae
    latents = vae.encode(scenes.to(generator.device, generator.dtype) * 2 - 1).latent_dist.mean
    recon = (vae.decode(latents).sample / 2 + 0.5).clamp(0, 1).float().cpu()
    got = oracle_predict(oracle, recon)
    truth_object = torch.tensor([classes.index(s.shape) for s in real])
    ceiling = (got["object"] == truth_object).float().mean()
    rows.append(_check("generator", "vae_reconstruction_object (ceiling)", ceiling, "info", 0.0))
    return rows
