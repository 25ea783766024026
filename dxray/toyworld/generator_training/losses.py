"""The generator's losses, one per stage: plain functions of the models and a batch, so tests
can call them. A: `vae_loss`; B: `tiny_decoder_loss`; C: `diffusion_loss` weighted by
`min_snr_weights`, with extra samples at `few_step_timesteps` (those the engine's sampler
visits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


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
