"""The intervention judge of unit targets: remove the objects, measure the unit again."""

import pytest
import torch
from torch import nn

from dxray.judge.intervention import grown_mask, judge_units, remove_objects
from dxray.models.classifier import Classifier, Preprocessing


class Probe(nn.Module):
    """Unit 0 reads the red of the top-left quarter (where the "object" is), unit 1 the blue of
    the bottom-right quarter (background), unit 2 is silent, unit 3 reads both, mostly the
    object."""

    def __init__(self):
        super().__init__()
        self.units = nn.ReLU()

    def forward(self, x):
        obj = x[:, 0, :4, :4].mean(dim=(1, 2))
        back = x[:, 2, 4:, 4:].mean(dim=(1, 2))
        both = 0.7 * obj + 0.3 * back
        return self.units(torch.stack([obj, back, -torch.ones_like(obj), both], 1))


@pytest.fixture
def scene():
    clf = Classifier(Probe(), Preprocessing((8, 8), (0.0,) * 3, (1.0,) * 3))
    image = torch.zeros(4, 3, 8, 8)
    image[:, 0, :4, :4] = 1.0  # a red object top-left
    image[:, 2, 4:, 4:] = 1.0  # blue background bottom-right
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[:, :4, :4] = True
    return clf, image, masks


def test_a_unit_is_spurious_when_it_survives_removing_the_object(scene):
    clf, image, masks = scene
    units = [("units", 0), ("units", 1), ("units", 2), ("units", 3)]
    got = judge_units(clf, image, masks, units)
    assert [j.verdict for j in got] == ["core", "spurious", "uncertain", "core"]
    # The object is filled with the background's mean colour, which has no red: unit 0 keeps
    # nothing, unit 1 all of its blue, unit 3 its background share.
    assert got[0].kept == pytest.approx(0.0) and got[1].kept == pytest.approx(1.0)
    assert got[2].kept is None  # silent on its own image: nothing to compare
    assert got[3].kept == pytest.approx(0.3)
    # The activations that decided it travel with the verdict (the report shows them).
    assert (got[3].before, got[3].after) == (pytest.approx(1.0), pytest.approx(0.3))
    assert (got[1].before, got[1].after) == (pytest.approx(1.0), pytest.approx(1.0))
    # The cut-off decides: at keep 0.25, unit 3 is spurious.
    assert judge_units(clf, image, masks, units, keep=0.25)[3].verdict == "spurious"


def test_no_background_left_is_uncertain_and_bad_input_is_refused(scene):
    clf, image, masks = scene
    everything = torch.ones_like(masks)
    assert judge_units(clf, image[:1], everything[:1], [("units", 1)])[0].verdict == "uncertain"
    with pytest.raises(ValueError, match="one entry per image"):
        judge_units(clf, image, masks[:2], [("units", 0)] * 4)
    with pytest.raises(ValueError, match="keep"):
        judge_units(clf, image, masks, [("units", 0)] * 4, keep=0.0)


def test_removal_fills_the_mask_with_the_mean_of_the_rest():
    image = torch.zeros(1, 3, 4, 4)
    image[0, 1, :, 2:] = 1.0  # right half green
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True
    out = remove_objects(image, mask)
    assert torch.equal(out[0, :, 2:], image[0, :, 2:]) and torch.equal(
        out[0, :, :2, 2:], image[0, :, :2, 2:]
    )
    torch.testing.assert_close(out[0, 1, :2, :2], torch.full((2, 2), 8 / 12))


def test_masks_grow_by_a_pixel():
    probs = torch.zeros(1, 5, 5)
    probs[0, 2, 2] = 0.9
    assert grown_mask(probs, grow=0).sum() == 1
    assert grown_mask(probs).sum() == 9
    assert grown_mask(probs * 0.5).sum() == 0  # 0.45 < 0.5: no object anywhere
