"""Released checkpoints in their real layouts (synthetic weights, tiny widths) -> dxray
classifier directories -> load_classifier, with no torchvision and no unpickling of code."""

import argparse

import pytest
import torch

from dxray.models.classifier_io import load_classifier
from dxray.models.convert import (
    ConvertError,
    convert_fairface,
    convert_robustness,
    imagenet_class_names,
)
from dxray.models.resnet import resnet34, resnet50

NAMES = [f"n0{i:07d} thing {i}, other name" for i in range(10)]


def robustness_checkpoint(path, width=2, classes=10):
    """The robustness library's layout: the network, the attacker's copy, the normaliser."""
    torch.manual_seed(0)
    net = resnet50(num_classes=classes, width=width).state_dict()
    model = {f"module.model.{k}": v for k, v in net.items()}
    model |= {f"module.attacker.model.{k}": v.clone() for k, v in net.items()}
    model["module.normalizer.new_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    model["module.normalizer.new_std"] = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    model["module.attacker.normalize.new_mean"] = model["module.normalizer.new_mean"].clone()
    torch.save({"model": model, "epoch": 90, "schedule": None, "optimizer": {"state": {}}}, path)
    return net


def test_a_robustness_checkpoint_becomes_a_classifier_with_named_classes(tmp_path):
    net = robustness_checkpoint(tmp_path / "imagenet_l2_3_0.pt")
    out = convert_robustness(
        tmp_path / "imagenet_l2_3_0.pt", tmp_path / "robust", class_names=NAMES
    )
    clf = load_classifier(out)
    assert clf.class_names == NAMES and clf.num_classes == 10
    assert clf.preprocessing.input_size == (224, 224)
    assert clf.preprocessing.mean == pytest.approx((0.485, 0.456, 0.406))
    assert torch.equal(clf.model.fc.weight, net["fc.weight"])  # the network, not the attacker's
    assert clf.unit_channels("avgpool") == 2 * 8 * 4  # units as torchvision names them


def test_fairface_exposes_one_head_with_its_names(tmp_path):
    torch.manual_seed(0)
    state = resnet34(num_classes=18).state_dict()  # the released shape: fc (18, 512)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "res34.pt")
    out = convert_fairface(tmp_path / "res34.pt", tmp_path / "fairface_age", head="age")
    clf = load_classifier(out)
    assert clf.class_names[0] == "0-2" and clf.class_names[-1] == "70+"
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        logits = clf(images)
        full = clf.model(clf.preprocessing(images))
    assert logits.shape == (2, 9) and torch.allclose(logits, full[:, 9:18])
    out = clf.outputs(images, ["avgpool"])  # the engine's path: the same slice, and units
    assert torch.allclose(out.logits, logits) and out.units["avgpool"].shape == (2, 512)
    gender = load_classifier(convert_fairface(tmp_path / "res34.pt", tmp_path / "g", head="gender"))
    assert gender.class_names == ["Male", "Female"]


def test_a_checkpoint_that_needs_code_to_unpickle_is_refused(tmp_path):
    # Any object beyond tensors and containers (here argparse's Namespace, as training scripts
    # often save their arguments): unpickling it means importing and calling code
    torch.save({"model": {}, "args": argparse.Namespace(lr=0.1)}, tmp_path / "evil.pt")
    with pytest.raises(ConvertError, match="refusing .*arbitrary unpickling"):
        convert_robustness(tmp_path / "evil.pt", tmp_path / "out", class_names=NAMES)
    assert not (tmp_path / "out").exists()


def test_wrong_checkpoints_say_what_they_are_not(tmp_path):
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(ConvertError, match="no 'module.model.' weights"):
        convert_robustness(tmp_path / "other.pt", tmp_path / "o", class_names=NAMES)
    robustness_checkpoint(tmp_path / "r.pt")
    with pytest.raises(ConvertError, match="3 class names for 10 classes"):
        convert_robustness(tmp_path / "r.pt", tmp_path / "o", class_names=NAMES[:3])
    with pytest.raises(ConvertError, match="give the class names"):
        convert_robustness(tmp_path / "r.pt", tmp_path / "o", class_names=[])
    with pytest.raises(ConvertError, match="not FairFace's 18-output"):
        convert_fairface(tmp_path / "r.pt", tmp_path / "o")


def test_imagenet_class_names_from_salient_imagenets_metadata(tmp_path):
    rows = ["class_index,synset,wordnet_id,gloss,wikilinks,supercategory,val_sample_paths"]
    rows += ['1,"goldfish, Carassius auratus",n01443537,"a fish",x,fish,"a.jpg"',
             '0,"tench, Tinca tinca",n01440764,"a fish",x,fish,"b.jpg"']  # fmt: skip
    (tmp_path / "class_metadata.csv").write_text("\n".join(rows) + "\n")
    names = imagenet_class_names(tmp_path / "class_metadata.csv")
    assert names == ["tench, Tinca tinca", "goldfish, Carassius auratus"]
    (tmp_path / "names.txt").write_text("tench\ngoldfish\n")
    assert imagenet_class_names(tmp_path / "names.txt") == ["tench", "goldfish"]


def test_output_slices_are_checked(tmp_path):
    from dxray.models.classifier import ClassifierLoadError, Preprocessing
    from dxray.models.classifier_io import save_classifier

    model = resnet34(num_classes=6, width=2)
    pre = Preprocessing((32, 32), (0.5,) * 3, (0.5,) * 3)
    kwargs = dict(factory="dxray.models.resnet:resnet34",
                  factory_kwargs={"num_classes": 6, "width": 2}, preprocessing=pre)  # fmt: skip
    path = save_classifier(tmp_path / "a", model, class_names=["x", "y"], outputs=(4, 6), **kwargs)
    assert load_classifier(path).num_classes == 2
    bad = save_classifier(tmp_path / "b", model, class_names=["x", "y"], outputs=(5, 7), **kwargs)
    with pytest.raises(ClassifierLoadError, match=r"outputs \[5, 7\] is not within its 6"):
        load_classifier(bad)
    with pytest.raises(ClassifierLoadError, match="start < stop"):
        load_classifier({"source": str(path), "outputs": [3, 3]})


def test_a_checkpoint_is_bounded_and_checked_before_anything_is_built(tmp_path):
    """767 KB claiming a 4,096-wide conv1 asked for 2.4 GB; a wrong shape gave torch's error
    naming no tensor; an existing folder was overwritten."""
    net = resnet50(num_classes=10, width=2).state_dict()
    wide = dict(net, **{"conv1.weight": torch.zeros(4096, 3, 7, 0)})  # zero elements, huge claim
    torch.save({"model": {f"module.model.{k}": v for k, v in wide.items()}}, tmp_path / "w.pt")
    with pytest.raises(ConvertError, match="claims 4096 channels"):
        convert_robustness(tmp_path / "w.pt", tmp_path / "o", class_names=NAMES)
    bad = dict(net, **{"layer2.0.conv2.weight": torch.zeros(3, 3, 3, 3)})
    torch.save({"model": {f"module.model.{k}": v for k, v in bad.items()}}, tmp_path / "b.pt")
    with pytest.raises(ConvertError, match=r"layer2\.0\.conv2\.weight has shape \(3, 3, 3, 3\)"):
        convert_robustness(tmp_path / "b.pt", tmp_path / "o", class_names=NAMES)
    assert not (tmp_path / "o").exists()
    robustness_checkpoint(tmp_path / "r.pt")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(ConvertError, match="never overwrites"):
        convert_robustness(tmp_path / "r.pt", tmp_path / "taken", class_names=NAMES)
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
