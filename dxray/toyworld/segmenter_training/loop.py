"""`train_segmenter`: the toy CLIPSeg trained on fresh scenes every step, then saved.

AdamW (no decay on biases, norms and embeddings), linear warm-up then cosine decay over the
step or time budget, whichever runs out first; bf16 autocast on CUDA. The data is
`data.sample_batch`, the loss `losses.segmentation_loss`, the save `checkpoints.save_segmenter`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

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
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Callable[[dict], None] | None = None,
    steps: int | None = None,
    seconds: float | None = None,
    batch_size: int | None = None,
    init: str | Path | None = None,
    save_every: int | None = None,
) -> SegmenterTrainReport:
    """Train the toy CLIPSeg of `config` (default: the zoo's) on `world` and save it to
    `<out_dir>/segmenter`.

    `init`: a saved toy segmenter to continue from (same config): its weights start the run,
    the optimiser and schedule start afresh, and its record is kept in the new report. Use
    another `seed` than the earlier run's, or the scenes repeat.

    Stops after `steps` (default `config.steps`) or `seconds` of training, whichever comes
    first; the learning rate decays over whichever budget runs out first, so a time-limited run
    still ends annealed (a `seconds` budget makes the step count machine-dependent; the report
    records it). On CUDA the model trains under bf16 autocast with `config.cuda_batch_size`.
    `progress` is called every `config.log_every` steps with {"step", "loss", "lr", "elapsed"}.
    `save_every`: also save every that many steps (same place, its record marked "partial"), so
    a killed run leaves a segmenter that `init` can continue and the gates can judge.
    """
    # 1. Check inputs
    config = config or ToySegmenterConfig()
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    steps = config.steps if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if seconds is not None and seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if batch_size is None:
        batch_size = config.cuda_batch_size if on_cuda else config.batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if save_every is not None and save_every < 1:
        raise ValueError(f"save_every must be >= 1, got {save_every}")

    # 2. Build the model and optimiser
    segmenter = build_toy_segmenter(world, config, seed=seed).to(device)
    earlier = None if init is None else continue_from(init, segmenter)
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
            if progress is not None:
                progress(
                    {
                        "step": step,
                        "loss": losses[-1][1],
                        "lr": lr,
                        "elapsed": time.monotonic() - start,
                    }
                )
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
