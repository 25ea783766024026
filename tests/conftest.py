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


# The release gate's tests (tests/catalog/test_catalog_gate.py, tests/run/test_gate_scan.py)
# build runs in a catalog with this: a few rows per run, no model, no Ray.
GATE_CLASSES = ("circle", "square", "star")
GATE_VOCABULARY = (("water", "scene"), ("a watermark", "overlay"))


@pytest.fixture
def write_gate_run():
    """`write_gate_run(root, run_id, shortcuts={(class, attribute): (lift, low, high[, images])},
    units={(layer, channel, class or None): [verdict per seed, None = not judged]}, ...)`:
    one run as an audit writes it. Every (class, attribute) pair not listed lifts
    0.0 [-0.3, 0.3]; `shortcuts=None`: no shortcut test. A finding is lift >= 1 with low > 0 and
    >= 4 images, as the spec's defaults say."""
    from datetime import UTC, datetime, timedelta

    from dxray.catalog.writer import CatalogWriter
    from dxray.spec.model import AuditSpec

    clock = [datetime(2026, 12, 1, 9, 0, tzinfo=UTC)]

    def write(
        root,
        run_id,
        *,
        shortcuts=None,
        units=None,
        classes=GATE_CLASSES,
        vocabulary=GATE_VOCABULARY,
        status="finished",
        spec=None,
        classifier=None,
    ):
        clock[0] += timedelta(hours=1)
        at = clock[0]
        writer = CatalogWriter(root)
        base = {"name": "gate", "generator": "g", "classifier": classifier or run_id,
                "segmenter": "s", "shortcuts": {"enabled": shortcuts is not None}}  # fmt: skip
        for section, values in (spec or {}).items():
            base[section] = {**base.get(section, {}), **values}
        spec_yaml = AuditSpec.from_dict(base).to_yaml()
        writer.write_run(run_id, created_at=at, name="gate", spec_yaml=spec_yaml,
                         classifier=classifier or run_id, classifier_sha256="ab" * 32)  # fmt: skip
        explanations, verdicts = [], []
        for (layer, channel, class_name), seeds in (units or {}).items():
            index = None if class_name is None else classes.index(class_name)
            target = f"unit:{layer}:{channel}:{'-' if index is None else index}"
            for seed, verdict in enumerate(seeds):
                row = {"target_id": target, "kind": "unit", "class_index": index,
                       "class_name": class_name, "layer": layer, "channel": channel,
                       "objective": f"Unit({layer}, {channel})", "seed": seed,
                       "created_at": at}  # fmt: skip
                explanations.append({**row, "status": "converged" if verdict else "nan"})
                if verdict:
                    verdicts.append({"target_id": target, "seed": seed, "verdict": verdict,
                                     "judged_by": "intervention", "created_at": at})  # fmt: skip
        for c, name in enumerate(classes):  # one class target each, so the classes are named
            explanations.append({"target_id": f"class:{c}", "kind": "class", "class_index": c,
                                 "class_name": name, "objective": f"ClassCE({c})", "seed": 0,
                                 "status": "converged", "created_at": at})  # fmt: skip
        writer.write_batch(run_id, explanations, verdicts)
        if shortcuts is not None:
            rows = []
            for c, name in enumerate(classes):
                for attribute, kind in vocabulary:
                    lift, low, high, *more = shortcuts.get((name, attribute), (0.0, -0.3, 0.3))
                    images = more[0] if more else 16
                    note = "" if images >= 4 else f"{images} usable images; a finding needs 4"
                    rows.append({"score_id": "s1", "class_index": c, "class_name": name,
                                 "attribute": attribute, "kind": kind, "method": "object_free",
                                 "lift": lift, "low": low, "high": high, "images": images,
                                 "finding": lift is not None and lift >= 1 and low > 0 and images >= 4,
                                 "note": note, "created_at": at})  # fmt: skip
            writer.write("shortcuts", rows, run_id)
        if status != "running":
            writer.finish_run(run_id, status, error=None if status == "finished" else "2 left")
        return run_id

    return write
