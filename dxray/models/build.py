"""Build SD-family generators with random weights, at any size, fully offline.

Used by the tests (seeded tiny models), the GPU benchmark (the real SD1.5/LCM architecture with
random weights: timing depends on architecture, not weights) and the toy zoo (which then trains
them). What is built here is saved in diffusers' `save_pretrained` layout and read back through
the real loader in `dxray.models.generator`, so the production path is the tested path.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def build_tokenizer(words: list[str], *, max_length: int = 16, vocab_size: int = 1000):
    """A real `CLIPTokenizer` whose byte-level BPE is learned in code from `words`.

    No download, and deterministic: the merges are learned here (most frequent pair first, ties
    broken by the pair's text) rather than by the `tokenizers` trainer, whose ties follow hash
    order and so change from process to process. Every word of `words` ends up one token;
    other text falls back to byte-level pieces.
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for char in alphabet:
        vocab.setdefault(char, len(vocab))
    for char in alphabet:
        vocab.setdefault(char + "</w>", len(vocab))
    # Each word as symbols, the last one marked as the word's end (CLIP's convention).
    corpus = [[*w[:-1], w[-1] + "</w>"] for w in sorted({w.lower() for w in words if w})]
    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size:
        counts: dict[tuple[str, str], int] = {}
        for symbols in corpus:
            for pair in zip(symbols[:-1], symbols[1:], strict=True):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        vocab.setdefault("".join(best), len(vocab))
        corpus = [_merge(symbols, best) for symbols in corpus]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def _merge(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


@dataclass
class GeneratorArch:
    """Sizes of an SD-family generator. Defaults: a tiny model that runs in milliseconds."""

    latent_size: int = 8
    latent_channels: int = 4
    unet_channels: tuple[int, ...] = (8, 16)
    unet_layers_per_block: int = 1
    unet_attention_head_dim: int = 2
    unet_norm_groups: int = 4
    # LCM distils classifier-free guidance into a "w" embedding of this width; None = plain SD.
    time_cond_proj_dim: int | None = 8
    text_hidden: int = 16
    text_layers: int = 2
    text_heads: int = 2
    text_intermediate: int = 32
    text_vocab: int | None = None  # None: the tokenizer's size
    max_length: int = 16
    vae_channels: tuple[int, ...] = (8, 16)
    vae_layers_per_block: int = 1
    vae_norm_groups: int = 4
    vae_scaling_factor: float = 0.18215
    tiny_decoder_channels: tuple[int, ...] | None = (8, 8)  # AutoencoderTiny; None: none
    scheduler: Literal["lcm", "ddim"] = "lcm"
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    words: list[str] = field(default_factory=lambda: list(DEFAULT_WORDS))

    @property
    def image_size(self) -> int:
        return self.latent_size * 2 ** (len(self.vae_channels) - 1)


DEFAULT_WORDS = (
    "a photo of the red green blue yellow white black circle square star triangle cross "
    "ring on in with water grass sand brick sky snow watermark object scene"
).split()


def sd15_lcm_arch() -> GeneratorArch:
    """The real SD1.5 + LCM architecture (860M UNet, 84M VAE, CLIP ViT-L/14 text encoder),
    with a TAESD-shaped tiny decoder. 512x512 images from 64x64 latents."""
    return GeneratorArch(
        latent_size=64,
        unet_channels=(320, 640, 1280, 1280),
        unet_layers_per_block=2,
        unet_attention_head_dim=8,
        unet_norm_groups=32,
        time_cond_proj_dim=256,
        text_hidden=768,
        text_layers=12,
        text_heads=12,
        text_intermediate=3072,
        text_vocab=49408,
        max_length=77,
        vae_channels=(128, 256, 512, 512),
        vae_layers_per_block=2,
        vae_norm_groups=32,
        tiny_decoder_channels=(64, 64, 64, 64),
    )


def build_generator(arch: GeneratorArch, *, seed: int = 0, tokenizer=None):
    """Random-weight components for `arch`, as a `dxray.models.generator.Generator`."""
    from diffusers import (
        AutoencoderKL,
        AutoencoderTiny,
        DDIMScheduler,
        LCMScheduler,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from dxray.models.generator import Generator

    torch.manual_seed(seed)
    tokenizer = tokenizer or build_tokenizer(arch.words, max_length=arch.max_length)
    n_unet = len(arch.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=arch.latent_size,
        in_channels=arch.latent_channels,
        out_channels=arch.latent_channels,
        block_out_channels=arch.unet_channels,
        layers_per_block=arch.unet_layers_per_block,
        down_block_types=("CrossAttnDownBlock2D",) * (n_unet - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n_unet - 1),
        cross_attention_dim=arch.text_hidden,
        attention_head_dim=arch.unet_attention_head_dim,
        norm_num_groups=arch.unet_norm_groups,
        time_cond_proj_dim=arch.time_cond_proj_dim,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=arch.text_vocab or len(tokenizer),
            hidden_size=arch.text_hidden,
            intermediate_size=arch.text_intermediate,
            num_hidden_layers=arch.text_layers,
            num_attention_heads=arch.text_heads,
            max_position_embeddings=arch.max_length,
            projection_dim=arch.text_hidden,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    n_vae = len(arch.vae_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=arch.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * n_vae,
        up_block_types=("UpDecoderBlock2D",) * n_vae,
        layers_per_block=arch.vae_layers_per_block,
        latent_channels=arch.latent_channels,
        norm_num_groups=arch.vae_norm_groups,
        sample_size=arch.image_size,
        scaling_factor=arch.vae_scaling_factor,
    )
    tiny = None
    if arch.tiny_decoder_channels is not None:
        n_tiny = len(arch.tiny_decoder_channels)
        tiny = AutoencoderTiny(
            encoder_block_out_channels=arch.tiny_decoder_channels,
            decoder_block_out_channels=arch.tiny_decoder_channels,
            num_encoder_blocks=(1,) + (3,) * (n_tiny - 1),
            num_decoder_blocks=(3,) * (n_tiny - 1) + (1,),
            latent_channels=arch.latent_channels,
            # Like TAESD: it decodes the VAE-scaled latents directly (scaling_factor 1.0), so
            # one `latents / decoder.config.scaling_factor` serves both decoders.
            scaling_factor=1.0,
        )
    common = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    if arch.scheduler == "lcm":
        scheduler = LCMScheduler(prediction_type=arch.prediction_type, **common)
    else:
        scheduler = DDIMScheduler(prediction_type=arch.prediction_type, **common)
    for module in (unet, text_encoder, vae, tiny):
        if module is not None:
            module.eval().requires_grad_(False)
    return Generator(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        vae=vae,
        scheduler=scheduler,
        tiny_decoder=tiny,
        source=f"built:{json.dumps(asdict(arch), default=str)[:200]}",
    )
