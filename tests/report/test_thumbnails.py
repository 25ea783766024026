"""The report's thumbnails: the object mask drawn as an outline, sizes as asked."""

import io

from PIL import Image

from dxray.catalog.sample import sample_images
from dxray.report.thumbnails import MASK_COLOUR, thumbnail


def test_thumbnail_draws_the_mask_outline():
    png, mask = sample_images(0, presence=0.9, context="water", seed=0)
    outlined = thumbnail(png, mask, 96)
    assert outlined.size == (96, 96)
    assert MASK_COLOUR in {c for _, c in outlined.getcolors(96 * 96)}
    png, empty_mask = sample_images(0, presence=0.0, context="water", seed=0)
    plain = thumbnail(png, empty_mask, 96)
    assert MASK_COLOUR not in {c for _, c in plain.getcolors(96 * 96)}
    assert thumbnail(png, None, 64).size == (64, 64)
    Image.open(io.BytesIO(png)).verify()
