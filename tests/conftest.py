"""Shared test setup: no network, one torch thread, seeded tiny models built in code."""

import os

# Never reach a model hub from a test: a missing model must fail at once, not after retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from dxray.models.build import DEFAULT_WORDS, build_tokenizer

    return build_tokenizer(list(DEFAULT_WORDS), max_length=16)


class TinyNet(torch.nn.Module):
    """A seeded 3-class conv classifier: hidden units at "features.conv1" / "features.conv2"."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.features = torch.nn.Sequential()
        self.features.add_module("conv1", torch.nn.Conv2d(3, 8, 3, padding=1))
        self.features.add_module("relu1", torch.nn.ReLU())
        self.features.add_module("conv2", torch.nn.Conv2d(8, 8, 3, padding=1, stride=2))
        self.features.add_module("relu2", torch.nn.ReLU())
        self.head = torch.nn.Linear(8, classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


@pytest.fixture(scope="session")
def tiny_generator():
    from dxray.models.build import GeneratorArch, build_generator

    return build_generator(GeneratorArch(), seed=0)


@pytest.fixture
def tiny_classifier():
    from dxray.models.classifier import Classifier, Preprocessing

    torch.manual_seed(0)
    pre = Preprocessing(input_size=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return Classifier(TinyNet().eval().requires_grad_(False), pre, ["cat", "dog", "boat"])


@pytest.fixture(scope="session")
def tiny_models64():
    """Float64 generator + classifier, for exact batched-vs-alone comparisons. (In float32,
    Adam turns rounding-level differences of near-zero gradients into ~1e-4 steps.)"""
    from dxray.models.build import GeneratorArch, build_generator
    from dxray.models.classifier import Classifier, Preprocessing

    gen = build_generator(GeneratorArch(), seed=0).to(dtype=torch.float64)
    torch.manual_seed(0)
    pre = Preprocessing(input_size=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    net = TinyNet().double().eval().requires_grad_(False)
    return gen, Classifier(net, pre, ["cat", "dog", "boat"])
