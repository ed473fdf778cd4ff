"""KoCLIP: Korean image-text dual encoders (a Korean port of OpenAI's CLIP).

The heavy parts (JAX, Flax) load on first use, so `python -m koclip --help` and
`import koclip.data.scenes` stay fast.
"""

import importlib.util
import sys
from importlib import import_module

from koclip.errors import (
    GalleryError,
    InvalidImageError,
    InvalidInputError,
    KoCLIPError,
    ModelUnavailableError,
    UnknownModelError,
)
from koclip.registry import DEFAULT_TEMPLATE

_LAZY = {"load": "koclip.api", "random_model": "koclip.api", "KoCLIP": "koclip.api", "open_image": "koclip.images"}


# Modules that moved into the package's folders, under the names users may have imported them by:
# `import koclip.gallery` and `from koclip import gallery` give koclip.search.gallery itself.
MOVED = {
    "gallery": "koclip.search.gallery",
    "indexing": "koclip.search.indexing",
    "scenes": "koclip.data.scenes",
    "samples": "koclip.data.samples",
    "train": "koclip.training.train",
    "evaluate": "koclip.training.evaluate",
    "recipe": "koclip.training.recipe",
    "config": "koclip.models.config",
    "backends": "koclip.models.backends",
    "model": "koclip.models.dual_encoder",
    "torch_model": "koclip.models.torch_twin",
    "processing": "koclip.text_batches",
}


# Modules split in parts: importing one by its old name says where its parts went.
SPLIT = {
    "ann": "koclip.search.exact (exact search), koclip.search.indexes (the index kinds), "
    "koclip.search.index_files (their files), koclip.search.tuning (choose) and koclip.units (sizes)",
}


class _MovedModules:  # a meta path finder and its loader (importlib.abc costs 15 ms to import)
    """Finds `koclip.<old name>` as the module now at MOVED[old name]; says where a SPLIT one went."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package in (__name__, "koclip.search") and name in SPLIT:
            raise ModuleNotFoundError(f"{fullname} was split into {SPLIT[name]}", name=fullname)
        return importlib.util.spec_from_loader(fullname, self) if package == __name__ and name in MOVED else None

    def create_module(self, spec):
        return import_module(MOVED[spec.name.rpartition(".")[2]])

    def exec_module(self, module):
        pass  # already run, under its new name


sys.meta_path.append(_MovedModules())


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in MOVED:
        return import_module(MOVED[name])
    if name in SPLIT:
        raise AttributeError(f"koclip.{name} was split into {SPLIT[name]}")
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
