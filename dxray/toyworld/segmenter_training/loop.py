"""`train_segmenter`: the toy CLIPSeg trained on fresh scenes every step, then saved.

AdamW (no decay on biases, norms and embeddings), linear warm-up then cosine decay over the
step or time budget, whichever runs out first; bf16 autocast on CUDA. The data is
`data.sample_batch`, the loss `losses.segmentation_loss`, the save `checkpoints.save_segmenter`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from dxray.toyworld.run_settings import RunSettings
from dxray.toyworld.segmenter_training.checkpoints import (
    SegmenterTrainReport,
    continue_from,
    save_segmenter,
)
from dxray.toyworld.segmenter_training.config import ToySegmenterConfig
from dxray.toyworld.segmenter_training.data import sample_batch
from dxray.toyworld.segmenter_training.losses import segmentation_loss
from dxray.toyworld.segmenter_training.model import build_toy_segmenter
from dxray.toyworld.world import World


def train_segmenter(
    world: World,
    out_dir: str | Path,
    config: ToySegmenterConfig | None = None,
    run: RunSettings | None = None,
) -> SegmenterTrainReport:
    """Train the toy CLIPSeg of `config` (default: the zoo's) on `world` with the seed and on
    the device of `run`, and save it to `<out_dir>/segmenter`.

    Stops after `config.steps` or `config.seconds` of training, whichever comes first (a
    `seconds` budget makes the step count machine-dependent; the report records it). On CUDA
    the model trains under bf16 autocast with `config.cuda_batch_size` scenes a step. Every
    `config.log_every` steps, `run` gets a line "segmenter step N  loss L  Ts". With
    `config.init`, the weights of that saved segmenter start the run and its record is kept in
    the new one; `config.save_every` also saves along the way.
    """
    # 1. Check inputs
    config = config or ToySegmenterConfig()
    run = run if run is not None else RunSettings()
    run.use_threads()
    seed, device = run.seed, torch.device(run.device)
    on_cuda = device.type == "cuda"
    steps, seconds, save_every = config.steps, config.seconds, config.save_every
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if seconds is not None and seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    batch_size = config.cuda_batch_size if on_cuda else config.batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if save_every is not None and save_every < 1:
        raise ValueError(f"save_every must be >= 1, got {save_every}")

    # 2. Build the model and optimiser
    segmenter = build_toy_segmenter(world, config, seed=seed).to(device)
    earlier = None if config.init is None else continue_from(config.init, segmenter)
    model = segmenter.model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": other}],
        lr=config.lr,
        weight_decay=0.0,
    )
    step_seeds = np.random.SeedSequence([seed, 1]).generate_state(steps)

    def save(partial: bool) -> SegmenterTrainReport:
        """Write the model in transformers' layout, plus what made it."""
        return save_segmenter(
            segmenter,
            out_dir,
            seed=seed,
            steps=step,
            batch_size=batch_size,
            seconds=round(time.monotonic() - start, 2),
            device=str(device),
            final_loss=losses[-1][1] if losses else math.nan,
            losses=list(losses),
            config=asdict(config),
            world=world.name,
            init=earlier,
            partial=partial,
        )

    # 3. Train: fresh scenes every step
    start = time.monotonic()
    losses: list[tuple[int, float]] = []
    window: list[float] = []
    step = 0
    while step < steps:
        elapsed = time.monotonic() - start
        if seconds is not None and elapsed >= seconds:
            break
        done = max(step / steps, elapsed / seconds if seconds else 0.0)
        lr = config.lr * _lr_factor(step, done, config.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = sample_batch(world, batch_size, seed=int(step_seeds[step]), config=config)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda):
            loss = segmentation_loss(segmenter, batch, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        window.append(loss.item())
        if step % config.log_every == 0 or step == steps:
            losses.append((step, float(np.mean(window))))
            window = []
            seconds_so_far = time.monotonic() - start
            run.say(f"segmenter step {step}  loss {losses[-1][1]:.4f}  {seconds_so_far:.0f}s")
        if save_every and step % save_every == 0 and step < steps:
            model.eval()
            save(partial=True)
            model.train()
    if window:
        losses.append((step, float(np.mean(window))))
    model.eval().requires_grad_(False)
    return save(partial=False)


def _lr_factor(step: int, done: float, warmup_steps: int) -> float:
    """Linear warm-up over `warmup_steps`, then cosine from 1 to 0.05 as `done` goes 0 -> 1."""
    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    return warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, done))))
