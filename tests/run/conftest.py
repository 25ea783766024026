"""A tiny zoo on disk (generator, classifier, segmenter in their real formats) and a spec."""

import pytest


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    from dxray.toyworld.zoo import build_tiny_zoo

    return build_tiny_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture
def tiny_spec(tiny_zoo, tmp_path):
    """A spec dict on the tiny zoo: 5 classes + 1 listed unit, 2 seeds, 2 iterations."""
    return {
        "name": "tiny",
        "generator": str(tiny_zoo / "generator"),
        "classifier": str(tiny_zoo / "classifier"),
        "segmenter": str(tiny_zoo / "segmenter"),
        "targets": {
            "classes": "all",
            "units": {"units": ["penultimate:3"]},
            "seeds": [0, 1],
        },
        "engine": {
            "iterations": 2,
            "template": "a {}",
            "sampler": {"steps": 1},
            "batch_size": 4,
            "stop_prob": None,
        },
        "judge": {"probes": ["water", "a watermark"]},
        "output": {"catalog": str(tmp_path / "catalog")},
        "ray": {"workers": 1, "num_cpus_per_worker": 1, "max_retries": 2},
    }
