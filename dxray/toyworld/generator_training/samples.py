"""Looking at a generator exactly as the engine sees it: captions through the engine's own
sampler and decoder (`sample_captions`), the caption grid of a quick look (`sample_grid`), and
a PNG of images (`save_image_grid`, `write_sample_grid`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from dxray.toyworld.world import World


@torch.no_grad()
def sample_captions(
    generator,
    captions: Sequence[str],
    seeds: Sequence[int],
    *,
    steps: int = 4,
    guidance_scale: float = 1.0,
    tiny: bool = False,
    batch_size: int = 64,
) -> Tensor:
    """Images [N, 3, H, W] in [0, 1] (float32, CPU) for captions, one noise seed per caption,
    through `dxray.explain.sampler` (the engine's own sampler and decoder)."""
    from dxray.explain.sampler import SamplerConfig
    from dxray.shortcuts.render import render_text

    config = SamplerConfig(kind="auto", steps=steps, guidance_scale=guidance_scale)
    return render_text(generator, captions, seeds, config, tiny=tiny, batch_size=batch_size)


def sample_grid(world: World, seeds: int = 2) -> list[str]:
    """Captions for a look at the generator: every shape on every context (colours cycling,
    one row per shape), then each context alone."""
    colours = list(world.colours)
    shapes = [c.name for c in world.classes]
    contexts = [c.name for c in world.contexts]
    from dxray.toyworld.scenes import _article

    rows = []
    for i, shape in enumerate(shapes):
        for j, ctx in enumerate(contexts):
            colour = colours[(i + j) % len(colours)]
            rows.append(f"{_article(colour)} {colour} {shape} on {ctx}")
    rows += contexts
    return [c for c in rows for _ in range(seeds)]


def save_image_grid(images: Tensor, path: Path, columns: int, scale: int = 3) -> None:
    """A PNG of images [N, 3, H, W] in [0, 1], `columns` per row, upscaled (nearest)."""
    from PIL import Image

    n, _, h, w = images.shape
    rows = math.ceil(n / columns)
    grid = torch.ones(3, rows * (h + 1), columns * (w + 1))
    for k in range(n):
        r, c = divmod(k, columns)
        grid[:, r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = images[k]
    array = (grid.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(array)
    img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST).save(path)


def write_sample_grid(
    generator_dir: str | os.PathLike,
    world: World,
    path: str | os.PathLike,
    *,
    steps: int = 4,
    guidance_scale: float = 2.0,
    device: str = "cpu",
) -> Path:
    """Sample every `sample_grid` caption (two seeds each) from the generator saved in
    `generator_dir` and write them to the PNG `path`: rows = shapes, then contexts alone;
    columns = contexts x 2 seeds."""
    from dxray.models.generator import load_generator

    generator = load_generator(generator_dir, device=device)
    captions = sample_grid(world)
    seeds = list(range(len(captions)))
    images = sample_captions(generator, captions, seeds, steps=steps, guidance_scale=guidance_scale)
    path = Path(path)
    save_image_grid(images, path, columns=2 * len(world.contexts))
    return path
