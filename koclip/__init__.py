"""KoCLIP: Korean image-text dual encoders (a Korean port of OpenAI's CLIP).

The heavy parts (JAX, Flax) load on first use, so `python -m koclip --help` and
`import koclip.scenes` stay fast.
"""

from importlib import import_module

from koclip.errors import (
    GalleryError,
    InvalidImageError,
    InvalidInputError,
    KoCLIPError,
    ModelUnavailableError,
    UnknownModelError,
)

DEFAULT_TEMPLATE = "이것은 {} 이다."

_LAZY = {"load": "koclip.api", "random_model": "koclip.api", "KoCLIP": "koclip.api", "open_image": "koclip.images"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'koclip' has no attribute {name!r}")


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
    "random_model",
]
