"""Erasing objects: the hole is filled from the image's own background, gradients flow only
through what is kept, and the masks come from the segmenter (never differentiated)."""

import pytest
import torch

from dxray.shortcuts.erase import ObjectEraser, erase


def striped(size=16):
    """[1, 3, H, W]: horizontal stripes (a background texture) with a flat square object."""
    image = torch.zeros(1, 3, size, size)
    image[:, :, ::2] = 1.0
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[:, 5:11, 5:11] = True
    image[:, 1][mask] = 0.2  # the object: another colour
    return image, mask


def test_texture_fill_continues_the_background_and_hides_the_silhouette():
    image, mask = striped()
    out = erase(image, mask, "texture")
    assert torch.equal(out[:, :, ~mask[0]], image[:, :, ~mask[0]])  # the rest is untouched
    # shifted by half the image (8 rows, an even number): the stripes continue in the hole
    clean, _ = striped()
    clean[:, 1] = torch.where(mask, clean[:, 0], clean[:, 1])
    assert torch.equal(out, clean)


def test_mean_and_blur_fills_leave_no_hole():
    image, mask = striped()
    for fill in ("mean", "blur"):
        out = erase(image, mask, fill)
        assert torch.isfinite(out).all() and out.shape == image.shape
        assert torch.equal(out[:, :, ~mask[0]], image[:, :, ~mask[0]])
        hole = out[:, 1][mask]
        assert abs(float(hole.mean()) - 0.2) > 0.2  # the object's colour is gone
        assert float(hole.min()) >= 0.0 and float(hole.max()) <= 1.0  # the background's range
    mean = erase(image, mask, "mean")[:, 0][mask]
    assert torch.allclose(mean, torch.full_like(mean, 0.5), atol=0.02)  # half the rows are 1


@pytest.mark.parametrize("fill", ["texture", "blur", "mean"])
def test_no_gradient_reaches_the_erased_pixels(fill):
    image, mask = striped()
    image.requires_grad_(True)
    erase(image, mask, fill).sum().backward()
    assert float(image.grad[:, :, mask[0]].abs().sum()) == 0.0
    assert float(image.grad[:, :, ~mask[0]].abs().sum()) > 0.0


class FakeSegmenter:
    device, dtype = torch.device("cpu"), torch.float32

    def __init__(self, mask):
        self.mask = mask
        self.queries = []

    def union_mask(self, images, queries):
        self.queries.append(list(queries))
        assert not images.requires_grad  # the masks are never differentiated
        return self.mask.float().expand(images.shape[0], -1, -1) * 0.9


def test_the_eraser_grows_the_segmenter_masks_and_keeps_them():
    image, mask = striped()
    segmenter = FakeSegmenter(mask[0])
    eraser = ObjectEraser(segmenter, ["a cat", "a dog"], grow=1)
    out = eraser(image.requires_grad_(True))
    assert segmenter.queries == [["a cat", "a dog"]]
    grown = eraser.last_masks[0]
    assert bool(grown[4, 4]) and not bool(grown[3, 3]) and int(grown.sum()) == 8 * 8
    assert out.requires_grad  # the kept pixels still carry the gradient
    with pytest.raises(ValueError, match="at least one"):
        ObjectEraser(segmenter, [])
    with pytest.raises(ValueError, match="fill"):
        ObjectEraser(segmenter, ["a cat"], fill="paint")
