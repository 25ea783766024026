"""The DiffExplainer loop: learn soft prompts whose rendered images maximise an objective.

B independent targets (a class or a hidden unit, each with its own seed) are optimised in one
batch: the loss is the *sum* of the rows' objectives, so under Adam each row follows exactly the
trajectory it would follow alone. Rows stop on their own (target class predicted with
probability >= `stop_prob` for `stop_patience` consecutive iterations, or a non-finite value)
and leave the batch, so the remaining rows run faster.

Read `explain` top to bottom: it is the whole algorithm.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from dxray.explain import prompt as sp
from dxray.explain.objective import Objective, evaluate_rows, target_probabilities
from dxray.explain.sampler import SamplerConfig, decode, draw_noise, sample
from dxray.models.generator import Generator

Status = Literal["converged", "max_iterations", "nan"]


@dataclass(frozen=True)
class ExplainConfig:
    iterations: int = 200
    lr: float = 0.1  # DEXTER's AdamW learning rate for soft prompts
    optimizer: Literal["adam", "adamw"] = "adamw"
    weight_decay: float = 0.0  # >0 pulls vectors toward 0, away from the token manifold
    # Regulariser: >0 penalises each vector's norm straying from the vocabulary's mean token
    # norm (squared, relative). Unbounded vectors drift to norms no real word has, and the
    # text encoder's output (and so the image) goes off the model's distribution.
    norm_weight: float = 0.0
    n_vectors: int = 4
    template: str = "a photo of {}"
    init: Literal["random", "words"] = "random"
    init_words: tuple[str, ...] = ("object",)  # used when init == "words"
    hard_prompt: bool = False  # PEZ: forward with the nearest real tokens
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    # The decoder used while optimising; the final image always uses the full VAE.
    decoder: Literal["vae", "tiny"] = "tiny"
    decode_micro_batch: int | None = None
    decoder_checkpoint: bool = False
    stop_prob: float | None = 0.9  # None: always run all iterations
    stop_patience: int = 3  # DEXTER stops after 3 consecutive hits
    nearest_k: int = 3


@dataclass
class ExplainResult:
    """Per-row outcome of one batch. Tensors are on the CPU."""

    images: Tensor  # [B, 3, H, W] in [0, 1], final render with the full VAE
    vectors: Tensor  # [B, k, d] learned soft-prompt vectors
    objective: Tensor  # [B] objective on the final images
    probability: Tensor  # [B] target-class probability on the final images (NaN: no class)
    steps: Tensor  # [B] iterations run
    status: list[Status]
    errors: list[str | None]
    words: list[list[list[tuple[str, float]]]]  # row -> vector -> nearest (word, cosine)
    history: dict[str, list[list[float]]]  # "objective", "probability": row -> per iteration
    seconds: float = 0.0

    @property
    def converged(self) -> Tensor:
        return torch.tensor([s == "converged" for s in self.status])


def explain(
    generator: Generator,
    classifier,
    objectives: list[Objective],
    seeds: list[int],
    config: ExplainConfig = ExplainConfig(),
    *,
    progress: Callable[[int, int], None] | None = None,
    transform: Callable[[Tensor], Tensor] | None = None,
) -> ExplainResult:
    """Optimise one soft prompt per row; row i maximises `objectives[i]` with noise `seeds[i]`.

    `classifier` needs `outputs(images, layers) -> ClassifierOutput` (dxray.models.classifier).
    `progress(iteration, active_rows)` is called once per iteration. `transform(images)`, if
    given, is what the classifier sees of every rendered image (e.g. `dxray.shortcuts.erase`
    removes the objects, so that the class can only be reached through the rest); the result
    holds the rendered images, untransformed.
    """
    see = transform or (lambda images: images)
    started = time.perf_counter()
    # 1. Check inputs
    if len(objectives) != len(seeds) or not objectives:
        raise ValueError(
            f"need one seed per objective, got {len(objectives)} objectives, {len(seeds)} seeds"
        )
    if config.iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {config.iterations}")
    for objective in objectives:  # bad targets fail here, with the classifier's own message
        for index in objective.classes():
            classifier.class_index(index)
        for layer, channel in objective.units():
            classifier.check_unit(layer, channel)
    n_rows, device = len(objectives), generator.device
    layers = set().union(*(o.layers() for o in objectives))
    tokenizer, text_encoder = generator.tokenizer, generator.text_encoder
    table = sp.token_embeddings(text_encoder)
    specials = sp.unmapped_ids(tokenizer, table.shape[0])
    typical_norm = table.detach().float().norm(dim=-1).mean()

    # 2. Encode the template once; draw every row's noise up front (one generator per row)
    layout = sp.layout(tokenizer, config.template, config.n_vectors)
    noise = draw_noise(generator.latent_shape, config.sampler.steps, seeds).to(device)
    uncond = sp.encode_text(text_encoder, tokenizer, [""])

    def render(vectors: Tensor, rows: Tensor, tiny: bool) -> Tensor:
        if config.hard_prompt:
            vectors = sp.project_to_vocab(vectors, table, specials)
        cond = sp.encode(text_encoder, layout, vectors)
        latents = sample(generator, cond, noise[rows], config.sampler, uncond)
        return decode(
            generator,
            latents,
            tiny=tiny,
            checkpoint=config.decoder_checkpoint,
            micro_batch=config.decode_micro_batch,
        )

    # 3. Soft prompt: one row of k vectors per target
    if config.init == "words":
        row = sp.init_from_words(tokenizer, text_encoder, list(config.init_words), config.n_vectors)
        start = row.expand(n_rows, -1, -1).clone()
    else:
        start = torch.stack([sp.init_random(text_encoder, config.n_vectors, s) for s in seeds])
    final_vectors = start.clone()

    # 4. Optimiser over the rows still running (`active` maps batch position -> row)
    active = torch.arange(n_rows, device=device)
    params = torch.nn.Parameter(start.float())
    optimizer = _make_optimizer(params, config)

    # 5. Optimisation loop
    history = {"objective": [[] for _ in range(n_rows)], "probability": [[] for _ in range(n_rows)]}
    steps = torch.zeros(n_rows, dtype=torch.long)
    status: list[Status] = ["max_iterations"] * n_rows
    errors: list[str | None] = [None] * n_rows
    streak = torch.zeros(n_rows, dtype=torch.long)
    for iteration in range(config.iterations):
        rows = active.tolist()
        objs = [objectives[r] for r in rows]
        # 5a. prompt -> images -> classifier -> one objective value per row
        images = render(params.to(table.dtype), active, tiny=config.decoder == "tiny")
        out = classifier.outputs(see(images), layers)
        values = evaluate_rows(objs, out)
        probs = target_probabilities(objs, out.logits)
        # 5b. gradient ascent on the sum (rows independent); a non-finite row is left out
        gain = values.float()
        if config.norm_weight:
            drift = (params.norm(dim=-1) / typical_norm - 1).square().sum(-1)
            gain = gain - config.norm_weight * drift
        finite = torch.isfinite(gain.detach())
        optimizer.zero_grad(set_to_none=True)
        if finite.any():
            (-gain[finite].sum()).backward()
        grad_ok = (
            torch.isfinite(params.grad).flatten(1).all(1) if params.grad is not None else finite
        )
        # 5c. bookkeeping: history, NaN guard, early stop
        stop = torch.zeros(len(rows), dtype=torch.bool)
        for pos, r in enumerate(rows):
            steps[r] = iteration + 1
            history["objective"][r].append(float(values[pos].detach()))
            history["probability"][r].append(float(probs[pos]))
            if not (finite[pos] and grad_ok[pos]):
                status[r], stop[pos] = "nan", True
                what = "objective" if not finite[pos] else "gradient"
                errors[r] = f"non-finite {what} at iteration {iteration}; row stopped"
                continue
            hit = config.stop_prob is not None and float(probs[pos]) >= config.stop_prob
            streak[r] = streak[r] + 1 if hit else 0
            if streak[r] >= config.stop_patience:
                status[r], stop[pos] = "converged", True
        # A row judged on cheap tiny-decoder images stops only if its full-VAE image (the one
        # the user will see) also meets the criterion; otherwise its streak starts over.
        if config.decoder == "tiny" and generator.tiny_decoder is not None:
            candidates = [
                pos for pos in stop.nonzero().flatten().tolist() if status[rows[pos]] == "converged"
            ]
            if candidates:
                index = torch.tensor(candidates, device=device)
                with torch.no_grad():
                    check = render(
                        params.detach()[index].to(table.dtype), active[index], tiny=False
                    )
                    logits = classifier.outputs(see(check)).logits
                    full = target_probabilities([objs[pos] for pos in candidates], logits)
                for i, pos in enumerate(candidates):
                    if float(full[i]) < config.stop_prob:
                        status[rows[pos]], stop[pos], streak[rows[pos]] = "max_iterations", False, 0
        # 5d. finished rows keep the vectors that met the criterion; the rest take a step
        for pos in stop.nonzero().flatten().tolist():
            final_vectors[rows[pos]] = params.detach()[pos].to(final_vectors.dtype)
        if stop.all():
            active = active[:0]
            break
        if params.grad is not None:
            params.grad[~grad_ok] = 0
        optimizer.step()
        if stop.any():
            params, optimizer = _keep_rows(params, optimizer, ~stop.to(params.device), config)
            active = active[~stop.to(device)]
        if progress is not None:
            progress(iteration + 1, len(active))
    for pos, r in enumerate(active.tolist()):
        final_vectors[r] = params.detach()[pos].to(final_vectors.dtype)

    # 6. Final render with the full VAE, and the classifier's view of it
    with torch.no_grad():
        everyone = torch.arange(n_rows, device=device)
        images = render(final_vectors.to(device=device, dtype=table.dtype), everyone, tiny=False)
        out = classifier.outputs(see(images), layers)
        objective = evaluate_rows(objectives, out).float().cpu()
        probability = target_probabilities(objectives, out.logits).cpu()

    # 7. Textual explanation: nearest vocabulary words of each learned vector
    words = sp.nearest_words(
        tokenizer, text_encoder, final_vectors.to(table.dtype), config.nearest_k
    )
    return ExplainResult(
        images=images.float().cpu(),
        vectors=final_vectors.float().cpu(),
        objective=objective,
        probability=probability,
        steps=steps,
        status=status,
        errors=errors,
        words=words,
        history=history,
        seconds=time.perf_counter() - started,
    )


def _make_optimizer(params: torch.nn.Parameter, config: ExplainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW([params], lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam([params], lr=config.lr, weight_decay=config.weight_decay)


def _keep_rows(params, optimizer, keep: Tensor, config: ExplainConfig):
    """Drop finished rows from the parameter and the optimiser's moment estimates."""
    kept = torch.nn.Parameter(params.detach()[keep].clone())
    fresh = _make_optimizer(kept, config)
    state = optimizer.state.get(params, {})
    fresh.state[kept] = {
        name: value[keep].clone() if torch.is_tensor(value) and value.dim() > 0 else value
        for name, value in state.items()
    }
    return kept, fresh
