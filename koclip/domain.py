"""How far an image lies from what a model was trained on.

koclip-mini saw only generated scenes (koclip.data.scenes): flat or gently shaded backgrounds from a
fixed list, and shapes in eight fixed colours. A photo is none of that, and its embedding, however
confidently ranked, means nothing. A scene's pixels are almost all within a small distance of that
palette (its backgrounds allowed their gradient's brightness shift); a photo's mostly are not.

`scene_likeness` is the share of such pixels; below THRESHOLD an image is called unlike the scenes.
tests/test_domain.py holds it to its rates on held-out scenes and boards (none flagged) and on the
photos that ship with scikit-image, scikit-learn and matplotlib (nearly all flagged: mostly flat dark
or light photos, a deep-field sky or a micrograph, pass as scenes); the README gives the figures.
JPEG's colour subsampling smears a 64-pixel scene, so a few scenes saved as JPEG are flagged. Models
trained on photos (the published ones) get no such check.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from koclip.data import scenes

THRESHOLD = 0.90
SIDE = 64  # the scenes' own size, and koclip-mini's input
_TOLERANCE = 24.0  # RGB distance: anti-aliasing, background noise (std 4) and JPEG leave pixels this close
_OBJECTS = np.array(list(scenes.RGB.values()), dtype=np.float32)
_BACKGROUNDS = np.asarray(scenes.BACKGROUNDS, dtype=np.float32)


def scene_likeness(image: Image.Image) -> float:
    """The share of the image's pixels (at 64×64) in the generated scenes' palette: near 1 for a scene."""
    pixels = np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR), np.float32)
    pixels = pixels.reshape(-1, 3)
    to_object = np.linalg.norm(pixels[:, None] - _OBJECTS[None], axis=-1).min(axis=1)
    offset = pixels[:, None] - _BACKGROUNDS[None]
    shift = np.clip(offset.mean(axis=-1, keepdims=True), -scenes.GRADIENT, scenes.GRADIENT)
    to_background = np.linalg.norm(offset - shift, axis=-1).min(axis=1)
    return float((np.minimum(to_object, to_background) <= _TOLERANCE).mean())


def trained_on_photos(model) -> bool:
    """Whether the model was trained on photos (the registry says; an unregistered model may have been)."""
    return model.info is None or model.info.photos


def knows_images_like(model, image: Image.Image) -> bool:
    """Whether `image` is of the kind `model` was trained on: always for a model trained on photos."""
    return trained_on_photos(model) or scene_likeness(image) >= THRESHOLD


def warning(model, what: str = "This image does") -> str:
    """What to tell a user whose image (or images: `what`) lies outside what `model` was trained on."""
    return _unlike(model.name, what)


def gallery_warning(model_name: str, unlike: int, count: int) -> str:
    """What to tell a user of a gallery of `count` images, `unlike` of which lie outside what the
    model (a gallery's manifest names it) was trained on; indexing counts them (manifest
    "unlike_training")."""
    return _unlike(model_name, f"{unlike:,} of the {count:,} images in this gallery do")


def _unlike(model_name: str, what: str) -> str:
    return (
        f"{what} not look like the generated scenes {model_name} was trained on (flat backgrounds, shapes "
        "in eight colours). It has never seen a photo, so its ranking says nothing about what a photo shows. "
        "Pick koclip-base or koclip-large for photos."
    )
