"""One training stage of the toy generator, step by step: `StageRunner`.

A stage trains some modules (`checkpoints.trained_modules`) with AdamW on a step function
(`step_fn(generator) -> loss`) until its step cap or its share of the call's time runs out:
learning-rate warm-up, EMA of the UNet stage's weights, optional CUDA graphs, a log line every
`log_every` steps and a checkpoint (and, in the UNet stage, an export) every
`checkpoint_every`. `RunContext` is what all stages of one `train_generator` call share.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from dxray.toyworld.generator_training.checkpoints import (
    TrainState,
    export_generator,
    save_checkpoint,
    trained_modules,
)
from dxray.toyworld.generator_training.config import STAGES, ToyGeneratorConfig
from dxray.toyworld.generator_training.pool import ScenePool, to_unit_range

GRAPH_WARMUP_STEPS = 3  # eager steps before a CUDA graph capture


@dataclass
class RunContext:
    """What the stages of one `train_generator` call share: the state they advance, the scene
    pool and RNG they draw from, and the call's settings."""

    config: ToyGeneratorConfig
    state: TrainState
    pool: ScenePool
    rng: torch.Generator
    device: torch.device
    batch_size: int
    out_dir: Path
    say: Callable[[str], None]
    deadline: float | None  # time.monotonic() at which the call stops; None: no time limit
    t_start: float  # time.monotonic() at the call's start
    cuda_graphs: bool
    log_every: int
    checkpoint_every: int
    rates: dict[str, float] = field(default_factory=dict)  # stage -> steps/s in this call

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        """bf16 autocast on CUDA; nothing on the CPU."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.on_cuda else nullcontext()

    def encode_latents(self, images_uint8: Tensor) -> Tensor:
        """Scaled VAE latents (posterior means) of uint8 scenes."""
        with torch.no_grad(), self.autocast():
            mean = self.state.generator.vae.encode(to_unit_range(images_uint8)).latent_dist.mean
        return mean.float() * self.state.scaling_factor

    def save(self, optimizer) -> None:
        """Write the checkpoint (with `optimizer`, the current stage's, or None)."""
        save_checkpoint(self.state, self.out_dir, self.rng, optimizer)

    def export(self) -> Path:
        """Write the export, OUT/generator/."""
        return export_generator(
            self.state, self.out_dir, self.device, {"batch_size": self.batch_size}
        )


def make_optimizer(
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


class StageRunner:
    """Steps of one stage until its step cap or time share; checkpoints and logs.

    `step_fn(g)` returns the loss of one fresh batch drawn with the torch generator `g` (None
    inside a CUDA graph, which draws from the default CUDA generator). Building the runner
    makes the optimizer (from the state's saved one, if any), the UNet stage's EMA, and puts
    the stage's modules in training mode; `run()` trains and returns (optimizer, closed).
    """

    def __init__(
        self, ctx: RunContext, stage: str, step_fn: Callable, params: list, lr: float, cap: int
    ):
        self.ctx, self.stage, self.step_fn = ctx, stage, step_fn
        self.params, self.lr, self.cap = params, lr, cap
        state, config = ctx.state, ctx.config
        i = STAGES.index(stage)
        self.budget: float | None = None  # this stage's share of the time left, in seconds
        if ctx.deadline is not None:
            weights = config.stage_time_split
            later = sum(weights[i:]) or 1.0
            self.budget = max(0.0, ctx.deadline - time.monotonic()) * weights[i] / later
        self.graphed = ctx.cuda_graphs and ctx.on_cuda  # False again if a capture fails
        self.opt = make_optimizer(params, lr, ctx.device, state.optimizer, capturable=self.graphed)
        state.optimizer = None
        if stage == "unet" and state.ema is None:
            gen = state.generator
            state.ema = {
                f"{prefix}.{n}": p.detach().clone()
                for prefix, m in (("unet", gen.unet), ("text_encoder", gen.text_encoder))
                for n, p in m.named_parameters()
            }
        self.ema_list = list(state.ema.values()) if stage == "unet" else []
        self.modules = trained_modules(state, stage)
        for m in self.modules.values():
            m.train().requires_grad_(True)
        ctx.say(
            f"[{stage}] from step {state.steps[stage]}"
            + (f" to {cap}" if cap < sys.maxsize else "")
            + (f", time share {self.budget:.0f} s" if self.budget is not None else "")
            + f", batch {ctx.batch_size}, lr {lr:g}"
            + (", CUDA graphs" if self.graphed else "")
        )
        # CUDA graphs: a few eager steps on a side stream (lazy initialisation, cuDNN
        # autotuning), then the whole step (sampling, forward, backward, clipping, AdamW) is
        # captured once and replayed without per-kernel CPU launch costs. Random draws inside
        # use the default CUDA generator, which graphs advance on every replay. Measured on an
        # H100 at batch 1024: the UNet step is GPU-bound (~73 ms of kernels, mostly norms and
        # autocast casts), so graphs gain ~15% (11 -> 13 steps/s).
        self.graph: torch.cuda.CUDAGraph | None = None
        self.graph_loss: Tensor | None = None
        self.side = torch.cuda.Stream() if self.graphed else None
        # One-off costs are not charged to the time share: the first step (CUDA and cuDNN
        # initialisation, autotuning: 12 s for the VAE at batch 1024 on an H100, which once
        # ended the VAE stage after one step) and a graph capture. The deadline still holds.
        self.one_off = 0.0
        self.t_stage = time.monotonic()  # reset when `run` starts

    def set_lr(self, step: int) -> None:
        value = self.lr * min(1.0, (step + 1) / max(1, self.ctx.config.warmup_steps))
        for group in self.opt.param_groups:
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(value)  # in place: a captured graph reads this tensor
            else:
                group["lr"] = value

    def eager_step(self) -> Tensor:
        with self.ctx.autocast():
            loss = self.step_fn(self.ctx.rng)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.ctx.config.grad_clip)
        self.opt.step()
        return loss.detach()  # no autograd graph kept alive (it would upset a capture)

    def capture(self) -> None:
        """Capture one whole training step as a CUDA graph; on failure, train eagerly."""
        ctx, opt = self.ctx, self.opt
        torch.cuda.synchronize(ctx.device)
        seed = int(torch.randint(0, 2**62, (1,), generator=ctx.rng, device=ctx.device))
        torch.cuda.manual_seed(seed)
        opt.zero_grad(set_to_none=True)
        try:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                    loss = self.step_fn(None)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, ctx.config.grad_clip)
                opt.step()
            self.graph, self.graph_loss = g, loss
        except Exception as err:  # noqa: BLE001 - a failed capture must not end the run
            ctx.say(f"[{self.stage}] CUDA graph capture failed, training eagerly: {err!r}"[:300])
            self.graphed = False
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize(ctx.device)

    def time_left(self) -> bool:
        if self.budget is None:
            return True
        now = time.monotonic()
        return now - self.t_stage < self.budget + self.one_off and now < self.ctx.deadline

    def timed_once(self, fn):
        """fn(), its time counted as a one-off cost (not charged to the time share)."""
        on_cuda, device = self.ctx.on_cuda, self.ctx.device
        if on_cuda:
            torch.cuda.synchronize(device)
        t0 = time.monotonic()
        result = fn()
        if on_cuda:
            torch.cuda.synchronize(device)
        self.one_off += time.monotonic() - t0
        return result

    def one_step(self) -> Tensor:
        if self.graph is not None:
            self.graph.replay()
            return self.graph_loss
        if self.graphed:  # warm-up steps before the capture, on a side stream
            self.side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side):
                loss = self.eager_step()
            torch.cuda.current_stream().wait_stream(self.side)
            return loss
        return self.eager_step()

    def run(self):
        """Train until the cap or the time share; returns (optimizer, closed): closed when the
        stage is finished (the next may start), else the optimizer is the one to save."""
        ctx, state, stage, cap = self.ctx, self.ctx.state, self.stage, self.cap
        device, batch_size = ctx.device, ctx.batch_size
        self.t_stage = t_stage = time.monotonic()
        n_done, seconds_before = 0, state.seconds[stage]
        t_log, n_log, running = t_stage, 0, torch.zeros((), device=device)
        while state.steps[stage] < cap and self.time_left():
            step = state.steps[stage]
            self.set_lr(step)
            if self.graphed and self.graph is None and n_done >= GRAPH_WARMUP_STEPS:
                self.timed_once(self.capture)
            loss = self.timed_once(self.one_step) if n_done == 0 else self.one_step()
            if self.ema_list:
                decay = min(ctx.config.ema_decay, (1 + step) / (10 + step))
                with torch.no_grad():
                    torch._foreach_lerp_(self.ema_list, self.params, 1.0 - decay)
            running += loss.detach()
            state.steps[stage] += 1
            n_done += 1
            n_log += 1
            if ctx.pool.poll():
                state.next_chunk = ctx.pool.next_chunk
            if state.steps[stage] % ctx.log_every == 0 or state.steps[stage] == cap:
                now = time.monotonic()
                mean = running.item() / n_log
                state.losses[stage].append((state.steps[stage], mean))
                ctx.say(
                    f"[{stage}] step {state.steps[stage]:6d}  loss {mean:.4f}  "
                    f"{n_log / (now - t_log):6.1f} steps/s  "
                    f"{n_log * batch_size / (now - t_log):8.0f} samples/s  "
                    f"{now - ctx.t_start:6.0f} s"
                )
                t_log, n_log, running = now, 0, torch.zeros((), device=device)
            if state.steps[stage] % ctx.checkpoint_every == 0:
                state.seconds[stage] = seconds_before + time.monotonic() - t_stage
                ctx.save(self.opt)
                if stage == "unet":
                    ctx.export()
        self.graph = self.graph_loss = None
        self.opt.zero_grad(set_to_none=True)
        if n_log:  # the tail since the last log line
            state.losses[stage].append((state.steps[stage], running.item() / n_log))
        if ctx.on_cuda:
            torch.cuda.synchronize(device)
        elapsed = time.monotonic() - t_stage
        state.seconds[stage] = seconds_before + elapsed
        ctx.rates[stage] = n_done / elapsed if elapsed > 0 else 0.0
        for m in self.modules.values():
            m.eval().requires_grad_(False)
        ctx.say(f"[{stage}] stopped at step {state.steps[stage]} after {elapsed:.0f} s")
        # A capped stage closes at its cap, or when its time share ran out after real work
        # (a zero budget, e.g. `seconds=0` to re-export, must not close an untrained stage).
        closed = state.steps[stage] >= cap or (self.budget is not None and n_done > 0)
        return self.opt, closed
