"""`train_generator`: the toy generator's three stages, in order, resumable.

A. VAE: `vae_loss` on pool scenes; its end measures the latent scaling factor (1 / std of the
   pool's latents, as SD does) and encodes the pool once for the next stages.
B. Tiny decoder: `tiny_decoder_loss` on the pool's (jittered) latents.
C. Text encoder + UNet: `diffusion_loss` on the pool's latents and captions (caption dropout,
   extra few-step timesteps, min-SNR weights), with EMA weights.

Each stage is a `stage.StageRunner`; the state they advance is saved in OUT/checkpoint.pt and
exported to OUT/generator/ (see `checkpoints`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from dxray.toyworld.generator_training.checkpoints import (
    AFRESH,
    CHECKPOINT,
    GENERATOR_DIR,
    TRAIN_FILE,
    TrainState,
    load_checkpoint,
    new_state,
    restore_state,
    state_from_export,
)
from dxray.toyworld.generator_training.config import (
    STAGES,
    GeneratorTrainingConfig,
    ToyGeneratorConfig,
)
from dxray.toyworld.generator_training.losses import (
    diffusion_loss,
    few_step_timesteps,
    min_snr_weights,
    tiny_decoder_loss,
    vae_loss,
)
from dxray.toyworld.generator_training.pool import ScenePool, chunk_seed, to_unit_range
from dxray.toyworld.generator_training.stage import RunContext, StageRunner
from dxray.toyworld.run_settings import RunSettings
from dxray.toyworld.world import World


@dataclass
class GeneratorTrainReport:
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


def _default_workers(device: torch.device) -> int:
    if device.type != "cuda":
        return 0  # CPU training: the cores are busy training; a static pool is enough
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(12, (cores or 1) - 2))


def train_generator(
    world: World,
    out_dir: str | os.PathLike,
    training: GeneratorTrainingConfig | None = None,
    run: RunSettings | None = None,
    *,
    tokenizer=None,
) -> GeneratorTrainReport:
    """Train (or continue training) the toy generator of `training.generator` for as long and
    as `training` says, with the seed, on the device and with the progress lines of `run`;
    write OUT/generator/ and OUT/checkpoint.pt.

    The VAE and tiny-decoder stages end at their own step caps (`vae_steps`,
    `tiny_decoder_steps` of the generator's config) or time share; the UNet stage at
    `training.max_steps` or the time. `tokenizer`: None builds one from the world's caption
    words (`dxray.models.build.build_tokenizer`); give one to share its ids with another run.
    """
    # 1. Check inputs
    t_start = time.monotonic()
    training = training or GeneratorTrainingConfig()
    run = run if run is not None else RunSettings()
    run.use_threads()
    config, seed, seconds = training.generator, run.seed, training.seconds
    config.check(world)
    device = torch.device(run.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    if seconds is None and training.max_steps is None:
        raise ValueError("give seconds and/or max_steps: training has no other end")
    on_cuda = device.type == "cuda"
    batch_size = training.batch_size or (1024 if on_cuda else 16)
    pool_size = training.pool_size or (65536 if on_cuda else 2048)
    workers = _default_workers(device) if training.workers is None else training.workers
    say = run.say
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    # 2. Build the models, or restore them from the checkpoint
    state, resumed = _start_state(
        world, config, seed, out_dir, device, training.resume, tokenizer, say
    )
    gen = state.generator
    for module in gen.modules():
        module.eval().requires_grad_(False)
    rng = torch.Generator(device=device)
    if state.rng is not None:
        rng.set_state(state.rng)
    else:  # fresh, or a checkpoint from another device type: a new stream for this session
        rng.manual_seed(chunk_seed(seed, 1_000_000 + len(state.sessions)))
    session = {"device": str(device), "batch_size": batch_size, "steps_before": dict(state.steps)}

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
    ctx = RunContext(
        config=config,
        state=state,
        pool=pool,
        rng=rng,
        device=device,
        batch_size=batch_size,
        out_dir=out_dir,
        say=say,
        deadline=None if seconds is None else t_start + seconds,
        t_start=t_start,
        cuda_graphs=training.cuda_graphs,
        log_every=training.log_every,
        checkpoint_every=training.checkpoint_every,
    )

    # 4. The stages still to run
    try:
        opt = _train_stages(ctx, training.max_steps)
    finally:
        pool.close()

    # 5. Save the checkpoint and export the generator
    state.next_chunk = pool.next_chunk
    wall = time.monotonic() - t_start
    session.update(wall_seconds=round(wall, 2), steps_after=dict(state.steps))
    state.sessions.append(session)
    ctx.save(opt)
    gen_dir = ctx.export()
    say(f"wrote {gen_dir} (steps {state.steps}) in {time.monotonic() - t_start:.0f} s")
    return GeneratorTrainReport(
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
        steps_per_second=ctx.rates,
    )


def _start_state(
    world: World,
    config: ToyGeneratorConfig,
    seed: int,
    out_dir: Path,
    device: torch.device,
    resume: bool,
    tokenizer,
    say: Callable[[str], None],
) -> tuple[TrainState, bool]:
    """(the state to train from, whether it continues an earlier run): OUT/checkpoint.pt, else
    the export OUT/generator/, else new models."""
    ckpt, exported = out_dir / CHECKPOINT, out_dir / GENERATOR_DIR
    resumed = resume and (ckpt.is_file() or (exported / TRAIN_FILE).is_file())
    if resume and ckpt.is_file():
        state = restore_state(load_checkpoint(ckpt), world, config, seed, out_dir, device)
    elif resumed:
        state = state_from_export(exported, world, config, seed, out_dir, device)
    else:
        state = new_state(world, config, seed, out_dir, device, tokenizer)
    if (
        resumed
        and tokenizer is not None
        and tokenizer.get_vocab() != state.generator.tokenizer.get_vocab()
    ):
        raise ValueError(
            f"{out_dir} was trained with another tokenizer than the given one; resume without "
            f"passing one (the saved one is used), or {AFRESH}."
        )
    if resumed:
        say(
            f"resuming {ckpt if ckpt.is_file() else exported}: stage {STAGES[state.stage]}, "
            f"steps {state.steps}, {sum(s['wall_seconds'] for s in state.sessions):.0f} s "
            "trained before"
        )
    return state, resumed


def _train_stages(ctx: RunContext, max_steps: int | None):
    """Run the stages from the state's current one on; returns the optimizer to checkpoint
    (None when the last stage that ran was closed)."""
    state, pool = ctx.state, ctx.pool
    opt = None
    if state.stage == 0:
        opt = _vae_stage(ctx)
    if state.stage >= 1 and pool.latents is None:  # resumed after stage A
        pool.attach_encoder(ctx.encode_latents)
    if state.stage == 1:
        opt = _tiny_decoder_stage(ctx)
    if state.stage == 2:
        opt = _unet_stage(ctx, max_steps)
    return opt


def _vae_stage(ctx: RunContext):
    """Stage A: the VAE; then the latent scaling factor and the pool's latents."""
    config, state, pool, gen = ctx.config, ctx.state, ctx.pool, ctx.state.generator
    batch_size, device = ctx.batch_size, ctx.device

    def vae_step(g: torch.Generator | None) -> Tensor:
        images = to_unit_range(pool.images[pool.batch(batch_size, g)])
        shape = (batch_size, config.latent_channels, *gen.latent_shape[1:])
        noise = torch.randn(shape, device=device, generator=g)
        return vae_loss(gen.vae, images, noise, config.kl_weight)

    params = list(gen.vae.parameters())
    opt, closed = StageRunner(ctx, "vae", vae_step, params, config.vae_lr, config.vae_steps).run()
    # SD's latent scaling: 1 / std of the latents, measured over the whole pool (whose
    # latents the next stages need anyway, so the pool is encoded once).
    state.scaling_factor = 1.0
    pool.attach_encoder(ctx.encode_latents)
    state.scaling_factor = float(1.0 / pool.latents.std())
    pool.latents.mul_(state.scaling_factor)
    gen.vae.register_to_config(scaling_factor=state.scaling_factor)
    ctx.say(f"[vae] latent scaling factor {state.scaling_factor:.4f}")
    if closed:
        state.stage, opt = 1, None
    ctx.save(opt)
    return opt


def _tiny_decoder_stage(ctx: RunContext):
    """Stage B: the tiny decoder, distilled from the VAE decoder."""
    config, state, pool, gen = ctx.config, ctx.state, ctx.pool, ctx.state.generator
    batch_size, device = ctx.batch_size, ctx.device

    def tiny_step(g: torch.Generator | None) -> Tensor:
        z = pool.latents[pool.batch(batch_size, g)]
        z = z + config.latent_jitter * torch.randn(z.shape, device=device, generator=g)
        return tiny_decoder_loss(gen.tiny_decoder, gen.vae, z, state.scaling_factor)

    params = list(gen.tiny_decoder.decoder.parameters())
    lr, cap = config.tiny_decoder_lr, config.tiny_decoder_steps
    opt, closed = StageRunner(ctx, "tiny_decoder", tiny_step, params, lr, cap).run()
    if closed:
        state.stage, opt = 2, None
    ctx.save(opt)
    return opt


def _unet_stage(ctx: RunContext, max_steps: int | None):
    """Stage C: the text encoder and the UNet, until `max_steps` UNet steps (or the time)."""
    config, pool, gen = ctx.config, ctx.pool, ctx.state.generator
    batch_size, device = ctx.batch_size, ctx.device
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
    opt, _ = StageRunner(ctx, "unet", unet_step, params, config.unet_lr, cap).run()
    return opt
