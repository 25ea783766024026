"""The toy generator's sizes and training recipe (`ToyGeneratorConfig`), the one config of a
`train_generator` call (`GeneratorTrainingConfig`), and the stage names.

A `ToyGeneratorConfig` is what a generator *is*: it is saved in the checkpoint and in the
export's training record (as "arch"), and a run only continues with the config it started with.
How long and how one call trains it is not part of it: that is the rest of
`GeneratorTrainingConfig` (the seed, device and progress lines are the call's `RunSettings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from dxray.toyworld.world import World

STAGES = ("vae", "tiny_decoder", "unet")  # trained in this order; each freezes the one before


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
class GeneratorTrainingConfig:
    """One `train_generator` call: the generator it trains (`generator`, saved with it) and
    how long and how this call trains it (not saved: a later call may choose otherwise).

    The call stops at `seconds` of wall clock (split over the stages still to run in the ratio
    `generator.stage_time_split`, a stage's unused time flowing to the next) or when the UNet
    has `max_steps` steps in total, whichever comes first; give at least one of them.
    """

    generator: ToyGeneratorConfig = field(default_factory=ToyGeneratorConfig)
    seconds: float | None = None
    max_steps: int | None = None
    batch_size: int | None = None  # None: 1024 on CUDA, 16 on the CPU
    pool_size: int | None = None  # scenes in the pool; None: 65536 on CUDA, 2048 on the CPU
    workers: int | None = None  # scene render processes; None: cores - 2 on CUDA, none on the CPU
    # Continue from OUT/checkpoint.pt, else from the export OUT/generator/ alone, if either
    # exists (same generator config, world and seed only); False trains afresh.
    resume: bool = True
    log_every: int = 100  # a progress line every N steps
    checkpoint_every: int = 500  # a checkpoint every N steps
    # Capture each stage's training step as a CUDA graph (CUDA only; falls back to eager steps
    # if the capture fails).
    cuda_graphs: bool = False
