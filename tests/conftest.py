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
