"""Classifier loading, preprocessing, hidden units and the errors a user sees."""

import json
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from dxray.models.classifier import (
    Classifier,
    ClassifierLoadError,
    Preprocessing,
    UnknownLayerError,
    parse_unit,
)
from dxray.models.classifier_io import load_classifier, save_classifier

# A factory must be importable by name, and test folders are not packages: each test that needs
# one writes this module into its tmp_path and puts that on sys.path.
FACTORY_MODULE = "dxray_test_tiny_cnn"
FACTORY_SOURCE = """
from collections import OrderedDict

from torch import nn


def build(width=4, num_classes=3):
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(3, width, 3, padding=1),
        act=nn.ReLU(),
        block=nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU()),
        pool=nn.AdaptiveAvgPool2d(1),
        flat=nn.Flatten(),
        head=nn.Linear(2 * width, num_classes),
    ))
"""
FACTORY = f"{FACTORY_MODULE}:build"
PRE = Preprocessing(input_size=(16, 16), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
NAMES = ["circle", "square", "star"]


@pytest.fixture
def tiny_cnn_module(tmp_path, monkeypatch):
    (tmp_path / f"{FACTORY_MODULE}.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, FACTORY_MODULE, raising=False)
    return __import__(FACTORY_MODULE)


@pytest.fixture
def tiny_cnn(tiny_cnn_module):
    torch.manual_seed(0)
    return tiny_cnn_module.build().eval()


@pytest.fixture
def classifier(tiny_cnn):
    return Classifier(tiny_cnn, PRE, NAMES, source="tiny")


def images(batch=2, size=16, seed=1):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def expected_logits(model, x, pre=PRE):
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model((x - mean) / std)


# --- preprocessing -------------------------------------------------------------------------------


def test_preprocessing_normalises_without_resizing_at_input_size():
    x = images()
    out = PRE(x)
    mean = torch.tensor(PRE.mean).view(1, 3, 1, 1)
    std = torch.tensor(PRE.std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (x - mean) / std)


def test_preprocessing_resizes_bilinearly_to_input_size():
    pre = Preprocessing(input_size=(8, 12), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    x = images(size=20)
    out = pre(x)
    assert out.shape == (2, 3, 8, 12)
    torch.testing.assert_close(
        out, F.interpolate(x, size=(8, 12), mode="bilinear", align_corners=False)
    )


def test_preprocessing_validates_its_fields_and_inputs():
    assert Preprocessing(32, [0.5] * 3, [0.5] * 3).input_size == (32, 32)
    with pytest.raises(ValueError, match="one value per RGB channel"):
        Preprocessing((32, 32), (0.5, 0.5), (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="std must be positive"):
        Preprocessing((32, 32), (0.5,) * 3, (0.5, 0.0, 0.5))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        PRE(torch.rand(1, 1, 16, 16))


def test_gradient_reaches_images_through_resize_and_normalisation(classifier):
    x = images(size=24).requires_grad_(True)
    classifier(x)[:, 1].sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


# --- the Classifier module -----------------------------------------------------------------------


def test_forward_matches_model_on_preprocessed_images(classifier, tiny_cnn):
    x = images()
    torch.testing.assert_close(classifier(x), expected_logits(tiny_cnn, x))
    assert classifier.num_classes == 3


def test_forward_unwraps_tuple_and_dict_outputs(tiny_cnn):
    class Wrapped(nn.Module):
        def __init__(self, inner, as_dict):
            super().__init__()
            self.inner, self.as_dict = inner, as_dict

        def forward(self, x):
            logits = self.inner(x)
            return {"logits": logits} if self.as_dict else (logits, logits.softmax(-1))

    x = images()
    for as_dict in (False, True):
        logits = Classifier(Wrapped(tiny_cnn, as_dict), PRE)(x)
        torch.testing.assert_close(logits, expected_logits(tiny_cnn, x))


def test_units_of_a_conv_layer_are_its_spatial_means(classifier, tiny_cnn):
    captured = {}
    tiny_cnn.block.register_forward_hook(lambda m, i, o: captured.setdefault("block", o))
    x = images()
    out = classifier.outputs(x, layers=["block", "head"])
    assert set(out.units) == {"block", "head"}
    torch.testing.assert_close(out.units["block"], captured["block"].mean(dim=(2, 3)))
    torch.testing.assert_close(out.units["head"], out.logits)
    assert out.units["block"].shape == (2, 8)


def test_units_of_token_layers_average_over_tokens():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 6, 4, stride=4)
            self.mix = nn.Linear(6, 6)
            self.head = nn.Linear(6, 2)

        def forward(self, x):
            tokens = self.embed(x).flatten(2).transpose(1, 2)  # [B, N, C]
            return self.head(self.mix(tokens).mean(1))

    torch.manual_seed(0)
    model = Tokens().eval()
    clf = Classifier(model, PRE)
    x = images()
    out = clf.outputs(x, ["mix"])
    tokens = model.embed(PRE(x)).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out.units["mix"], model.mix(tokens).mean(1))
    assert clf.unit_channels("mix") == 6
    assert clf.unit_channels("embed") == 6


def test_gradient_reaches_images_through_a_unit(classifier):
    x = images().requires_grad_(True)
    out = classifier.outputs(x, ["conv"])
    out.units["conv"][:, 2].sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_hooks_are_removed_after_outputs_even_on_error(classifier, tiny_cnn):
    classifier.outputs(images(), ["conv"])
    with pytest.raises(ValueError):
        classifier.outputs(torch.rand(1, 3, 2), ["conv", "block.0"])  # not an image batch
    assert all(not m._forward_hooks for m in tiny_cnn.modules())


def test_unit_layers_and_channels(classifier):
    assert classifier.unit_layers() == [
        "conv",
        "act",
        "block",
        "block.0",
        "block.1",
        "pool",
        "flat",
        "head",
    ]
    assert classifier.unit_channels("conv") == 4
    assert classifier.unit_channels("block.0") == 8
    assert classifier.unit_channels("head") == 3
    classifier.check_unit("block", 7)


def test_unknown_layer_lists_valid_names_closest_first(classifier):
    with pytest.raises(UnknownLayerError) as info:
        classifier.unit_channels("blok.0")
    message = str(info.value)
    assert "unknown layer 'blok.0'" in message
    assert message.index("block.0") < message.index("head")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownLayerError, match="valid"):
        classifier.outputs(images(), ["layer9"])


def test_channel_out_of_range(classifier):
    with pytest.raises(
        ValueError, match=r"channel 99 out of range: layer 'conv' has 4 channels \(0..3\)"
    ):
        classifier.check_unit("conv", 99)
    with pytest.raises(ValueError, match="out of range"):
        classifier.check_unit("conv", -1)


def test_class_index_by_index_name_and_errors(classifier):
    assert classifier.class_index(2) == 2
    assert classifier.class_index("square") == 1
    assert classifier.class_index("0") == 0
    with pytest.raises(ValueError, match=r"out of range: the classifier has 3 classes \(0..2\)"):
        classifier.class_index(3)
    with pytest.raises(ValueError, match="'square'"):
        classifier.class_index("sqare")
    with pytest.raises(ValueError, match="unknown class 'dog'"):
        classifier.class_index("dog")


def test_default_class_names_follow_the_number_of_outputs(tiny_cnn):
    assert Classifier(tiny_cnn, PRE).class_names == ["class_0", "class_1", "class_2"]


def test_parse_unit():
    assert parse_unit("layer4.2:17") == ("layer4.2", 17)
    assert parse_unit(" conv:0 ") == ("conv", 0)


@pytest.mark.parametrize("bad", ["layer4", "layer4:", ":3", "layer4:x", "layer4:-1", ""])
def test_parse_unit_rejects_bad_specs(bad):
    with pytest.raises(ValueError, match="layer.path:channel"):
        parse_unit(bad)


# --- loading: round trips -------------------------------------------------------------------------


def test_dxray_directory_round_trip(tmp_path, tiny_cnn):
    path = save_classifier(
        tmp_path / "clf",
        tiny_cnn,
        factory=FACTORY,
        factory_kwargs={"width": 4, "num_classes": 3},
        preprocessing=PRE,
        class_names=NAMES,
    )
    config = json.loads((path / "classifier.json").read_text())
    assert config["format"] == "dxray-classifier/1" and config["factory"] == FACTORY
    clf = load_classifier({"source": str(path), "factory": FACTORY})  # trusted by the spec
    x = images()
    assert (clf(x) - expected_logits(tiny_cnn, x)).abs().max() < 1e-6
    assert clf.class_names == NAMES and clf.preprocessing == PRE
    assert not clf.training and not any(p.requires_grad for p in clf.parameters())
    assert clf.unit_channels("block") == 8


def test_dict_spec_overrides_preprocessing_and_dtype(tmp_path, tiny_cnn):
    save_classifier(
        tmp_path, tiny_cnn, factory=FACTORY, factory_kwargs={}, preprocessing=PRE, class_names=NAMES
    )
    clf = load_classifier(
        {
            "source": str(tmp_path),
            "factory": FACTORY,
            "input_size": [20, 20],
            "class_names": ["a", "b", "c"],
        },
        dtype=torch.float64,
    )
    assert clf.preprocessing.input_size == (20, 20) and clf.preprocessing.mean == PRE.mean
    assert clf.class_names == ["a", "b", "c"]
    assert clf(images()).dtype == torch.float64


def test_a_checkpoint_folder_cannot_choose_the_code_that_builds_it(tmp_path, tiny_cnn):
    """classifier.json naming any importable callable (here `subprocess:run`) is refused:
    nothing is called; the spec can name a factory on purpose."""
    save_classifier(
        tmp_path, tiny_cnn, factory=FACTORY, factory_kwargs={}, preprocessing=PRE, class_names=NAMES
    )
    config = json.loads((tmp_path / "classifier.json").read_text())
    marker = tmp_path / "ran"
    (tmp_path / "classifier.json").write_text(
        json.dumps({**config, "factory": "subprocess:run",
                    "factory_kwargs": {"args": ["touch", str(marker)]}})
    )  # fmt: skip
    with pytest.raises(ClassifierLoadError, match="may not choose the code") as info:
        load_classifier(tmp_path)
    assert not marker.exists()
    assert "factory: subprocess:run" in str(info.value)  # how to allow it on purpose
    (tmp_path / "classifier.json").write_text(json.dumps(config))
    with pytest.raises(ClassifierLoadError, match="may not choose the code"):
        load_classifier(tmp_path)  # a test module is not a trusted factory either ...
    assert load_classifier({"source": str(tmp_path), "factory": FACTORY}).num_classes == 3


def test_trusted_factories_are_dxrays_own_and_torchvision_timm():
    from dxray.models.classifier_sources.factories import trusted_factory

    assert trusted_factory("dxray.toyworld.nets:toy_cnn")
    assert trusted_factory("dxray.models.resnet:resnet50")
    assert trusted_factory("torchvision.models:resnet50") and trusted_factory("timm:create_model")
    untrusted = (
        "subprocess:run", "os:system", "dxrayx.evil:f", "timmy:f", "builtins:eval",
        # dxray and timm hold callables that write files or unpickle: never a whole package
        "dxray.catalog.writer:write_text_atomic", "dxray.toyworld.zoo:build_tiny_zoo",
        "timm.models:load_checkpoint", "timm:load_checkpoint", "dxray.toyworld.nets:_private",
        "dxray.toyworld.nets:os.system",
    )  # fmt: skip
    for factory in untrusted:
        assert not trusted_factory(factory), factory


def test_dxray_directory_of_another_format_is_refused(tmp_path, tiny_cnn):
    save_classifier(
        tmp_path, tiny_cnn, factory=FACTORY, factory_kwargs={}, preprocessing=PRE, class_names=NAMES
    )
    config = json.loads((tmp_path / "classifier.json").read_text())
    (tmp_path / "classifier.json").write_text(json.dumps({**config, "format": "other/9"}))
    with pytest.raises(ClassifierLoadError, match="dxray-classifier/1"):
        load_classifier(tmp_path)


def test_class_names_must_match_the_outputs(tmp_path, tiny_cnn):
    save_classifier(
        tmp_path, tiny_cnn, factory=FACTORY, factory_kwargs={}, preprocessing=PRE, class_names=NAMES
    )
    with pytest.raises(ClassifierLoadError, match="3 outputs but 2 class names"):
        load_classifier({"source": str(tmp_path), "factory": FACTORY, "class_names": ["a", "b"]})


def test_safetensors_with_factory_round_trip(tmp_path, tiny_cnn):
    save_file(tiny_cnn.state_dict(), tmp_path / "w.safetensors")
    spec = {
        "source": str(tmp_path / "w.safetensors"),
        "factory": FACTORY,
        "factory_kwargs": {"width": 4},
        "input_size": [16, 16],
        "mean": list(PRE.mean),
        "std": list(PRE.std),
        "class_names": NAMES,
    }
    clf = load_classifier(spec)
    x = images()
    assert (clf(x) - expected_logits(tiny_cnn, x)).abs().max() < 1e-6
    assert clf.class_names == NAMES


def test_safetensors_that_do_not_fit_the_factory(tmp_path, tiny_cnn):
    save_file(tiny_cnn.state_dict(), tmp_path / "w.safetensors")
    spec = {"source": str(tmp_path / "w.safetensors"), "factory": FACTORY}
    with pytest.raises(ClassifierLoadError, match="size mismatch"):
        load_classifier({**spec, "factory_kwargs": {"width": 5}})
    with pytest.raises(ClassifierLoadError, match="no 'nope'"):
        load_classifier({**spec, "factory": f"{FACTORY_MODULE}:nope"})
    with pytest.raises(ClassifierLoadError, match="cannot import 'no_such_module_xyz'"):
        load_classifier({**spec, "factory": "no_such_module_xyz:build"})


def test_safetensors_without_factory_asks_for_one(tmp_path, tiny_cnn):
    save_file(tiny_cnn.state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(ClassifierLoadError, match='"factory"'):
        load_classifier(str(tmp_path / "w.safetensors"))


# torch 2.13 deprecates TorchScript, yet archives made with it are what people have to load.
jit_deprecated = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@jit_deprecated
@pytest.mark.parametrize("script", [torch.jit.script, torch.jit.trace])
def test_torchscript_round_trip(tmp_path, tiny_cnn, script):
    path = tmp_path / "model.ts"
    scripted = script(tiny_cnn) if script is torch.jit.script else script(tiny_cnn, PRE(images()))
    torch.jit.save(scripted, path)
    spec = {"source": str(path), "input_size": [16, 16], "mean": PRE.mean, "std": PRE.std}
    clf = load_classifier(spec)
    x = images()
    assert (clf(x) - expected_logits(tiny_cnn, x)).abs().max() < 1e-6
    assert not any(p.requires_grad for p in clf.parameters())
    x.requires_grad_(True)
    clf(x)[:, 0].sum().backward()
    assert x.grad.abs().sum() > 0
    # Compiled modules reject forward hooks: no units, and the error says why.
    assert clf.unit_layers() == []
    with pytest.raises(UnknownLayerError, match="TorchScript"):
        clf.outputs(x, ["conv"])


@jit_deprecated
def test_torchscript_without_preprocessing_warns_and_uses_imagenet(tmp_path, tiny_cnn):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(tiny_cnn), path)
    with pytest.warns(UserWarning, match="assuming 224x224 input_size, ImageNet's mean"):
        clf = load_classifier(path)
    assert clf.preprocessing.input_size == (224, 224)
    assert clf.preprocessing.mean == (0.485, 0.456, 0.406)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        num_labels=3,
        id2label={0: "cat", 1: "dog", 2: "fox"},
        label2id={"cat": 0, "dog": 1, "fox": 2},
    )
    model = ResNetForImageClassification(config).eval()
    path = tmp_path_factory.mktemp("hf")
    model.save_pretrained(path)
    processor = {
        "do_resize": True,
        "size": {"height": 32, "width": 32},
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.25, 0.25, 0.25],
        "do_rescale": True,
        "rescale_factor": 1 / 255,
    }
    (path / "preprocessor_config.json").write_text(json.dumps(processor))
    return path, model


def test_hugging_face_directory_round_trip(hf_dir):
    path, model = hf_dir
    x = images(size=32)
    with torch.no_grad():
        expected = model((x - 0.5) / 0.25).logits
    for spec in (str(path), f"hf:{path}"):
        clf = load_classifier(spec)
        assert clf.preprocessing.input_size == (32, 32)
        assert (clf(x) - expected).abs().max() < 1e-6
        assert clf.class_names == ["cat", "dog", "fox"]
    out = clf.outputs(x, ["resnet.encoder.stages.1"])
    assert out.units["resnet.encoder.stages.1"].shape == (2, 16)


def test_hugging_face_preprocessor_variants(hf_dir, tmp_path):
    path, _ = hf_dir
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((path / name).read_bytes())
    processor = {
        "size": {"shortest_edge": 40},
        "do_center_crop": True,
        "crop_size": {"height": 24, "width": 24},
        "image_mean": 0.5,
        "image_std": 0.5,
        "do_rescale": False,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(processor))
    pre = load_classifier(tmp_path).preprocessing
    assert pre.input_size == (24, 24)
    # Without rescaling, the processor normalises 0..255 pixels: fold that into mean and std.
    assert pre.mean == pytest.approx((0.5 / 255,) * 3) and pre.std == pytest.approx(
        (0.5 / 255,) * 3
    )

    (tmp_path / "preprocessor_config.json").unlink()
    with pytest.warns(UserWarning, match="ImageNet"):
        assert load_classifier(tmp_path).preprocessing.input_size == (224, 224)


# --- loading: refusals and missing things ---------------------------------------------------------


@pytest.mark.parametrize("name", ["w.bin", "w.ckpt", "w.pt"])
def test_pickled_checkpoints_are_refused(tmp_path, tiny_cnn, name):
    torch.save(tiny_cnn.state_dict(), tmp_path / name)
    with pytest.raises(ClassifierLoadError, match="refusing to unpickle") as info:
        load_classifier(tmp_path / name)
    assert "safetensors" in str(info.value) and "TorchScript" in str(info.value)


def test_pickled_state_dict_with_factory_loads_weights_only(tmp_path, tiny_cnn):
    torch.save(tiny_cnn.state_dict(), tmp_path / "w.bin")
    spec = {"source": str(tmp_path / "w.bin"), "factory": FACTORY, "input_size": [16, 16]}
    clf = load_classifier({**spec, "mean": PRE.mean, "std": PRE.std})
    x = images()
    assert (clf(x) - expected_logits(tiny_cnn, x)).abs().max() < 1e-6


def test_missing_paths_are_named(tmp_path):
    missing = tmp_path / "nothing" / "clf.safetensors"
    with pytest.raises(ClassifierLoadError, match="does not exist") as info:
        load_classifier(str(missing))
    assert str(missing) in str(info.value)
    with pytest.raises(ClassifierLoadError, match="'./no_such_dir_xyz' does not exist"):
        load_classifier("./no_such_dir_xyz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClassifierLoadError, match="neither classifier.json"):
        load_classifier(tmp_path / "empty")


@pytest.mark.parametrize("spec", ["hf:nobody-xyz/no-such-model", "nobody-xyz/no-such-model"])
def test_uncached_hub_id_fails_at_once_offline(spec):
    with pytest.raises(ClassifierLoadError, match="nobody-xyz/no-such-model") as info:
        load_classifier(spec)
    assert "connected machine" in str(info.value)


@pytest.mark.parametrize("extra", ["torchvision", "timm"])
def test_missing_optional_extra_says_how_to_install_it(monkeypatch, extra):
    monkeypatch.setitem(sys.modules, extra, None)  # makes `import extra` fail even if installed
    with pytest.raises(ClassifierLoadError, match=rf"pip install 'dxray\[{extra}\]'"):
        load_classifier(f"{extra}:resnet18")


def test_bad_dict_specs():
    with pytest.raises(ClassifierLoadError, match="unknown key"):
        load_classifier({"source": "x", "input_sise": [3, 3]})
    with pytest.raises(ClassifierLoadError, match='needs "source"'):
        load_classifier({"input_size": [3, 3]})
    with pytest.raises(ClassifierLoadError, match="'factory' applies only"):
        load_classifier({"source": "torchvision:resnet18", "factory": FACTORY})


def test_a_silent_relu_unit_still_has_a_gradient_and_its_true_value():
    # Without the pre-activation a unit at exactly 0 gives zero gradient, and an explanation
    # started where it is silent never moves (half the toy units did, before this).
    from dxray.explain.objective import Unit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 6), nn.ReLU(), nn.Linear(6, 2))
    clf = Classifier(model, Preprocessing((4, 4), (0.0,) * 3, (1.0,) * 3))
    x = torch.rand(3, 3, 4, 4, requires_grad=True)
    out = clf.outputs(x, ["2"])  # the ReLU itself
    assert set(out.pre_units) == {"2"}
    silent = [(i, j) for i in range(3) for j in range(6) if float(out.units["2"][i, j]) == 0]
    assert silent, "the seed should leave some unit silent"
    i, j = silent[0]
    value = Unit("2", j)(out)
    assert torch.equal(value.detach(), out.units["2"][:, j])  # the value is the activation
    (grad,) = torch.autograd.grad(value[i], x)
    assert float(grad.abs().sum()) > 0
    # A layer whose output is not a ReLU's reports no pre-activation.
    assert clf.outputs(x, ["1"]).pre_units == {}


def test_a_folder_named_factory_gets_only_shape_arguments(tmp_path, tiny_cnn, monkeypatch):
    """timm's create_model is trusted, but its keyword arguments from classifier.json could
    make it unpickle a file (checkpoint_path) or download (pretrained, hf-hub names): refused
    before the factory is called. A stand-in timm records what it is given."""
    import sys
    import types

    from dxray.models.classifier_io import import_factory

    calls = []

    def create_model(model_name, **kwargs):
        calls.append((model_name, kwargs))
        return import_factory(FACTORY)()

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    save_classifier(
        tmp_path, tiny_cnn, factory=FACTORY, factory_kwargs={}, preprocessing=PRE, class_names=NAMES
    )
    config = json.loads((tmp_path / "classifier.json").read_text())

    def with_kwargs(kwargs):
        (tmp_path / "classifier.json").write_text(
            json.dumps({**config, "factory": "timm:create_model", "factory_kwargs": kwargs})
        )
        return load_classifier(tmp_path)

    for kwargs, refused in (
        (
            {"model_name": "resnet18", "checkpoint_path": str(tmp_path / "evil.pt")},
            "checkpoint_path",
        ),
        ({"model_name": "resnet18", "pretrained": True}, "pretrained"),
        ({"model_name": "resnet18", "pretrained_cfg": {"file": "x.pt"}}, "pretrained_cfg"),
        ({"model_name": "hf-hub:someone/model"}, "points at a hub or a file"),
        ({"model_name": "resnet18", "num_classes": {"nested": 1}}, "flat list"),
    ):
        with pytest.raises(ClassifierLoadError, match=refused):
            with_kwargs(kwargs)
    assert calls == []  # refused before the factory ran
    assert with_kwargs({"model_name": "resnet18", "num_classes": 3}).num_classes == 3
    assert calls == [("resnet18", {"num_classes": 3})]


def test_one_hub_id_rule_for_every_model():
    """The classifier, generator, segmenter and preflight read a source with one rule."""
    from dxray.models.classifier_sources.torchscript import TORCHSCRIPT_SUFFIXES
    from dxray.models.classifier_sources.weights import PICKLE_SUFFIXES
    from dxray.models.sources import FILE_SUFFIXES, is_hub_id

    for hub in ("CIDAS/clipseg-rd64-refined", "SimianLuo/LCM_Dreamshaper_v7", "gpt2", "a.b/c-d"):
        assert is_hub_id(hub), hub
    for path in ("./x", "~/x", "/x", "a/b/c", "clf.safetensors", "org/model.pt", "", "a//b"):
        assert not is_hub_id(path), path
    # every file a classifier loader reads by its suffix is a file to the rule too
    assert set(TORCHSCRIPT_SUFFIXES) | set(PICKLE_SUFFIXES) <= set(FILE_SUFFIXES)
