"""SD-family generators: tokenizer, text encoder, UNet, VAE (+ optional tiny decoder), scheduler.

Loaded from a Hugging Face hub id or a local directory in diffusers' `save_pretrained` layout
(model_index.json + tokenizer/ text_encoder/ unet/ vae/ scheduler/). Works for SD1.x/2.x, LCM
(distilled models with a guidance "w" embedding, `unet.config.time_cond_proj_dim`) and one-step
models (SD-Turbo style: sample with one step). SDXL (two text encoders) is not supported.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dxray.models.sources import is_hub_id, load_part

REQUIRED = ("tokenizer", "text_encoder", "unet", "vae", "scheduler")
TINY_DECODER_DIR = "tiny_decoder"


class GeneratorLoadError(RuntimeError):
    """A generator could not be loaded; the message says what to do."""


@dataclass
class Generator:
    """The components the explain engine uses, already on their device, frozen, in eval mode."""

    tokenizer: object
    text_encoder: nn.Module
    unet: nn.Module
    vae: nn.Module
    scheduler: object
    tiny_decoder: nn.Module | None = None
    source: str = ""

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        size = self.unet.config.sample_size
        return (self.unet.config.in_channels, size, size)

    @property
    def distilled_guidance(self) -> bool:
        """True for LCM-distilled UNets that take guidance as a "w" embedding."""
        return self.unet.config.time_cond_proj_dim is not None

    def to(self, device=None, dtype=None) -> Generator:
        # Only what is asked: diffusers warns on every `.to(dtype=None)` call.
        changes = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for module in self.modules():
            module.to(**changes)
        return self

    def modules(self) -> list[nn.Module]:
        mods = [self.text_encoder, self.unet, self.vae]
        return mods + ([self.tiny_decoder] if self.tiny_decoder is not None else [])

    def save_pretrained(self, path: str | Path) -> Path:
        """Write diffusers' layout; `load_generator(path)` reads it back."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path / "tokenizer")
        self.text_encoder.save_pretrained(path / "text_encoder")
        save_component(self.unet, path / "unet")
        save_component(self.vae, path / "vae")
        self.scheduler.save_pretrained(path / "scheduler")
        if self.tiny_decoder is not None:
            save_component(self.tiny_decoder, path / TINY_DECODER_DIR)
        index = {
            "_class_name": "StableDiffusionPipeline",
            "tokenizer": ["transformers", type(self.tokenizer).__name__],
            "text_encoder": ["transformers", type(self.text_encoder).__name__],
            "unet": ["diffusers", type(self.unet).__name__],
            "vae": ["diffusers", type(self.vae).__name__],
            "scheduler": ["diffusers", type(self.scheduler).__name__],
        }
        (path / "model_index.json").write_text(json.dumps(index, indent=2))
        return path


def save_component(module: nn.Module, path: Path) -> None:
    """A diffusers model's `save_pretrained`, its config.json holding only what its class's
    `__init__` takes. diffusers 0.42's AutoencoderTiny also records `block_out_channels` (a
    copy of `decoder_block_out_channels` for its own use), then warns on every load that the
    key "will be ignored"; without it, the model loads the same and silently."""
    module.save_pretrained(path)
    config_file = path / "config.json"
    config = json.loads(config_file.read_text())
    takes = set(inspect.signature(type(module).__init__).parameters)
    kept = {k: v for k, v in config.items() if k.startswith("_") or k in takes}
    if kept != config:  # the layout diffusers writes: sorted keys, 2-space indent
        config_file.write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")


def load_generator(
    source: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    tiny_decoder: str | os.PathLike | None = None,
) -> Generator:
    """Load a generator from a local directory or a hub id.

    `tiny_decoder`: a hub id or directory of an `AutoencoderTiny` (e.g. "madebyollin/taesd") used
    for cheap decoding during optimisation. Without it, a `tiny_decoder/` folder inside a local
    generator directory is used if present.
    """
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    src = str(source)
    local = Path(src).expanduser()
    is_local = local.is_dir()
    if not is_local and not is_hub_id(src):
        raise GeneratorLoadError(
            f"generator directory '{src}' does not exist. Pass a directory in diffusers' "
            "save_pretrained layout (model_index.json, tokenizer/, text_encoder/, unet/, vae/, "
            "scheduler/) or a Hugging Face hub id such as 'SimianLuo/LCM_Dreamshaper_v7'."
        )
    if is_local:
        missing = [c for c in REQUIRED if not (local / c).is_dir()]
        if missing:
            raise GeneratorLoadError(
                f"generator directory '{src}' lacks the component folder(s) {missing}. It must "
                f"hold {list(REQUIRED)} as written by a diffusers pipeline's save_pretrained."
            )
        src = str(local)

    def load(what: str, fn):
        return load_part(
            fn, what=what, model="generator", src=src, is_local=is_local, error=GeneratorLoadError
        )

    tokenizer = load("tokenizer", lambda: AutoTokenizer.from_pretrained(src, subfolder="tokenizer"))
    text_encoder = load(
        "text encoder",
        lambda: CLIPTextModel.from_pretrained(src, subfolder="text_encoder", dtype=dtype),
    )
    unet = load(
        "unet",
        lambda: UNet2DConditionModel.from_pretrained(src, subfolder="unet", torch_dtype=dtype),
    )
    vae = load(
        "vae", lambda: AutoencoderKL.from_pretrained(src, subfolder="vae", torch_dtype=dtype)
    )
    scheduler = load("scheduler", lambda: _load_scheduler(src))
    tiny = None
    if tiny_decoder is not None:
        tiny = load(
            "tiny decoder",
            lambda: AutoencoderTiny.from_pretrained(str(tiny_decoder), torch_dtype=dtype),
        )
    elif is_local and (local / TINY_DECODER_DIR).is_dir():
        tiny = AutoencoderTiny.from_pretrained(src, subfolder=TINY_DECODER_DIR, torch_dtype=dtype)

    gen = Generator(tokenizer, text_encoder, unet, vae, scheduler, tiny, source=str(source))
    for module in gen.modules():
        module.eval().requires_grad_(False)
    return gen.to(device=device)


def _load_scheduler(src: str):
    import diffusers
    from huggingface_hub import hf_hub_download

    local = Path(src) / "scheduler" / "scheduler_config.json"
    if local.is_file():
        config_file = local
    else:
        config_file = hf_hub_download(src, "scheduler_config.json", subfolder="scheduler")
    name = json.loads(Path(config_file).read_text())["_class_name"]
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ValueError(f"unknown scheduler class {name!r}")
    return cls.from_pretrained(src, subfolder="scheduler")
