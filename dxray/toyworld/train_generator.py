"""Train the toy world's generator: VAE, tiny decoder, then text encoder + UNet. Resumable.

    python -m dxray.toyworld.train_generator --out zoo/toy-generator --device cuda --seconds 360 \
        --cuda-graphs
    python -m dxray.toyworld.train_generator --out /tmp/toy --preset tiny --max-steps 20  # CPU

The result, `OUT/generator/`, is a diffusers `save_pretrained` layout that
`dxray.models.generator.load_generator` reads like any SD-family checkpoint. Training runs in
three stages, one after the other; each later stage depends on the earlier ones being frozen:

A. VAE (AutoencoderKL, one x2 downsampling: 32 px scenes -> 16x16x4 latents, so that shapes
   survive; 8x8 latents capped shape recognition at 80%). L1 + L2 reconstruction + a tiny KL.
   Its end sets the latent scaling factor (1 / std of the latents), as SD does.
B. Tiny decoder (AutoencoderTiny, TAESD-like): distilled from the VAE decoder on the scaled
   latents, for cheap decoding inside the explain engine's optimisation loop.
C. Text encoder (CLIPTextModel) + UNet (cross-attention) on VAE latents of scenes and their
   captions: v-prediction, cosine schedule (zero SNR at t=999, where few-step trailing DDIM
   starts), min-SNR weighting, caption dropout (for classifier-free guidance), EMA weights.

Scenes come from the world's *unbiased* distribution plus context-only scenes, never the
classifier's biased one: the generator must be able to draw every (colour, shape, context, cue)
combination. They are rendered into a pool held on the device; on CUDA, background processes
render fresh scenes that replace the pool's oldest ones while training runs.

Training stops at `seconds` (wall clock, split over the stages still to run) or `max_steps`
(UNet steps), whichever comes first, and checkpoints to `OUT/checkpoint.pt`; a later call with
`resume=True` continues where it stopped (a finished VAE or tiny-decoder stage stays frozen;
the UNet stage can always be continued). Without `checkpoint.pt` (~100 MB with optimizer
state and EMA), `OUT/generator/` alone is enough to continue: its EMA weights become the live
weights and the optimizer starts afresh. `--seconds 0` only re-exports.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dxray.toyworld.data import sample_specs
from dxray.toyworld.scenes import caption_words, render
from dxray.toyworld.world import World, load_world

STAGES = ("vae", "tiny_decoder", "unet")
CHECKPOINT = "checkpoint.pt"
TOKENIZER_DIR = "tokenizer"
GENERATOR_DIR = "generator"
CHECKPOINT_VERSION = 1
GRAPH_WARMUP_STEPS = 3  # eager steps before a CUDA graph capture


@dataclass
class ToyGeneratorConfig:
    """Sizes of the toy generator and the recipe that trains it."""

    # --- VAE: len(vae_channels) - 1 downsamplings; two levels = x2: 32 px -> 16x16 latents.
    latent_channels: int = 4
    vae_channels: tuple[int, ...] = (32, 64)
    vae_layers_per_block: int = 1
    vae_norm_groups: int = 16
    # --- Tiny decoder: as many x2 upsamplings as the VAE. (32, 32) decodes in ~8 ms at batch 1
    # on one CPU thread, about half the VAE's 14 ms: it must be the cheap one.
    tiny_decoder_channels: tuple[int, ...] = (32, 32)
    # --- UNet: cross-attention at 16x16 and 8x8, plain ResNet blocks at 4x4.
    unet_channels: tuple[int, ...] = (64, 128, 128)
    unet_layers_per_block: int = 1
    unet_attention_heads: int = 4  # diffusers' `attention_head_dim` (it means heads here)
    unet_norm_groups: int = 32
    # --- Text encoder (CLIPTextModel); its width is the UNet's cross-attention width.
    text_hidden: int = 64
    text_layers: int = 3
    text_heads: int = 2
    text_intermediate: int = 256
    max_length: int = 16  # caption tokens incl. BOS/EOS; room for soft-prompt templates
    # --- Diffusion. Cosine ("squaredcos_cap_v2") has ~zero SNR at t=999, where trailing DDIM
    # starts from pure noise; v-prediction stays well-posed there (epsilon does not).
    prediction_type: Literal["v_prediction", "epsilon"] = "v_prediction"
    beta_schedule: Literal["squaredcos_cap_v2", "scaled_linear"] = "squaredcos_cap_v2"
    num_train_timesteps: int = 1000
    # --- Recipe
    vae_steps: int = 4000  # caps on stages A and B; time left over flows to the UNet
    tiny_decoder_steps: int = 2000
    stage_time_split: tuple[float, float, float] = (60.0, 30.0, 270.0)  # A : B : C
    vae_lr: float = 1e-3
    tiny_decoder_lr: float = 1e-3
    unet_lr: float = 4e-4  # UNet and text encoder
    warmup_steps: int = 100
    grad_clip: float = 1.0
    kl_weight: float = 1e-6  # SD's: keeps the latents bounded without blurring them
    latent_jitter: float = 0.1  # noise on the tiny decoder's inputs: UNet outputs are not exact
    caption_dropout: float = 0.15  # captions replaced by "": learns the unconditional model
    context_only_fraction: float = 0.15  # scenes without object, captioned with the context
    min_snr_gamma: float = 5.0
    # Share of UNet samples at the timesteps that 1-4 step trailing DDIM visits: the engine
    # only ever queries those, so they get extra training on top of uniform timesteps.
    few_step_fraction: float = 0.25
    ema_decay: float = 0.999

    @classmethod
    def tiny(cls) -> ToyGeneratorConfig:
        """A generator that trains in seconds on a CPU: for tests (plumbing, not quality)."""
        return cls(
            vae_channels=(8, 16),
            vae_norm_groups=4,
            tiny_decoder_channels=(8, 8),
            unet_channels=(16, 32),
            unet_attention_heads=2,
            unet_norm_groups=8,
            text_hidden=16,
            text_layers=1,
            text_heads=2,
            text_intermediate=32,
            vae_steps=3,
            tiny_decoder_steps=3,
            warmup_steps=2,
        )

    @classmethod
    def from_dict(cls, data: dict) -> ToyGeneratorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ToyGeneratorConfig fields {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.vae_channels) - 1)

    def check(self, world: World) -> None:
        """Raise ValueError if these sizes cannot make a generator for `world`."""
        if world.image_size % self.downsampling:
            raise ValueError(
                f"world image_size {world.image_size} is not divisible by the VAE's downsampling "
                f"x{self.downsampling} (vae_channels={self.vae_channels})"
            )
        if len(self.tiny_decoder_channels) != len(self.vae_channels):
            raise ValueError(
                f"tiny_decoder_channels {self.tiny_decoder_channels} must have as many levels as "
                f"vae_channels {self.vae_channels} (same upsampling)"
            )
        if len(self.stage_time_split) != len(STAGES) or min(self.stage_time_split) < 0:
            raise ValueError(
                f"stage_time_split must be {len(STAGES)} non-negative weights, got "
                f"{self.stage_time_split}"
            )

    def arch(self, world: World, words: Sequence[str]):
        """The `dxray.models.build.GeneratorArch` of this config for `world`."""
        from dxray.models.build import GeneratorArch

        return GeneratorArch(
            latent_size=world.image_size // self.downsampling,
            latent_channels=self.latent_channels,
            unet_channels=self.unet_channels,
            unet_layers_per_block=self.unet_layers_per_block,
            unet_attention_head_dim=self.unet_attention_heads,
            unet_norm_groups=self.unet_norm_groups,
            time_cond_proj_dim=None,  # plain SD UNet: no LCM guidance embedding
            text_hidden=self.text_hidden,
            text_layers=self.text_layers,
            text_heads=self.text_heads,
            text_intermediate=self.text_intermediate,
            max_length=self.max_length,
            vae_channels=self.vae_channels,
            vae_layers_per_block=self.vae_layers_per_block,
            vae_norm_groups=self.vae_norm_groups,
            tiny_decoder_channels=self.tiny_decoder_channels,
            scheduler="ddim",
            prediction_type=self.prediction_type,
            words=list(words),
        )

    def scheduler(self):
        """The DDIM scheduler saved with the generator; the engine's sampler reads its
        `alphas_cumprod` and `prediction_type` (its class selects DDIM sampling)."""
        from diffusers import DDIMScheduler

        extra = {}
        if self.beta_schedule == "scaled_linear":
            extra = dict(beta_start=0.00085, beta_end=0.012)
        return DDIMScheduler(
            num_train_timesteps=self.num_train_timesteps,
            beta_schedule=self.beta_schedule,
            prediction_type=self.prediction_type,
            timestep_spacing="trailing",
            clip_sample=False,  # latents are ~unit variance, not in [-1, 1]
            set_alpha_to_one=True,
            **extra,
        )


@dataclass
class TrainReport:
    """What a `train_generator` call did; `steps`/`seconds` are totals over all sessions."""

    out_dir: Path
    generator_dir: Path
    device: str
    stage: str  # the stage training would continue with
    steps: dict[str, int]
    seconds: dict[str, float]
    losses: dict[str, list[tuple[int, float]]]  # (step, mean loss since the previous entry)
    scaling_factor: float | None
    resumed: bool
    wall_seconds: float  # this call
    steps_per_second: dict[str, float] = field(default_factory=dict)  # this call


# ---------------------------------------------------------------------------------------------
# Scenes: rendered on the CPU (in worker processes on CUDA machines), held on the device.
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Losses (one per stage): plain functions of the models and a batch, so tests can call them.
# ---------------------------------------------------------------------------------------------


def vae_loss(vae, images: Tensor, noise: Tensor, kl_weight: float) -> Tensor:
    """L1 + L2 reconstruction of images [-1, 1] through a sampled latent, + KL to N(0, 1)."""
    posterior = vae.encode(images).latent_dist
    mean, logvar = posterior.mean.float(), posterior.logvar.float()
    z = mean + torch.exp(0.5 * logvar) * noise
    recon = vae.decode(z).sample.float()
    kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()
    return F.l1_loss(recon, images) + F.mse_loss(recon, images) + kl_weight * kl


def tiny_decoder_loss(tiny, vae, latents: Tensor, scaling_factor: float) -> Tensor:
    """Distillation: the tiny decoder on scaled latents matches the VAE decoder's image."""
    with torch.no_grad():
        target = vae.decode(latents / scaling_factor).sample.float()
    pred = tiny.decode(latents).sample.float()
    return F.l1_loss(pred, target) + F.mse_loss(pred, target)


def min_snr_weights(alphas_cumprod: Tensor, gamma: float, prediction_type: str) -> Tensor:
    """Per-timestep loss weights [T] (Hang et al. 2023, min-SNR-gamma).

    For v-prediction the weight is min(SNR + 1, gamma) / (SNR + 1): SNR + 1 in place of SNR so
    the pure-noise end (SNR ~ 0 at t=999, where few-step sampling starts) keeps full weight
    instead of none; high-SNR (easy, noisy-gradient) timesteps are down-weighted as usual.
    """
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    if prediction_type == "v_prediction":
        return (snr + 1.0).clamp(max=gamma) / (snr + 1.0)
    return snr.clamp(max=gamma) / snr.clamp(min=1e-8)


def diffusion_loss(
    unet,
    text_encoder,
    latents: Tensor,
    input_ids: Tensor,
    timesteps: Tensor,
    noise: Tensor,
    alphas_cumprod: Tensor,
    weights: Tensor,
    prediction_type: str,
) -> Tensor:
    """Weighted MSE of the UNet's prediction (v or epsilon) on noised latents."""
    a = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    noisy = a.sqrt() * latents + (1.0 - a).sqrt() * noise
    if prediction_type == "v_prediction":
        target = a.sqrt() * noise - (1.0 - a).sqrt() * latents
    else:
        target = noise
    cond = text_encoder(input_ids=input_ids)[0]
    pred = unet(noisy, timesteps, encoder_hidden_states=cond).sample.float()
    per_row = (pred - target).square().mean(dim=(1, 2, 3))
    return (weights[timesteps] * per_row).mean()


def few_step_timesteps(num_train_timesteps: int, max_steps: int = 4) -> list[int]:
    """The timesteps that 1..max_steps-step trailing DDIM (the engine's sampler) visits."""
    from dxray.explain.sampler import timesteps

    visited = {
        t for k in range(1, max_steps + 1) for t in timesteps("ddim", k, num_train_timesteps)
    }
    return sorted(visited)


# ---------------------------------------------------------------------------------------------
# Evaluation: exactly what the engine sees
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Training state and checkpoints
# ---------------------------------------------------------------------------------------------


@dataclass
class _State:
    config: ToyGeneratorConfig
    seed: int
    world: World
    generator: object  # dxray.models.generator.Generator (live, on the device)
    stage: int = 0  # index into STAGES; stages before it are finished and frozen
    steps: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    losses: dict[str, list] = field(default_factory=lambda: {s: [] for s in STAGES})
    scaling_factor: float | None = None
    ema: dict[str, Tensor] | None = None  # "unet.<param>" / "text_encoder.<param>" -> tensor
    optimizer: dict | None = None  # state of the current stage's optimizer
    rng: Tensor | None = None
    next_chunk: int = 0
    sessions: list = field(default_factory=list)


def _trained_modules(state: _State, stage: str) -> dict[str, torch.nn.Module]:
    g = state.generator
    if stage == "vae":
        return {"vae": g.vae}
    if stage == "tiny_decoder":
        return {"tiny_decoder": g.tiny_decoder.decoder}
    return {"unet": g.unet, "text_encoder": g.text_encoder}


def _save_checkpoint(state: _State, out_dir: Path, rng: torch.Generator, optimizer) -> None:
    g = state.generator
    models = {"vae": g.vae, "tiny_decoder": g.tiny_decoder, "unet": g.unet}
    models["text_encoder"] = g.text_encoder
    payload = {
        "version": CHECKPOINT_VERSION,
        "config": state.config.to_dict(),
        "seed": state.seed,
        "world": state.world.to_dict(),
        "stage": state.stage,
        "steps": dict(state.steps),
        "seconds": dict(state.seconds),
        "losses": {k: [list(x) for x in v] for k, v in state.losses.items()},
        "scaling_factor": state.scaling_factor,
        "models": {
            k: {n: t.detach().cpu() for n, t in m.state_dict().items()} for k, m in models.items()
        },
        "ema": None if state.ema is None else {k: v.detach().cpu() for k, v in state.ema.items()},
        "optimizer": None if optimizer is None else _to_cpu(optimizer.state_dict()),
        "rng": rng.get_state(),
        "rng_device": str(rng.device.type),
        "next_chunk": state.next_chunk,
        "sessions": state.sessions,
    }
    tmp = out_dir / (CHECKPOINT + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, out_dir / CHECKPOINT)  # atomic: a kill mid-save keeps the previous one


def _to_cpu(obj):
    if isinstance(obj, Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _load_checkpoint(path: Path) -> dict:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: checkpoint version {payload.get('version')!r}, this code reads "
            f"{CHECKPOINT_VERSION}; train afresh with resume=False (--fresh)"
        )
    return payload


def _new_state(
    world: World,
    config: ToyGeneratorConfig,
    seed: int,
    out_dir: Path,
    device: torch.device,
    tokenizer=None,
) -> _State:
    from dxray.models.build import build_generator, build_tokenizer

    words = caption_words(world)
    if tokenizer is None:
        tokenizer = build_tokenizer(words, max_length=config.max_length)
    elif tokenizer.model_max_length != config.max_length:
        raise ValueError(
            f"the given tokenizer pads to {tokenizer.model_max_length} tokens, the config's "
            f"max_length is {config.max_length}; make them equal"
        )
    # Saved once and reloaded on resume: build_tokenizer's ids are not reproducible run to run.
    tokenizer.save_pretrained(out_dir / TOKENIZER_DIR)
    gen = build_generator(config.arch(world, words), seed=seed, tokenizer=tokenizer)
    gen.scheduler = config.scheduler()
    return _State(config=config, seed=seed, world=world, generator=_to_device(gen, device))


def _to_device(gen, device: torch.device):
    # Not `Generator.to(device=...)`: it passes dtype=None, which diffusers' `to` warns about.
    for module in gen.modules():
        module.to(device)
    return gen


def _check_same_run(
    source: Path, saved: dict, world: World, config: ToyGeneratorConfig, seed: int
) -> None:
    """Refuse to continue a run with another config, world or seed (the message says how)."""
    afresh = "or train afresh with resume=False (--fresh)."
    old = ToyGeneratorConfig.from_dict(saved["config"])
    if old != config:
        diff = {
            f.name: (getattr(old, f.name), getattr(config, f.name))
            for f in fields(config)
            if getattr(old, f.name) != getattr(config, f.name)
        }
        raise ValueError(
            f"{source} was trained with another config (saved, given): {diff}. "
            f"Resume with the same config, {afresh}"
        )
    if saved["world"] != world.to_dict():
        raise ValueError(
            f"{source} was trained on world {saved['world'].get('name')!r} with another config "
            f"than the given world {world.name!r}. Resume with the same world, {afresh}"
        )
    if saved["seed"] != seed:
        raise ValueError(
            f"{source} was trained with seed {saved['seed']}, not {seed}; resume with the same "
            f"seed, {afresh}"
        )


def _rebuild(world: World, config: ToyGeneratorConfig, seed: int, tokenizer, weights: dict):
    """A generator of `config` holding `weights` (component -> state dict), on the CPU."""
    from dxray.models.build import build_generator

    gen = build_generator(config.arch(world, caption_words(world)), seed=seed, tokenizer=tokenizer)
    gen.scheduler = config.scheduler()
    gen.vae.load_state_dict(weights["vae"])
    gen.tiny_decoder.load_state_dict(weights["tiny_decoder"])
    gen.unet.load_state_dict(weights["unet"])
    gen.text_encoder.load_state_dict(weights["text_encoder"])
    return gen


def _restore_state(
    payload: dict, world: World, config: ToyGeneratorConfig, seed: int, out_dir: Path, device
) -> _State:
    """The full state of a checkpoint: weights, EMA, optimizer, RNG; training continues exactly."""
    from transformers import AutoTokenizer

    _check_same_run(out_dir / CHECKPOINT, payload, world, config, seed)
    tokenizer = AutoTokenizer.from_pretrained(out_dir / TOKENIZER_DIR)
    gen = _rebuild(world, config, seed, tokenizer, payload["models"])
    if payload["scaling_factor"] is not None:
        gen.vae.register_to_config(scaling_factor=float(payload["scaling_factor"]))
    _to_device(gen, device)
    ema = payload["ema"]
    return _State(
        config=config,
        seed=seed,
        world=world,
        generator=gen,
        stage=int(payload["stage"]),
        steps={k: int(v) for k, v in payload["steps"].items()},
        seconds={k: float(v) for k, v in payload["seconds"].items()},
        losses={k: [tuple(x) for x in v] for k, v in payload["losses"].items()},
        scaling_factor=payload["scaling_factor"],
        ema=None if ema is None else {k: v.to(device) for k, v in ema.items()},
        optimizer=payload["optimizer"],
        rng=payload["rng"] if payload["rng_device"] == device.type else None,
        next_chunk=int(payload["next_chunk"]),
        sessions=list(payload["sessions"]),
    )


def _state_from_export(
    gen_dir: Path, world: World, config: ToyGeneratorConfig, seed: int, out_dir: Path, device
) -> _State:
    """Warm start from an exported generator alone (no checkpoint.pt: e.g. only the export
    was carried back from a GPU machine). The EMA weights become the live weights; optimizer
    moments start afresh (with warm-up); steps, times and losses carry on."""
    from dxray.models.generator import load_generator

    info = json.loads((gen_dir / "dxray_train.json").read_text())
    saved = {"config": info["arch"], "world": info["world"]["config"], "seed": info["seed"]}
    _check_same_run(gen_dir, saved, world, config, seed)
    loaded = load_generator(gen_dir)
    loaded.tokenizer.save_pretrained(out_dir / TOKENIZER_DIR)
    weights = {
        "vae": loaded.vae.state_dict(),
        "tiny_decoder": loaded.tiny_decoder.state_dict(),
        "unet": loaded.unet.state_dict(),
        "text_encoder": loaded.text_encoder.state_dict(),
    }
    gen = _rebuild(world, config, seed, loaded.tokenizer, weights)
    scale = info["scaling_factor"]
    if scale is not None:
        gen.vae.register_to_config(scaling_factor=float(scale))
    _to_device(gen, device)
    return _State(
        config=config,
        seed=seed,
        world=world,
        generator=gen,
        stage=STAGES.index(info["stage"]),
        steps={k: int(v) for k, v in info["steps"].items()},
        seconds={k: float(v) for k, v in info["seconds"].items()},
        losses={k: [tuple(x) for x in v] for k, v in info["losses"].items()},
        scaling_factor=scale,
        next_chunk=int(info["next_chunk"]),
        sessions=list(info["sessions"]),
    )


def _make_optimizer(
    params: list, lr: float, device: torch.device, saved: dict | None, capturable: bool = False
):
    """AdamW; fused on CUDA. `capturable`: a CUDA-graph-safe optimizer (lr as a tensor)."""
    fused = device.type == "cuda"

    def lr_value():
        return torch.tensor(lr, device=device) if capturable else lr

    opt = torch.optim.AdamW(
        params,
        lr=lr_value(),
        betas=(0.9, 0.99),
        weight_decay=0.0,
        fused=fused,
        capturable=capturable,
    )
    if saved is not None:
        opt.load_state_dict(saved)
        for group in opt.param_groups:  # the checkpoint may come from another device or mode
            group.update(fused=fused, foreach=None, capturable=capturable, lr=lr_value())
    return opt


def _export(state: _State, out_dir: Path, device: torch.device, extra: dict) -> Path:
    """Write OUT/generator/ (EMA weights, float32) and its dxray_train.json."""
    import diffusers
    import transformers

    from dxray.models.generator import Generator

    g = state.generator
    # Training keeps float32 master weights (autocast only lowers the compute), so copies to
    # the CPU are already float32.
    unet, te = copy.deepcopy(g.unet).cpu(), copy.deepcopy(g.text_encoder).cpu()
    if state.ema is not None:
        with torch.no_grad():
            for prefix, module in (("unet.", unet), ("text_encoder.", te)):
                for name, p in module.named_parameters():
                    p.copy_(state.ema[prefix + name].cpu())
    vae, tiny = copy.deepcopy(g.vae).cpu(), copy.deepcopy(g.tiny_decoder).cpu()
    if state.scaling_factor is not None:
        vae.register_to_config(scaling_factor=float(state.scaling_factor))
    export = Generator(g.tokenizer, te, unet, vae, copy.deepcopy(g.scheduler), tiny)
    final = out_dir / GENERATOR_DIR
    tmp = out_dir / (GENERATOR_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    export.save_pretrained(tmp)
    info = {
        "seed": state.seed,
        "world": {"name": state.world.name, "config": state.world.to_dict()},
        "arch": state.config.to_dict(),
        "stage": STAGES[state.stage],
        "steps": dict(state.steps),
        "seconds": {k: round(v, 2) for k, v in state.seconds.items()},
        "wall_seconds": round(sum(s["wall_seconds"] for s in state.sessions), 2),
        "scaling_factor": state.scaling_factor,
        "final_losses": {k: (v[-1][1] if v else None) for k, v in state.losses.items()},
        "losses": {k: [list(x) for x in v] for k, v in state.losses.items()},
        "next_chunk": state.next_chunk,
        "sessions": state.sessions,
        "device": str(device),
        "device_name": _device_name(device),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
        },
        **extra,
    }
    (tmp / "dxray_train.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------


def _default_workers(device: torch.device) -> int:
    if device.type != "cuda":
        return 0  # CPU training: the cores are busy training; a static pool is enough
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(12, (cores or 1) - 2))


def train_generator(
    world: World,
    out_dir: str | os.PathLike,
    *,
    arch: ToyGeneratorConfig | None = None,
    device: str | torch.device = "cpu",
    seconds: float | None = None,
    max_steps: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    resume: bool = True,
    progress: Callable[[str], None] | None = None,
    log_every: int = 100,
    checkpoint_every: int = 500,
    pool_size: int | None = None,
    workers: int | None = None,
    tokenizer=None,
    cuda_graphs: bool = False,
) -> TrainReport:
    """Train (or continue training) the toy generator; write OUT/generator/ and OUT/checkpoint.pt.

    Stops at `seconds` of wall clock (this call; split over the stages still to run in the
    ratio `arch.stage_time_split`, a stage's unused time flowing to the next) or when the UNet
    has `max_steps` steps in total, whichever comes first. The VAE and tiny-decoder stages end
    at their own step caps (`arch.vae_steps`, `arch.tiny_decoder_steps`) or time share.
    `batch_size`, `pool_size`, `workers`: None picks by device (CUDA: 1024, 65536 scenes,
    cores - 2 render processes; CPU: 16, 2048, none). `tokenizer`: None builds one from the
    world's caption words (`dxray.models.build.build_tokenizer`); give one to share its ids.
    `cuda_graphs`: capture each stage's training step as a CUDA graph (CUDA only; falls back
    to eager steps if the capture fails).
    """
    # 1. Check inputs
    t_start = time.monotonic()
    config = arch or ToyGeneratorConfig()
    config.check(world)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    if seconds is None and max_steps is None:
        raise ValueError("give seconds and/or max_steps: training has no other end")
    on_cuda = device.type == "cuda"
    batch_size = batch_size or (1024 if on_cuda else 16)
    pool_size = pool_size or (65536 if on_cuda else 2048)
    workers = _default_workers(device) if workers is None else workers
    say = progress or (lambda line: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16))
        if on_cuda
        else (lambda: nullcontext())
    )

    # 2. Build the models, or restore them from the checkpoint
    ckpt, exported = out_dir / CHECKPOINT, out_dir / GENERATOR_DIR
    resumed = resume and (ckpt.is_file() or (exported / "dxray_train.json").is_file())
    if resume and ckpt.is_file():
        state = _restore_state(_load_checkpoint(ckpt), world, config, seed, out_dir, device)
    elif resumed:
        state = _state_from_export(exported, world, config, seed, out_dir, device)
    else:
        state = _new_state(world, config, seed, out_dir, device, tokenizer)
    if (
        resumed
        and tokenizer is not None
        and tokenizer.get_vocab() != state.generator.tokenizer.get_vocab()
    ):
        raise ValueError(
            f"{out_dir} was trained with another tokenizer than the given one; resume without "
            "passing one (the saved one is used), or train afresh with resume=False (--fresh)."
        )
    if resumed:
        say(
            f"resuming {ckpt if ckpt.is_file() else exported}: stage {STAGES[state.stage]}, "
            f"steps {state.steps}, {sum(s['wall_seconds'] for s in state.sessions):.0f} s "
            "trained before"
        )
    gen = state.generator
    for module in gen.modules():
        module.eval().requires_grad_(False)
    rng = torch.Generator(device=device)
    if state.rng is not None:
        rng.set_state(state.rng)
    else:  # fresh, or a checkpoint from another device type: a new stream for this session
        rng.manual_seed(chunk_seed(seed, 1_000_000 + len(state.sessions)))
    deadline = None if seconds is None else t_start + seconds
    session = {"device": str(device), "batch_size": batch_size, "steps_before": dict(state.steps)}
    rates: dict[str, float] = {}

    # 3. Render the scene pool
    t0 = time.monotonic()
    pool = ScenePool(
        world,
        gen.tokenizer,
        size=pool_size,
        seed=seed,
        context_only_fraction=config.context_only_fraction,
        device=device,
        workers=workers,
        # Streaming pools continue the scene stream; a static pool is the same data set again.
        first_chunk=state.next_chunk if workers > 0 else 0,
    )
    say(f"scene pool: {pool_size} scenes in {time.monotonic() - t0:.1f} s ({workers} workers)")

    def encode_latents(images_uint8: Tensor) -> Tensor:
        with torch.no_grad(), autocast():
            mean = gen.vae.encode(to_unit_range(images_uint8)).latent_dist.mean
        return mean.float() * state.scaling_factor

    def run_stage(stage: str, step_fn: Callable, params: list, lr: float, cap: int):
        """Steps of one stage until its step cap or time share; checkpoints and logs."""
        i = STAGES.index(stage)
        budget = None
        if deadline is not None:
            weights = config.stage_time_split
            later = sum(weights[i:]) or 1.0
            budget = max(0.0, deadline - time.monotonic()) * weights[i] / later
        graphed = cuda_graphs and on_cuda
        opt = _make_optimizer(params, lr, device, state.optimizer, capturable=graphed)
        state.optimizer = None
        if stage == "unet" and state.ema is None:
            state.ema = {
                f"{prefix}.{n}": p.detach().clone()
                for prefix, m in (("unet", gen.unet), ("text_encoder", gen.text_encoder))
                for n, p in m.named_parameters()
            }
        ema_list = list(state.ema.values()) if stage == "unet" else []
        modules = _trained_modules(state, stage)
        for m in modules.values():
            m.train().requires_grad_(True)
        say(
            f"[{stage}] from step {state.steps[stage]}"
            + (f" to {cap}" if cap < sys.maxsize else "")
            + (f", time share {budget:.0f} s" if budget is not None else "")
            + f", batch {batch_size}, lr {lr:g}"
            + (", CUDA graphs" if graphed else "")
        )

        def set_lr(step: int) -> None:
            value = lr * min(1.0, (step + 1) / max(1, config.warmup_steps))
            for group in opt.param_groups:
                if isinstance(group["lr"], Tensor):
                    group["lr"].fill_(value)  # in place: a captured graph reads this tensor
                else:
                    group["lr"] = value

        def eager_step() -> Tensor:
            with autocast():
                loss = step_fn(rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            return loss.detach()  # no autograd graph kept alive (it would upset a capture)

        # CUDA graphs: a few eager steps on a side stream (lazy initialisation, cuDNN
        # autotuning), then the whole step (sampling, forward, backward, clipping, AdamW) is
        # captured once and replayed without per-kernel CPU launch costs. Random draws inside
        # use the default CUDA generator, which graphs advance on every replay. Measured on an
        # H100 at batch 1024: the UNet step is GPU-bound (~73 ms of kernels, mostly norms and
        # autocast casts), so graphs gain ~15% (11 -> 13 steps/s).
        graph, graph_loss, side = None, None, torch.cuda.Stream() if graphed else None

        def capture() -> None:
            nonlocal graph, graph_loss, graphed
            torch.cuda.synchronize(device)
            torch.cuda.manual_seed(int(torch.randint(0, 2**62, (1,), generator=rng, device=device)))
            opt.zero_grad(set_to_none=True)
            try:
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                        loss = step_fn(None)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                    opt.step()
                graph, graph_loss = g, loss
            except Exception as err:  # noqa: BLE001 - a failed capture must not end the run
                say(f"[{stage}] CUDA graph capture failed, training eagerly: {err!r}"[:300])
                graphed = False
                opt.zero_grad(set_to_none=True)
                torch.cuda.synchronize(device)

        t_stage, n_done, seconds_before = time.monotonic(), 0, state.seconds[stage]
        t_log, n_log, running = t_stage, 0, torch.zeros((), device=device)
        # One-off costs are not charged to the time share: the first step (CUDA and cuDNN
        # initialisation, autotuning: 12 s for the VAE at batch 1024 on an H100, which once
        # ended the VAE stage after one step) and a graph capture. The deadline still holds.
        one_off = 0.0

        def time_left() -> bool:
            if budget is None:
                return True
            now = time.monotonic()
            return now - t_stage < budget + one_off and now < deadline

        def timed_once(fn):
            nonlocal one_off
            if on_cuda:
                torch.cuda.synchronize(device)
            t0 = time.monotonic()
            result = fn()
            if on_cuda:
                torch.cuda.synchronize(device)
            one_off += time.monotonic() - t0
            return result

        def one_step() -> Tensor:
            if graph is not None:
                graph.replay()
                return graph_loss
            if graphed:  # warm-up steps before the capture, on a side stream
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    loss = eager_step()
                torch.cuda.current_stream().wait_stream(side)
                return loss
            return eager_step()

        while state.steps[stage] < cap and time_left():
            step = state.steps[stage]
            set_lr(step)
            if graphed and graph is None and n_done >= GRAPH_WARMUP_STEPS:
                timed_once(capture)
            loss = timed_once(one_step) if n_done == 0 else one_step()
            if ema_list:
                decay = min(config.ema_decay, (1 + step) / (10 + step))
                with torch.no_grad():
                    torch._foreach_lerp_(ema_list, params, 1.0 - decay)
            running += loss.detach()
            state.steps[stage] += 1
            n_done += 1
            n_log += 1
            if pool.poll():
                state.next_chunk = pool.next_chunk
            if state.steps[stage] % log_every == 0 or state.steps[stage] == cap:
                now = time.monotonic()
                mean = running.item() / n_log
                state.losses[stage].append((state.steps[stage], mean))
                say(
                    f"[{stage}] step {state.steps[stage]:6d}  loss {mean:.4f}  "
                    f"{n_log / (now - t_log):6.1f} steps/s  "
                    f"{n_log * batch_size / (now - t_log):8.0f} samples/s  "
                    f"{now - t_start:6.0f} s"
                )
                t_log, n_log, running = now, 0, torch.zeros((), device=device)
            if state.steps[stage] % checkpoint_every == 0:
                state.seconds[stage] = seconds_before + time.monotonic() - t_stage
                _save_checkpoint(state, out_dir, rng, opt)
                if stage == "unet":
                    _export(state, out_dir, device, {"batch_size": batch_size})
        graph = graph_loss = None
        opt.zero_grad(set_to_none=True)
        if n_log:  # the tail since the last log line
            state.losses[stage].append((state.steps[stage], running.item() / n_log))
        if on_cuda:
            torch.cuda.synchronize(device)
        elapsed = time.monotonic() - t_stage
        state.seconds[stage] = seconds_before + elapsed
        rates[stage] = n_done / elapsed if elapsed > 0 else 0.0
        for m in modules.values():
            m.eval().requires_grad_(False)
        say(f"[{stage}] stopped at step {state.steps[stage]} after {elapsed:.0f} s")
        # A capped stage closes at its cap, or when its time share ran out after real work
        # (a zero budget, e.g. `seconds=0` to re-export, must not close an untrained stage).
        closed = state.steps[stage] >= cap or (budget is not None and n_done > 0)
        return opt, closed

    try:
        # 4. Stage A: VAE
        opt = None
        if state.stage == 0:

            def vae_step(g: torch.Generator | None) -> Tensor:
                images = to_unit_range(pool.images[pool.batch(batch_size, g)])
                shape = (batch_size, config.latent_channels, *gen.latent_shape[1:])
                noise = torch.randn(shape, device=device, generator=g)
                return vae_loss(gen.vae, images, noise, config.kl_weight)

            params = list(gen.vae.parameters())
            opt, closed = run_stage("vae", vae_step, params, config.vae_lr, config.vae_steps)
            # SD's latent scaling: 1 / std of the latents, measured over the whole pool (whose
            # latents the next stages need anyway, so the pool is encoded once).
            state.scaling_factor = 1.0
            pool.attach_encoder(encode_latents)
            state.scaling_factor = float(1.0 / pool.latents.std())
            pool.latents.mul_(state.scaling_factor)
            gen.vae.register_to_config(scaling_factor=state.scaling_factor)
            say(f"[vae] latent scaling factor {state.scaling_factor:.4f}")
            if closed:
                state.stage, opt = 1, None
            _save_checkpoint(state, out_dir, rng, opt)

        if state.stage >= 1 and pool.latents is None:  # resumed after stage A
            pool.attach_encoder(encode_latents)

        # 5. Stage B: tiny decoder (distilled from the VAE decoder)
        if state.stage == 1:

            def tiny_step(g: torch.Generator | None) -> Tensor:
                z = pool.latents[pool.batch(batch_size, g)]
                z = z + config.latent_jitter * torch.randn(z.shape, device=device, generator=g)
                return tiny_decoder_loss(gen.tiny_decoder, gen.vae, z, state.scaling_factor)

            params = list(gen.tiny_decoder.decoder.parameters())
            opt, closed = run_stage(
                "tiny_decoder", tiny_step, params, config.tiny_decoder_lr, config.tiny_decoder_steps
            )
            if closed:
                state.stage, opt = 2, None
            _save_checkpoint(state, out_dir, rng, opt)

        # 6. Stage C: text encoder + UNet
        if state.stage == 2:
            sched = gen.scheduler
            alphas = sched.alphas_cumprod.to(device=device, dtype=torch.float32)
            weights = min_snr_weights(alphas, config.min_snr_gamma, config.prediction_type)
            few = torch.tensor(few_step_timesteps(config.num_train_timesteps), device=device)
            empty = torch.tensor(pool.token_ids([""])[0], device=device)
            n_t = config.num_train_timesteps

            def unet_step(g: torch.Generator | None) -> Tensor:
                idx = pool.batch(batch_size, g)
                latents, ids = pool.latents[idx], pool.ids[idx]
                drop = torch.rand(batch_size, device=device, generator=g) < config.caption_dropout
                ids = torch.where(drop[:, None], empty[None, :], ids)
                t = torch.randint(0, n_t, (batch_size,), device=device, generator=g)
                pick = torch.randint(0, len(few), (batch_size,), device=device, generator=g)
                use_few = torch.rand(batch_size, device=device, generator=g)
                t = torch.where(use_few < config.few_step_fraction, few[pick], t)
                noise = torch.randn(latents.shape, device=device, generator=g)
                return diffusion_loss(
                    gen.unet,
                    gen.text_encoder,
                    latents,
                    ids,
                    t,
                    noise,
                    alphas,
                    weights,
                    config.prediction_type,
                )

            params = list(gen.unet.parameters()) + list(gen.text_encoder.parameters())
            cap = max_steps if max_steps is not None else sys.maxsize
            opt, _ = run_stage("unet", unet_step, params, config.unet_lr, cap)
    finally:
        pool.close()

    # 7. Save the checkpoint and export the generator
    state.next_chunk = pool.next_chunk
    wall = time.monotonic() - t_start
    session.update(wall_seconds=round(wall, 2), steps_after=dict(state.steps))
    state.sessions.append(session)
    _save_checkpoint(state, out_dir, rng, opt)
    gen_dir = _export(state, out_dir, device, {"batch_size": batch_size})
    say(f"wrote {gen_dir} (steps {state.steps}) in {time.monotonic() - t_start:.0f} s")
    return TrainReport(
        out_dir=out_dir,
        generator_dir=gen_dir,
        device=str(device),
        stage=STAGES[state.stage],
        steps=dict(state.steps),
        seconds=dict(state.seconds),
        losses={k: list(v) for k, v in state.losses.items()},
        scaling_factor=state.scaling_factor,
        resumed=resumed,
        wall_seconds=wall,
        steps_per_second=rates,
    )


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> TrainReport:
    parser = argparse.ArgumentParser(
        prog="python -m dxray.toyworld.train_generator",
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m dxray.toyworld.train_generator --out zoo/toy-generator "
        "--device cuda --seconds 360",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--world", default="default", help="world name or YAML path")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--seconds", type=float, default=None, help="wall-clock budget")
    parser.add_argument("--max-steps", type=int, default=None, help="UNet steps in total")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--preset", choices=("default", "tiny"), default="default")
    parser.add_argument("--pool-size", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None, help="render processes")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--cuda-graphs", action="store_true", help="capture training steps")
    parser.add_argument("--samples", type=int, default=4, help="sampler steps for samples.png")
    parser.add_argument("--guidance", type=float, default=2.0, help="CFG scale for samples.png")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = ToyGeneratorConfig.tiny() if args.preset == "tiny" else ToyGeneratorConfig()
    report = train_generator(
        load_world(args.world),
        args.out,
        arch=config,
        device=args.device,
        seconds=args.seconds,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        seed=args.seed,
        resume=not args.fresh,
        progress=lambda line: print(line, flush=True),
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        pool_size=args.pool_size,
        workers=args.workers,
        cuda_graphs=args.cuda_graphs,
    )
    if args.samples:
        from dxray.models.generator import load_generator

        generator = load_generator(report.generator_dir, device=args.device)
        world = load_world(args.world)
        captions = sample_grid(world)
        seeds = list(range(len(captions)))
        images = sample_captions(
            generator, captions, seeds, steps=args.samples, guidance_scale=args.guidance
        )
        path = args.out / "samples.png"
        save_image_grid(images, path, columns=2 * len(world.contexts))
        print(f"wrote {path}: rows = shapes, then contexts alone; columns = contexts x 2 seeds")
    print(json.dumps({"steps": report.steps, "steps_per_second": report.steps_per_second}))
    return report


if __name__ == "__main__":
    main()
