"""Opening images safely: any mode becomes RGB, EXIF orientation is applied, and files that are
not images, are truncated, or are too large to decode are refused with `InvalidImageError`.

Only the formats people send as photos are read: FORMATS (PNG, JPEG, WebP, GIF, BMP, TIFF). Pillow
would otherwise pick one of its dozens of decoders by a file's first bytes, including rarely used ones
(DDS, BLP, SPIDER, AVIF...) that fail with exceptions of their own; an image in another format is
refused as unreadable, whatever its name says. Any failure to decode a file in those formats is
the same `InvalidImageError`.

Every budget is checked from the header, before a pixel is decoded: at most MAX_PIXELS, at least
MIN_SIDE pixels a side, and a long side at most MAX_ASPECT times the short one (CLIP's transform
scales the short side up to 224, so a 40000x10 strip would otherwise grow to 200 megapixels).
Images over WORK_PIXELS are reduced right after decoding, before any conversion copies them, so
the memory an image costs stays near its decoded size.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from koclip.errors import InvalidImageError

MAX_PIXELS = 40_000_000
MIN_SIDE = 8
MAX_ASPECT = 20
WORK_PIXELS = 4_000_000  # far more than any tower's input; reducing to this changes no answer

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # Pillow's names; JPEG includes MPO, a camera's JPEG
FORMAT_NAMES = "PNG, JPEG, WebP, GIF, BMP or TIFF"

ImageInput = Image.Image | str | os.PathLike | bytes | BinaryIO


def _describe(source: ImageInput) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", None) or "the image"


def _unreadable(source: ImageInput, why: str) -> InvalidImageError:
    return InvalidImageError(f"{_describe(source)} is not a readable image: {why}; send a whole {FORMAT_NAMES} file")


def _check_budget(image: Image.Image, source: ImageInput, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidImageError(f"{_describe(source)} is too large: the limit is {max_pixels / 1e6:.0f} megapixels")
    if min(width, height) < MIN_SIDE:
        raise InvalidImageError(
            f"{_describe(source)} is too small ({width}x{height} pixels): it needs at least {MIN_SIDE} pixels a side"
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InvalidImageError(
            f"{_describe(source)} is {width}x{height} pixels, a strip rather than a picture: the long side "
            f"may be at most {MAX_ASPECT} times the short one"
        )


def _reduced(image: Image.Image) -> Image.Image:
    """`image` shrunk by a whole factor to at most WORK_PIXELS (JPEGs are decoded at that size)."""
    factor = 1
    while image.width * image.height > WORK_PIXELS * factor * factor:
        factor += 1
    if factor == 1:
        image.load()
        return image
    if image.format == "JPEG":
        image.draft(image.mode, (image.width // factor, image.height // factor))
    image.load()
    if image.width * image.height <= WORK_PIXELS:
        return image
    try:
        return image.reduce(factor)
    except ValueError:  # modes reduce() does not handle, such as 16-bit greyscale
        return image.resize((max(1, image.width // factor), max(1, image.height // factor)), Image.Resampling.BOX)


def open_image(source: ImageInput, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An RGB image from a PIL image, a path, raw bytes or a binary file object.

    The pixel count and shape are checked from the header, before any pixel is decoded.
    """
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, (str, os.PathLike, bytes, bytearray)) or hasattr(source, "read"):
        stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        try:
            image = Image.open(stream, formats=FORMATS)
        except Image.DecompressionBombError:
            raise InvalidImageError(
                f"{_describe(source)} is too large: the limit is {max_pixels / 1e6:.0f} megapixels"
            ) from None
        except UnidentifiedImageError:
            raise _unreadable(source, "it is in none of the formats koclip reads") from None
        except Exception as exc:  # a missing file, or a header a decoder rejects in its own way
            raise _unreadable(source, str(exc)) from None
    else:
        raise InvalidImageError(
            f"expected an image (a PIL image, a file path, bytes or a binary file), got {type(source).__name__}"
        )
    _check_budget(image, source, max_pixels)
    try:
        image = _reduced(image)
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            # Transparent pixels become white rather than whatever colour they happen to store.
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, rgba)
            image = image.convert("RGB")
    except Exception as exc:  # Pillow's decoders report damaged data with many exception types
        raise _unreadable(source, f"its {image.format or 'pixel'} data is truncated or damaged ({exc})") from None
    return image
