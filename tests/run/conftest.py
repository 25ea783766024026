"""A tiny zoo on disk (generator, classifier, segmenter in their real formats) and a spec."""

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    from dxray.models.build import GeneratorArch, build_generator
    from dxray.models.classifier import Preprocessing, save_classifier
    from dxray.toyworld import default_world
    from dxray.toyworld.data import class_names
    from dxray.toyworld.nets import toy_cnn
    from dxray.toyworld.train_segmenter import ToySegmenterConfig, build_toy_segmenter

    root = tmp_path_factory.mktemp("zoo")
    world = default_world()
    build_generator(GeneratorArch(latent_size=8), seed=0).save_pretrained(root / "generator")
    torch.manual_seed(0)
    kwargs = dict(num_classes=len(world.classes), width=4, hidden=8, depth=1, grid=2)
    save_classifier(
        root / "classifier",
        toy_cnn(**kwargs),
        factory="dxray.toyworld.nets:toy_cnn",
        factory_kwargs=kwargs,
        preprocessing=Preprocessing((16, 16), (0.5,) * 3, (0.5,) * 3),
        class_names=class_names(world),
    )
    config = ToySegmenterConfig(
        image_size=16, patch_size=4, vision_hidden=16, vision_layers=2, vision_heads=2,
        extract_layers=(1,), text_hidden=16, text_heads=2, projection_dim=16, reduce_dim=8,
        decoder_heads=2,
    )  # fmt: skip
    build_toy_segmenter(world, config, seed=0).save_pretrained(root / "segmenter")
    return root


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
