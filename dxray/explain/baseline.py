"""Pixel-space activation maximisation: the classic feature-visualisation baseline.

DiffExplainer optimises a soft prompt so a diffusion model renders images that maximise an
objective. The method it is compared against (Olah et al. 2017, "Feature Visualization")
optimises the image itself. Three small ideas make that work, each a helper below:

- parameterisation: the image is the sigmoid of a colour-decorrelated, 1/f-scaled Fourier
  spectrum (`FourierImage`), or of plain pixels for ablation (`PixelImage`);
- transforms: every step sees a randomly shifted, scaled and rotated copy (`random_affine`);
- the loop: Adam on the parameterisation, one independent row per (objective, seed).

Rows never share randomness or statistics, so a row batched gives the same image as alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from dxray.explain.objective import Objective, evaluate_rows, target_probabilities


@dataclass
class BaselineConfig:
    iterations: int = 256
    lr: float = 0.05
    size: int | None = None  # image side; None: the classifier's input size
    # 1/f-scaled Fourier parameterisation: plain pixels let Adam pile up high-frequency noise
    # that excites the classifier but shows nothing; False is for ablation.
    fourier: bool = True
    # Optimise in a space where the colour channels are uncorrelated (ImageNet's colour PCA),
    # so a step does not push one channel against the natural colour statistics.
    decorrelate_colour: bool = True
    # Random shift (px), scale and rotation before each forward: a pattern that survives all of
    # them is a feature, not an adversarial pixel arrangement tuned to one exact alignment.
    jitter: int = 4
    scales: tuple[float, ...] = (1.0, 0.975, 1.025, 0.95, 1.05)
    rotate_degrees: float = 5.0
    # Early stop per row, the diffusion engine's rule: the target class probability (measured on
    # the transformed image being optimised) is >= stop_prob for stop_patience iterations in a
    # row. None: always run all iterations. Rows without a target class never stop early.
    stop_prob: float | None = 0.9
    stop_patience: int = 3


@dataclass
class BaselineResult:
    images: Tensor  # [B, 3, H, W] in [0, 1] on the CPU, final, untransformed (H = W = size)
    objective: Tensor  # [B] objective of the final image
    probability: Tensor  # [B] target-class probability of the final image (NaN if none)
    steps: Tensor  # [B] iterations the row took part in (= len of its history)
    converged: Tensor  # [B] bool: stopped early by the stop rule
    # "objective", "probability": per row, one value per iteration it took part in (measured on
    # the transformed image of that iteration, before its update)
    history: dict[str, list[list[float]]] = field(default_factory=dict)


# --- Parameterisation ----------------------------------------------------------------------


def colour_correlation() -> Tensor:
    """Square root of ImageNet's RGB covariance, [3, 3]: maps decorrelated to RGB coordinates.

    Built from the colour PCA of Krizhevsky et al. 2012 (eigenvectors times the square roots of
    the eigenvalues), scaled so the principal (luminance) direction has unit length.
    """
    eigenvalues = torch.tensor([0.2175, 0.0188, 0.0045])
    eigenvectors = torch.tensor(
        [
            [-0.5675, 0.7192, 0.4009],
            [-0.5808, -0.0045, -0.8140],
            [-0.5836, -0.6948, 0.4203],
        ]
    )
    root = eigenvectors * eigenvalues.sqrt()
    return root / eigenvalues[0].sqrt()


def _to_rgb(x: Tensor, decorrelate_colour: bool) -> Tensor:
    """[B, 3, H, W] unbounded -> RGB in [0, 1]."""
    if decorrelate_colour:
        x = torch.einsum("ij,bjhw->bihw", colour_correlation().to(x), x)
    return torch.sigmoid(x)


def spectrum_scale(height: int, width: int) -> Tensor:
    """Per-frequency gain 1/f for an rfft2 spectrum, [height, width // 2 + 1].

    Natural images have roughly 1/f amplitude spectra. Scaling the parameters by 1/f makes a step
    of the same size in every coefficient move low frequencies most, so the optimiser builds
    broad shapes first instead of pixel noise. The gain is normalised to unit RMS, so a pixel
    moves by about as much per step as under the plain-pixel parameterisation.
    """
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    frequency = (fx.square() + fy.square()).sqrt()
    # The DC term has f = 0: cap its gain at that of the lowest non-zero frequency.
    gain = 1.0 / frequency.clamp(min=1.0 / max(height, width))
    return gain / gain.square().mean().sqrt()


def _row_normal(generators: list[torch.Generator], shape: tuple[int, ...], std: float) -> Tensor:
    """One standard-normal draw per row, each from its own generator."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators]) * std


class FourierImage:
    """An image batch as the inverse FFT of a 1/f-scaled spectrum (then colour, then sigmoid).

    `param` ([B, 3, H, W // 2 + 1, 2]: real and imaginary parts) is the leaf to optimise.
    """

    def __init__(self, param: Tensor, size: tuple[int, int], decorrelate_colour: bool = True):
        self.param = param
        self.size = size
        self.decorrelate_colour = decorrelate_colour
        self.scale = spectrum_scale(*size).to(param.device)

    @classmethod
    def random(
        cls,
        generators: list[torch.Generator],
        size: tuple[int, int],
        *,
        std: float = 0.01,
        decorrelate_colour: bool = True,
        device: torch.device | str | None = None,
    ) -> FourierImage:
        height, width = size
        param = _row_normal(generators, (3, height, width // 2 + 1, 2), std)
        return cls(param.to(device).requires_grad_(), size, decorrelate_colour)

    def __call__(self) -> Tensor:
        spectrum = torch.complex(self.param[..., 0], self.param[..., 1]) * self.scale
        x = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")
        return _to_rgb(x, self.decorrelate_colour)


class PixelImage:
    """An image batch as sigmoid(colour(pixels)): the ablation without the Fourier basis."""

    def __init__(self, param: Tensor, decorrelate_colour: bool = True):
        self.param = param
        self.decorrelate_colour = decorrelate_colour

    @classmethod
    def random(
        cls,
        generators: list[torch.Generator],
        size: tuple[int, int],
        *,
        std: float = 0.01,
        decorrelate_colour: bool = True,
        device: torch.device | str | None = None,
    ) -> PixelImage:
        param = _row_normal(generators, (3, *size), std)
        return cls(param.to(device).requires_grad_(), decorrelate_colour)

    def __call__(self) -> Tensor:
        return _to_rgb(self.param, self.decorrelate_colour)


# --- Transforms ----------------------------------------------------------------------------


def random_affine(
    images: Tensor,
    generators: list[torch.Generator],
    *,
    jitter: int,
    scales: tuple[float, ...],
    rotate_degrees: float,
) -> Tensor:
    """Shift (whole pixels), scale and rotate each row by its own random draw; same size out.

    Every row draws the same amount from its generator whatever the settings, so its random
    stream does not depend on the config or on the other rows.
    """
    _, _, height, width = images.shape
    thetas = []
    for g in generators:
        dx, dy = torch.randint(-jitter, jitter + 1, (2,), generator=g).tolist()
        scale = scales[int(torch.randint(len(scales), (), generator=g))]
        angle = math.radians(rotate_degrees * (2 * float(torch.rand((), generator=g)) - 1))
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        # affine_grid maps output to input coordinates in [-1, 1], where a pixel is 2 / side
        # wide: the aspect ratios keep a rotation of a non-square image rigid in pixels.
        thetas.append(
            [
                [cos, -sin * height / width, 2 * dx / width],
                [sin * width / height, cos, 2 * dy / height],
            ]
        )
    theta = torch.tensor(thetas, dtype=images.dtype, device=images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Reflection, not a constant border: a flat border would be a feature of its own.
    return F.grid_sample(images, grid, padding_mode="reflection", align_corners=False)


# --- The loop ------------------------------------------------------------------------------


def _check_inputs(objectives: list[Objective], seeds: list[int], config: BaselineConfig) -> None:
    if len(seeds) != len(objectives):
        raise ValueError(f"got {len(objectives)} objectives but {len(seeds)} seeds: one per row")
    if not objectives:
        raise ValueError("no objectives: pass at least one row")
    if config.iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {config.iterations}")
    if config.lr <= 0:
        raise ValueError(f"lr must be > 0, got {config.lr}")
    if config.size is not None and config.size < 2:
        raise ValueError(f"size must be >= 2 px (or None: the classifier's), got {config.size}")
    if config.stop_patience < 1:
        raise ValueError(f"stop_patience must be >= 1, got {config.stop_patience}")
    if not config.scales or min(config.scales) <= 0:
        raise ValueError(f"scales must be non-empty and positive, got {config.scales}")
    if config.jitter < 0:
        raise ValueError(f"jitter must be >= 0 px, got {config.jitter}")


def activation_maximisation(
    classifier,
    objectives: list[Objective],
    *,
    seeds: list[int],
    config: BaselineConfig = BaselineConfig(),
    device: torch.device | str | None = None,
) -> BaselineResult:
    """Optimise one image per (objective, seed) row to maximise the row's objective.

    `classifier` needs `outputs(images, layers) -> ClassifierOutput` (images in [0, 1], any size)
    and `preprocessing.input_size`. Its mode is left as it is: use eval mode, or batch norm
    couples the rows.
    """
    # 1. Check inputs
    _check_inputs(objectives, seeds, config)

    # 2. Prepare per-row randomness and the layers to hook
    batch = len(objectives)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]  # CPU: same on any device
    layers = sorted(set().union(*(o.layers() for o in objectives)))
    if config.size is None:
        size = tuple(classifier.preprocessing.input_size)
    else:
        size = (config.size, config.size)

    # 3. Prepare the image parameterisation
    make = FourierImage if config.fourier else PixelImage
    image = make.random(
        generators, size, decorrelate_colour=config.decorrelate_colour, device=device
    )
    optimizer = torch.optim.Adam([image.param], lr=config.lr)

    # 4. Prepare the per-row bookkeeping
    steps = torch.zeros(batch, dtype=torch.long)
    streak = torch.zeros(batch, dtype=torch.long)
    converged = torch.zeros(batch, dtype=torch.bool)
    history: dict[str, list[list[float]]] = {"objective": [[] for _ in range(batch)]}
    history["probability"] = [[] for _ in range(batch)]

    # 5. Optimisation loop
    for _ in range(config.iterations):
        active = (~converged).nonzero().flatten().tolist()
        with torch.enable_grad():
            views = random_affine(
                image()[active],
                [generators[i] for i in active],
                jitter=config.jitter,
                scales=config.scales,
                rotate_degrees=config.rotate_degrees,
            )
            out = classifier.outputs(views, layers)
            values = evaluate_rows([objectives[i] for i in active], out)
            # A sum, not a mean: Adam works per element, so each row steps as it would alone.
            (grad,) = torch.autograd.grad(-values.sum(), [image.param])
        probs = target_probabilities([objectives[i] for i in active], out.logits)

        for value, prob, i in zip(values.tolist(), probs.tolist(), active, strict=True):
            history["objective"][i].append(value)
            history["probability"][i].append(prob)
            steps[i] += 1
            hit = config.stop_prob is not None and prob >= config.stop_prob  # NaN: never
            streak[i] = streak[i] + 1 if hit else 0
            converged[i] = bool(streak[i] >= config.stop_patience)
        if converged.all():
            break

        # Frozen rows: no gradient, and their value restored after the step, because Adam's
        # momentum would otherwise keep moving them.
        frozen = converged.to(image.param.device)
        kept = image.param.detach()[frozen].clone()
        image.param.grad = grad.masked_fill(frozen.view(-1, *[1] * (grad.dim() - 1)), 0.0)
        optimizer.step()
        with torch.no_grad():
            image.param[frozen] = kept

    # 6. Score the final, untransformed images
    with torch.no_grad():
        images = image()
        out = classifier.outputs(images, layers)
        objective = evaluate_rows(objectives, out).float().cpu()
        probability = target_probabilities(objectives, out.logits).cpu()

    return BaselineResult(
        images=images.float().cpu(),
        objective=objective,
        probability=probability,
        steps=steps,
        converged=converged,
        history=history,
    )
