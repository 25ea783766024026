"""The report's images: explanation thumbnails with the object mask drawn on, as data URIs.

Contract: `thumbnail` takes the PNG bytes stored in the catalog (and optionally the
segmenter's mask PNG) and returns a `size` x `size` RGB image; `data_uri` turns an image into
an inline "data:image/png;base64,..." string, so the page needs no files beside it.
"""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageChops, ImageFilter

THUMB = 120  # thumbnail side in pixels
MASK_COLOUR = (255, 214, 0)  # the object outline: yellow reads on water, grass and skin


def data_uri(image: Image.Image) -> str:
    """The image as an inline PNG data URI."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail(png: bytes, mask_png: bytes | None, size: int = THUMB) -> Image.Image:
    """The explanation image at `size` x `size`, with the outline of its object mask
    (mask >= 0.5) drawn in MASK_COLOUR and the object lightly tinted."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    resample = Image.Resampling.LANCZOS if min(image.size) >= size else Image.Resampling.BICUBIC
    image = image.resize((size, size), resample)
    if not mask_png:
        return image
    mask = Image.open(io.BytesIO(mask_png))
    mask = mask.getchannel("A") if mask.mode in ("RGBA", "LA") else mask.convert("L")
    mask = mask.resize((size, size), Image.Resampling.BILINEAR).point(lambda v: 255 * (v >= 128))
    if not mask.getbbox():
        return image
    edge = ImageChops.subtract(mask, mask.filter(ImageFilter.MinFilter(3)))
    edge = edge.filter(ImageFilter.MaxFilter(3))  # a 2-3 px line
    colour = Image.new("RGB", image.size, MASK_COLOUR)
    tinted = Image.blend(image, colour, 0.18)
    image = Image.composite(tinted, image, mask)
    return Image.composite(colour, image, edge)
