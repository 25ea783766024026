import pytest
import torch
from torch import nn

from dxray.explain.baseline import (
    BaselineConfig,
    FourierImage,
    PixelImage,
    activation_maximisation,
    random_affine,
)
from dxray.explain.objective import ClassCE, ClassLogit, Unit
from dxray.models.classifier import Classifier, Preprocessing


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU()
        )
        self.head = nn.Linear(8, num_classes)
        # Default init leaves a net this small nearly blind to its input; these gains make its
        # logits move within a few dozen steps.
        for conv in (self.body[0], self.body[2]):
            nn.init.kaiming_normal_(conv.weight)
        nn.init.normal_(self.head.weight, std=2.0)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


@pytest.fixture
def classifier():
    torch.manual_seed(0)
    preprocessing = Preprocessing(input_size=(16, 16), mean=(0.5,) * 3, std=(0.5,) * 3)
    return Classifier(TinyNet().eval(), preprocessing, class_names=["a", "b", "c"])


def _config(**overrides) -> BaselineConfig:
    # 1 px jitter: the default 4 px is a quarter of these 16 px images.
    defaults = {"iterations": 12, "lr": 0.1, "jitter": 1, "stop_prob": None}
    return BaselineConfig(**{**defaults, **overrides})


@pytest.mark.parametrize("fourier", [True, False])
def test_objective_rises(classifier, fourier):
    objectives = [ClassLogit(0), ClassLogit(2), Unit("body.3", 5)]
    result = activation_maximisation(
        classifier, objectives, seeds=[0, 1, 2], config=_config(fourier=fourier)
    )
    for row in result.history["objective"]:
        assert len(row) == 12
        assert row[-1] > row[0] + 0.1
    assert result.images.shape == (3, 3, 16, 16)
    assert result.steps.tolist() == [12, 12, 12]
    assert not result.converged.any()
    assert torch.isnan(result.probability[2]) and not torch.isnan(result.probability[:2]).any()


def test_batched_equals_alone(classifier):
    objectives = [ClassLogit(0), ClassLogit(1), Unit("body.3", 2)]
    seeds = [3, 4, 5]
    config = _config(iterations=8)
    batched = activation_maximisation(classifier, objectives, seeds=seeds, config=config)
    for i in range(3):
        alone = activation_maximisation(
            classifier, [objectives[i]], seeds=[seeds[i]], config=config
        )
        torch.testing.assert_close(batched.images[i], alone.images[0], atol=1e-5, rtol=0)
        assert batched.history["objective"][i] == pytest.approx(alone.history["objective"][0])
    # Different seeds give different images: the comparison above is not vacuous.
    assert not torch.allclose(batched.images[0], batched.images[1], atol=1e-3)


def test_early_stop_freezes_the_row(classifier):
    # Row 0 has a reachable target (its log-probability: raising a logit alone can raise the
    # others more); row 1, a hidden unit, has no target class and runs to the end.
    objectives = [ClassCE(1), Unit("body.3", 5)]
    config = _config(iterations=30, stop_prob=0.6, stop_patience=2)
    short = activation_maximisation(classifier, objectives, seeds=[0, 1], config=config)
    steps = int(short.steps[0])
    assert short.converged.tolist() == [True, False]
    assert steps < 30 and short.steps[1] == 30
    assert len(short.history["objective"][0]) == steps
    assert all(p >= 0.6 for p in short.history["probability"][0][-2:])

    longer = activation_maximisation(
        classifier,
        objectives,
        seeds=[0, 1],
        config=_config(iterations=40, stop_prob=0.6, stop_patience=2),
    )
    # The stopped row kept its image while the other row went on changing.
    assert torch.equal(longer.images[0], short.images[0])
    assert not torch.allclose(longer.images[1], short.images[1], atol=1e-4)


def _band_energy(images: torch.Tensor) -> tuple[float, float]:
    """Mean power per coefficient at low (f < 0.15) and high (f > 0.35) frequencies."""
    x = images - images.mean((-2, -1), keepdim=True)
    power = torch.fft.fft2(x).abs().square().mean((0, 1))
    fy = torch.fft.fftfreq(x.shape[-2])[:, None]
    fx = torch.fft.fftfreq(x.shape[-1])[None, :]
    f = (fx.square() + fy.square()).sqrt()
    return power[(f > 0) & (f < 0.15)].mean().item(), power[f > 0.35].mean().item()


def test_fourier_image_has_a_decaying_spectrum():
    generators = [torch.Generator().manual_seed(s) for s in range(4)]
    image = FourierImage.random(generators, (32, 24))
    images = image()
    assert images.shape == (4, 3, 32, 24)
    assert images.min() >= 0 and images.max() <= 1
    low, high = _band_energy(images)
    assert low > 20 * high

    # The same draw without the 1/f scaling (plain pixels) is white: no decay.
    generators = [torch.Generator().manual_seed(s) for s in range(4)]
    low, high = _band_energy(PixelImage.random(generators, (32, 24))())
    assert 0.5 < low / high < 2


def test_fourier_image_gradient_reaches_the_spectrum():
    generators = [torch.Generator().manual_seed(0)]
    image = FourierImage.random(generators, (8, 8))
    image().sum().backward()
    assert image.param.grad is not None and image.param.grad.abs().sum() > 0


def test_random_affine_shifts_by_whole_pixels():
    rows = 8
    images = torch.rand(rows, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    identity = random_affine(
        images,
        [torch.Generator().manual_seed(s) for s in range(rows)],
        jitter=0,
        scales=(1.0,),
        rotate_degrees=0.0,
    )
    torch.testing.assert_close(identity, images, atol=1e-5, rtol=0)

    generators = [torch.Generator().manual_seed(s) for s in range(rows)]
    shifted = random_affine(images, generators, jitter=2, scales=(1.0,), rotate_degrees=0.0)
    # Each row is its input moved by exactly one whole-pixel (dx, dy), |dx|, |dy| <= 2, drawn
    # per row (8 rows: a half-pixel bug would almost surely show). Compare away from the border.
    shifts = []
    for i in range(rows):
        matches = [
            (dx, dy)
            for dx in range(-2, 3)
            for dy in range(-2, 3)
            if torch.allclose(
                shifted[i, :, 2:-2, 2:-2],
                images[i, :, 2 + dy : 10 + dy, 2 + dx : 8 + dx],
                atol=1e-5,
            )
        ]
        assert len(matches) == 1, f"row {i}: {matches}"
        shifts += matches
    # Both axes move (not one only, not neither).
    assert any(dx != 0 for dx, _ in shifts) and any(dy != 0 for _, dy in shifts)


def test_size_defaults_to_the_classifier_input(classifier):
    result = activation_maximisation(
        classifier, [ClassLogit(0)], seeds=[0], config=_config(iterations=1, size=None)
    )
    assert result.images.shape == (1, 3, 16, 16)
    result = activation_maximisation(
        classifier, [ClassLogit(0)], seeds=[0], config=_config(iterations=1, size=24)
    )
    assert result.images.shape == (1, 3, 24, 24)
    assert result.steps.tolist() == [1]


def test_bad_inputs(classifier):
    with pytest.raises(ValueError, match="seeds"):
        activation_maximisation(classifier, [ClassLogit(0)], seeds=[0, 1])
    with pytest.raises(ValueError, match="iterations"):
        activation_maximisation(
            classifier, [ClassLogit(0)], seeds=[0], config=BaselineConfig(iterations=0)
        )
    with pytest.raises(ValueError, match="scales"):
        activation_maximisation(
            classifier, [ClassLogit(0)], seeds=[0], config=BaselineConfig(scales=())
        )
    with pytest.raises(ValueError, match="at least one"):
        activation_maximisation(classifier, [], seeds=[])
