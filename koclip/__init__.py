"""KoCLIP: Korean image-text dual encoders (a Korean port of OpenAI's CLIP)."""

from koclip.api import DEFAULT_TEMPLATE, KoCLIP, load
from koclip.errors import (
    GalleryError,
    InvalidImageError,
    InvalidInputError,
    KoCLIPError,
    ModelUnavailableError,
    UnknownModelError,
)
from koclip.images import open_image

__all__ = [
    "DEFAULT_TEMPLATE",
    "GalleryError",
    "InvalidImageError",
    "InvalidInputError",
    "KoCLIP",
    "KoCLIPError",
    "ModelUnavailableError",
    "UnknownModelError",
    "load",
    "open_image",
]
