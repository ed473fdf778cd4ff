"""Opening images safely: any mode becomes RGB, EXIF orientation is applied, and files that are
not images, are truncated, or are too large to decode are refused with `InvalidImageError`."""

from __future__ import annotations

import io
import os
from typing import BinaryIO, Union

from PIL import Image, ImageOps, UnidentifiedImageError

from koclip.errors import InvalidImageError

MAX_PIXELS = 40_000_000

ImageInput = Union[Image.Image, str, os.PathLike, bytes, BinaryIO]


def _describe(source: ImageInput) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", None) or "the image"


def open_image(source: ImageInput, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An RGB image from a PIL image, a path, raw bytes or a binary file object.

    The pixel count is checked from the header, before any pixel is decoded.
    """
    if isinstance(source, Image.Image):
        image = source
    else:
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        try:
            image = Image.open(stream)
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise InvalidImageError(f"{_describe(source)} is not a readable image ({exc})") from None
        except Image.DecompressionBombError:
            image = None  # far over any limit: PIL refused it from the header
    if image is None or image.width * image.height > max_pixels:
        raise InvalidImageError(f"{_describe(source)} is too large: the limit is {max_pixels / 1e6:.0f} megapixels")
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            # Transparent pixels become white rather than whatever colour they happen to store.
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, rgba)
            image = image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImageError(f"{_describe(source)} could not be decoded ({exc}); is it truncated?") from None
    return image
