"""Differentiable few-step sampling: noise + conditioning -> clean latents -> image.

The update rules are written out here, stateless, instead of calling `scheduler.step`: the
scheduler only provides its noise schedule (`alphas_cumprod`) and prediction type. That keeps the
whole path visible, makes every row's noise its own (one generator per row), and lets the
gradient mode be chosen per call.

Samplers
- "lcm": Latent Consistency Model multistep sampling (Luo et al. 2023): at each step predict
  the clean latent with the consistency boundary condition, then re-noise to the next timestep
  with fresh (pre-drawn, per-row) noise.
- "ddim": deterministic DDIM (eta=0), "trailing" timestep spacing so that the first step starts
  from pure noise (Lin et al. 2024): one step (K=1) is the one-step x0 prediction that
  SD-Turbo-style models are trained for.

Gradient modes
- "full": backpropagate through every UNet call and every update.
- "detached": the UNet's input latent is detached at every step (DEXTER-style): the gradient
  reaches the prompt through each step's text conditioning and the sampler's linear updates,
  never through the UNet's Jacobian with respect to its input. Same cost, tamer gradients.
- "last": only the final UNet call carries gradient; earlier steps run without autograd.
  About half the cost of "full" at K=4.
`checkpoint=True` recomputes each UNet call in the backward pass (activations cut several-fold
at ~1.5x the time); `decode(..., checkpoint=True)` does the same for the decoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as recompute

from dxray.models.generator import Generator

SamplerKind = Literal["auto", "lcm", "ddim"]
GradMode = Literal["full", "detached", "last"]
# LCM's timestep grid: the teacher's 50-step DDIM schedule it was distilled on.
LCM_ORIGINAL_STEPS = 50
LCM_DEFAULT_GUIDANCE = 8.0


@dataclass(frozen=True)
class SamplerConfig:
    kind: SamplerKind = "auto"  # auto: "lcm" for an LCMScheduler, else "ddim"
    steps: int = 4
    # None: 8.0 for LCM-distilled UNets (fed as the "w" embedding, no extra pass), 1.0 (no
    # classifier-free guidance) otherwise. > 1 on a plain UNet doubles the UNet cost.
    guidance_scale: float | None = None
    grad_mode: GradMode = "full"
    checkpoint: bool = False


def resolve_kind(generator: Generator, kind: SamplerKind) -> Literal["lcm", "ddim"]:
    if kind != "auto":
        return kind
    return "lcm" if type(generator.scheduler).__name__ == "LCMScheduler" else "ddim"


def timesteps(kind: Literal["lcm", "ddim"], steps: int, num_train_timesteps: int) -> list[int]:
    """The K timesteps visited, from noisiest to cleanest."""
    if steps < 1:
        raise ValueError(f"sampler steps must be >= 1, got {steps}")
    if kind == "lcm":
        stride = num_train_timesteps // LCM_ORIGINAL_STEPS
        grid = [stride * i - 1 for i in range(LCM_ORIGINAL_STEPS, 0, -1)]
        if steps > LCM_ORIGINAL_STEPS:
            raise ValueError(f"LCM sampling takes at most {LCM_ORIGINAL_STEPS} steps, got {steps}")
        return [grid[i * LCM_ORIGINAL_STEPS // steps] for i in range(steps)]
    return [round(num_train_timesteps - i * num_train_timesteps / steps) - 1 for i in range(steps)]


def draw_noise(latent_shape: tuple[int, ...], steps: int, seeds: list[int]) -> Tensor:
    """Per-row noise [B, K, C, h, w]: the start latent and the K-1 LCM re-noising draws.

    Drawn on the CPU from one generator per row, so a row's noise is the same whatever else is
    in its batch and on whatever device it runs.
    """
    rows = [
        torch.randn((steps, *latent_shape), generator=torch.Generator().manual_seed(int(s)))
        for s in seeds
    ]
    return torch.stack(rows)


def guidance_embedding(w: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of the guidance scale w [B] -> [B, dim], as LCM was distilled with."""
    w = w.float() * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=w.device) * -(math.log(10000.0) / (half - 1)))
    emb = w[:, None] * freqs[None, :]
    emb = torch.cat([emb.sin(), emb.cos()], dim=1)
    return torch.nn.functional.pad(emb, (0, 1)) if dim % 2 else emb


def sample(
    generator: Generator,
    cond: Tensor,
    noise: Tensor,
    config: SamplerConfig = SamplerConfig(),
    uncond: Tensor | None = None,
) -> Tensor:
    """Clean latents [B, C, h, w] from conditioning [B, L, d] and per-row noise [B, K, C, h, w].

    `uncond` [1 or B, L, d] is the empty-prompt conditioning, needed only for classifier-free
    guidance on UNets without distilled guidance.
    """
    unet, sched = generator.unet, generator.scheduler
    kind = resolve_kind(generator, config.kind)
    steps = noise.shape[1]
    ts = timesteps(kind, steps, sched.config.num_train_timesteps)
    alphas = sched.alphas_cumprod.to(device=cond.device, dtype=torch.float32)
    prediction = sched.config.prediction_type
    batch = cond.shape[0]

    distilled = generator.distilled_guidance
    scale = config.guidance_scale
    if scale is None:
        scale = LCM_DEFAULT_GUIDANCE if distilled else 1.0
    use_cfg = not distilled and scale > 1.0
    if use_cfg and uncond is None:
        raise ValueError("guidance_scale > 1 on a UNet without distilled guidance needs uncond")
    w_emb = None
    if distilled:
        w = torch.full((batch,), scale - 1.0, device=cond.device)
        w_emb = guidance_embedding(w, unet.config.time_cond_proj_dim).to(cond.dtype)

    def predict(x: Tensor, t: int) -> Tensor:
        t_in = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        if not use_cfg:
            return unet(x, t_in, encoder_hidden_states=cond, timestep_cond=w_emb).sample
        both = torch.cat([uncond.expand_as(cond), cond])
        out = unet(torch.cat([x, x]), torch.cat([t_in, t_in]), encoder_hidden_states=both).sample
        out_uncond, out_cond = out.chunk(2)
        return out_uncond + scale * (out_cond - out_uncond)

    x = noise[:, 0].to(device=cond.device, dtype=cond.dtype)
    for i, t in enumerate(ts):
        last = i == steps - 1
        grad = torch.is_grad_enabled() and (last or config.grad_mode != "last")
        with torch.set_grad_enabled(grad):
            x_in = x.detach() if config.grad_mode in ("detached", "last") else x
            if config.checkpoint and grad:
                out = recompute(predict, x_in, t, use_reentrant=False)
            else:
                out = predict(x_in, t)
            # The update uses the non-detached x: "detached" keeps the sampler's linear path.
            a_t = alphas[t]
            x0, eps = _split(prediction, x, out, a_t)
            if kind == "lcm":
                c_skip, c_out = _lcm_boundary(t, sched)
                x0 = c_out * x0 + c_skip * x
            if last:
                return x0
            a_next = alphas[ts[i + 1]]
            if kind == "lcm":
                fresh = noise[:, i + 1].to(device=x.device, dtype=x.dtype)
                x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * fresh
            else:
                x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    raise AssertionError("unreachable")


def _split(prediction: str, x: Tensor, out: Tensor, a_t: Tensor) -> tuple[Tensor, Tensor]:
    """(predicted clean latent, predicted noise) from the UNet output."""
    if prediction == "epsilon":
        return (x - (1 - a_t).sqrt() * out) / a_t.sqrt(), out
    if prediction == "v_prediction":
        return a_t.sqrt() * x - (1 - a_t).sqrt() * out, a_t.sqrt() * out + (1 - a_t).sqrt() * x
    if prediction == "sample":
        return out, (x - a_t.sqrt() * out) / (1 - a_t).sqrt()
    raise ValueError(f"unsupported scheduler prediction_type {prediction!r}")


def _lcm_boundary(t: int, scheduler) -> tuple[float, float]:
    sigma_data = 0.5
    scaled = t * getattr(scheduler.config, "timestep_scaling", 10.0)
    c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
    c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
    return c_skip, c_out


def decode(
    generator: Generator,
    latents: Tensor,
    *,
    tiny: bool = False,
    checkpoint: bool = False,
    micro_batch: int | None = None,
) -> Tensor:
    """Images [B, 3, H, W] in [0, 1] from clean latents.

    `tiny`: use the tiny decoder (TAESD-like) if the generator has one: much cheaper, used during
    optimisation; the final image always uses the full VAE. `micro_batch` splits the decode:
    large batches at 512 px overflow an upsampling kernel's INT_MAX limit in backward.
    """
    decoder = (
        generator.tiny_decoder if tiny and generator.tiny_decoder is not None else generator.vae
    )
    scale = decoder.config.scaling_factor

    def run(z: Tensor) -> Tensor:
        return decoder.decode(z / scale).sample

    chunks = latents.split(micro_batch) if micro_batch else (latents,)
    images = []
    for z in chunks:
        if checkpoint and torch.is_grad_enabled():
            images.append(recompute(run, z, use_reentrant=False))
        else:
            images.append(run(z))
    return (torch.cat(images) / 2 + 0.5).clamp(0, 1)
