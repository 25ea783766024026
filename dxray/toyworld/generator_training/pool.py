"""The generator's training scenes: a pool of rendered scenes held on the training device.

Scenes come from the world's *unbiased* distribution plus context-only scenes, never the
classifier's biased one: the generator must be able to draw every (colour, shape, context, cue)
combination. `ScenePool` keeps uint8 images and caption token ids (and, once the VAE is
trained, their latents) on the device; with worker processes (CUDA machines) fresh scenes
replace the oldest ones while training runs. Chunk k of the scene stream has its own seed
(`chunk_seed`), so a resumed run renders new scenes.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
import torch
from torch import Tensor

from dxray.toyworld.data import sample_specs
from dxray.toyworld.scenes import render
from dxray.toyworld.world import World

_WORKER_WORLD: World | None = None


def _init_worker(world: World) -> None:
    global _WORKER_WORLD
    _WORKER_WORLD = world
    torch.set_num_threads(1)


def render_chunk(
    world: World, n: int, seed: int, context_only_fraction: float
) -> tuple[np.ndarray, list[str]]:
    """n scenes (unbiased + context-only) as uint8 [n, 3, H, W] and their captions."""
    n_ctx = int(round(n * context_only_fraction))
    specs = sample_specs(world, n - n_ctx, seed=seed, mode="unbiased")
    specs += sample_specs(world, n_ctx, seed=seed + 1, mode="context_only")
    scenes = [render(world, s) for s in specs]
    images = np.stack([np.rint(s.image * 255.0) for s in scenes]).astype(np.uint8)
    return images, [s.caption for s in scenes]


def _render_in_worker(n: int, seed: int, context_only_fraction: float):
    return render_chunk(_WORKER_WORLD, n, seed, context_only_fraction)


def chunk_seed(seed: int, chunk: int) -> int:
    """Chunk k of the scene stream has its own seed, so a resumed run renders new scenes."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0] >> 1)


class ScenePool:
    """Scenes (uint8 images + caption token ids, optionally their latents) on the device.

    With `workers` > 0, fresh chunks are rendered in background processes and replace the
    oldest ones (`poll()` swaps in what is ready, without waiting); with 0 the pool is static.
    """

    def __init__(
        self,
        world: World,
        tokenizer,
        *,
        size: int,
        seed: int,
        context_only_fraction: float,
        device: torch.device,
        workers: int = 0,
        chunk: int = 2048,
        first_chunk: int = 0,
        in_flight: int = 2,
    ):
        self.world, self.tokenizer, self.seed = world, tokenizer, seed
        self.fraction = context_only_fraction
        self.device, self.chunk, self.in_flight = device, max(1, min(chunk, size)), in_flight
        self.size = size
        self.next_chunk = first_chunk
        side = world.image_size
        self.images = torch.empty((size, 3, side, side), dtype=torch.uint8, device=device)
        self.ids = torch.empty((size, tokenizer.model_max_length), dtype=torch.long, device=device)
        self.latents: Tensor | None = None
        self._encode: Callable[[Tensor], Tensor] | None = None
        self._ids_cache: dict[str, list[int]] = {}
        self._pos = 0
        self._pending: deque[Future] = deque()
        self._executor = None
        if workers > 0:
            import multiprocessing

            # spawn, not fork: the parent may already hold a CUDA context.
            self._executor = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(world,),
            )
            fill = [self._submit() for _ in range(math.ceil(size / self.chunk))]
            for fut in fill:
                self._put(*fut.result())
            for _ in range(in_flight):
                self._pending.append(self._submit())
        else:
            for _ in range(math.ceil(size / self.chunk)):
                k = self._take_chunk()
                self._put(*render_chunk(world, self.chunk, chunk_seed(seed, k), self.fraction))

    def _take_chunk(self) -> int:
        self.next_chunk += 1
        return self.next_chunk - 1

    def _submit(self) -> Future:
        k = self._take_chunk()
        return self._executor.submit(
            _render_in_worker, self.chunk, chunk_seed(self.seed, k), self.fraction
        )

    def token_ids(self, captions: Sequence[str]) -> list[list[int]]:
        missing = [c for c in dict.fromkeys(captions) if c not in self._ids_cache]
        if missing:
            ids = self.tokenizer(
                missing,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
            )["input_ids"]
            self._ids_cache.update(zip(missing, ids, strict=True))
        return [self._ids_cache[c] for c in captions]

    def _put(self, images: np.ndarray, captions: list[str]) -> None:
        """Write a chunk at the ring position (wrapping), replacing the oldest scenes."""
        n = min(len(images), self.size)
        imgs = torch.from_numpy(images[:n])
        ids = torch.tensor(self.token_ids(captions[:n]), dtype=torch.long)
        if self.device.type == "cuda":
            imgs, ids = imgs.pin_memory(), ids.pin_memory()
        imgs = imgs.to(self.device, non_blocking=True)
        ids = ids.to(self.device, non_blocking=True)
        end = self._pos + n
        first = min(end, self.size) - self._pos
        for dst, src in ((self.images, imgs), (self.ids, ids)):
            dst[self._pos : self._pos + first] = src[:first]
            dst[: n - first] = src[first:]
        if self._encode is not None:
            z = self._encode(imgs)
            self.latents[self._pos : self._pos + first] = z[:first]
            self.latents[: n - first] = z[first:]
        self._pos = end % self.size

    def attach_encoder(self, encode: Callable[[Tensor], Tensor], batch: int = 512) -> None:
        """Keep `latents` = encode(images) for every scene, now and for each fresh chunk."""
        self._encode = encode
        parts = [encode(self.images[i : i + batch]) for i in range(0, self.size, batch)]
        self.latents = torch.cat(parts)

    def poll(self) -> int:
        """Swap in at most one finished chunk and queue another; returns scenes swapped in."""
        if not self._pending or not self._pending[0].done():
            return 0
        images, captions = self._pending.popleft().result()
        self._put(images, captions)
        self._pending.append(self._submit())
        return len(images)

    def batch(self, n: int, gen: torch.Generator | None) -> Tensor:
        """Random pool indices [n] (on the device: no host sync)."""
        return torch.randint(0, self.size, (n,), device=self.device, generator=gen)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def to_unit_range(images_uint8: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1] (diffusers' image convention)."""
    return images_uint8.float() / 127.5 - 1.0
