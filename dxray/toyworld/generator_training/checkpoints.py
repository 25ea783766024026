"""The generator's training state, its checkpoint and its export.

    OUT/checkpoint.pt   everything to continue exactly: weights, EMA, optimizer, RNG (~100 MB)
    OUT/tokenizer/      the run's tokenizer, saved once and reloaded on resume
    OUT/generator/      the export: a diffusers `save_pretrained` layout (EMA weights, float32)
                        that `dxray.models.generator.load_generator` reads like any SD-family
                        checkpoint, plus its training record `dxray_train.json`

`TrainState` is what training carries from step to step and from session to session. A run
starts from `new_state`, or continues from `restore_state` (a checkpoint) or `state_from_export`
(the export alone: its EMA weights become the live weights, the optimizer starts afresh). Either
refuses another config, world or seed than the run was started with, and says how to proceed.
Writes are atomic: a kill mid-save keeps the previous checkpoint or export.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import Tensor

from dxray.toyworld.generator_training.config import STAGES, ToyGeneratorConfig
from dxray.toyworld.records import library_versions, write_record
from dxray.toyworld.scenes import caption_words
from dxray.toyworld.world import World

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1
TOKENIZER_DIR = "tokenizer"
GENERATOR_DIR = "generator"
TRAIN_FILE = "dxray_train.json"  # the export's training record
AFRESH = "train afresh with resume=False (dxray zoo train --generator-fresh)"


@dataclass
class TrainState:
    """Everything a run carries between steps and sessions (what `checkpoint.pt` holds)."""

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


def trained_modules(state: TrainState, stage: str) -> dict[str, torch.nn.Module]:
    """The modules that `stage` trains (the others stay frozen), by name."""
    g = state.generator
    if stage == "vae":
        return {"vae": g.vae}
    if stage == "tiny_decoder":
        return {"tiny_decoder": g.tiny_decoder.decoder}
    return {"unet": g.unet, "text_encoder": g.text_encoder}


def save_checkpoint(state: TrainState, out_dir: Path, rng: torch.Generator, optimizer) -> None:
    """Write OUT/checkpoint.pt: the state, the RNG and the current stage's optimizer (None
    between stages)."""
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


def load_checkpoint(path: Path) -> dict:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: checkpoint version {payload.get('version')!r}, this code reads "
            f"{CHECKPOINT_VERSION}; {AFRESH}"
        )
    return payload


def new_state(
    world: World,
    config: ToyGeneratorConfig,
    seed: int,
    out_dir: Path,
    device: torch.device,
    tokenizer=None,
) -> TrainState:
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
    return TrainState(config=config, seed=seed, world=world, generator=_to_device(gen, device))


def _to_device(gen, device: torch.device):
    # Not `Generator.to(device=...)`: it passes dtype=None, which diffusers' `to` warns about.
    for module in gen.modules():
        module.to(device)
    return gen


def _check_same_run(
    source: Path, saved: dict, world: World, config: ToyGeneratorConfig, seed: int
) -> None:
    """Refuse to continue a run with another config, world or seed (the message says how)."""
    afresh = f"or {AFRESH}."
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


def restore_state(
    payload: dict, world: World, config: ToyGeneratorConfig, seed: int, out_dir: Path, device
) -> TrainState:
    """The full state of a checkpoint: weights, EMA, optimizer, RNG; training continues exactly."""
    from transformers import AutoTokenizer

    _check_same_run(out_dir / CHECKPOINT, payload, world, config, seed)
    tokenizer = AutoTokenizer.from_pretrained(out_dir / TOKENIZER_DIR)
    gen = _rebuild(world, config, seed, tokenizer, payload["models"])
    if payload["scaling_factor"] is not None:
        gen.vae.register_to_config(scaling_factor=float(payload["scaling_factor"]))
    _to_device(gen, device)
    ema = payload["ema"]
    return TrainState(
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


def state_from_export(
    gen_dir: Path, world: World, config: ToyGeneratorConfig, seed: int, out_dir: Path, device
) -> TrainState:
    """Warm start from an exported generator alone (no checkpoint.pt: e.g. only the export
    was carried back from a GPU machine). The EMA weights become the live weights; optimizer
    moments start afresh (with warm-up); steps, times and losses carry on."""
    from dxray.models.generator import load_generator

    info = json.loads((gen_dir / TRAIN_FILE).read_text())
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
    return TrainState(
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


def export_generator(state: TrainState, out_dir: Path, device: torch.device, extra: dict) -> Path:
    """Write OUT/generator/ (EMA weights, float32) and its training record (`TRAIN_FILE`)."""
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
        "versions": library_versions("python", "torch", "diffusers", "transformers"),
        **extra,
    }
    write_record(tmp / TRAIN_FILE, info)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
