"""Image preprocessing in PIL and NumPy: what transformers' `CLIPImageProcessor` and
`ViTImageProcessor` compute, read from and saved as their `preprocessor_config.json`.

`clip`: resize the short side (bicubic), centre-crop, CLIP's mean and std, as `CLIPImageProcessor`
does. `training`: the same with the crop's offset rounded as torchvision's `CenterCrop` rounds it
(half to even) where transformers floors it: the transform the published models were trained with,
for both of their vision towers; on an odd margin the two crops sit one pixel apart. `vit`: resize
to a square (bilinear), mean and std 0.5.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from koclip.errors import KoCLIPError
from koclip.models.config import PUBLISHED_FORMATS, KoCLIPConfig

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)
CLIP_PROCESSOR, VIT_PROCESSOR = "CLIPImageProcessor", "ViTImageProcessor"
FILE = "preprocessor_config.json"
# How the centre crop's offset into the margin is rounded: "floor" as transformers' processors do,
# "round" as torchvision's CenterCrop does (Python's round, half to even), which training used.
CROP_OFFSETS = ("floor", "round")
CROP_OFFSET_KEY = "koclip_crop_offset"  # in preprocessor_config.json, where it is not "floor"


@dataclasses.dataclass(frozen=True)
class ImageTransform:
    """A checkpoint's image preprocessing, as its preprocessor_config.json states it: resize, optional centre crop,
    rescale and normalise, computed as transformers' CLIP or ViT image processor does. Called with PIL images, it
    returns a float32 NHWC batch."""

    processor: str  # the transformers class that computes the same: CLIP_PROCESSOR or VIT_PROCESSOR
    size: tuple[str, int] | tuple[int, int]  # ("shortest_edge", n) or (height, width)
    crop: tuple[int, int] | None  # (height, width), or None for no crop
    resample: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    rescale_factor: float | None = 1 / 255  # None: no rescaling
    normalize: bool = True
    resize: bool = True
    crop_offset: str = "floor"  # one of CROP_OFFSETS

    def __post_init__(self):
        if self.crop_offset not in CROP_OFFSETS:
            raise KoCLIPError(f"unknown crop offset {self.crop_offset!r}; expected one of {', '.join(CROP_OFFSETS)}")

    @classmethod
    def clip(cls, size: int) -> ImageTransform:
        """CLIPImageProcessor's transform: short side to `size` (bicubic), centre crop, CLIP's mean and std."""
        return cls(CLIP_PROCESSOR, ("shortest_edge", size), (size, size), Image.Resampling.BICUBIC, CLIP_MEAN, CLIP_STD)

    @classmethod
    def training(cls, size: int) -> ImageTransform:
        """The published models' training transform: `clip` with torchvision's rounding of the crop offset."""
        return dataclasses.replace(cls.clip(size), crop_offset="round")

    @classmethod
    def vit(cls, size: int) -> ImageTransform:
        """ViT's transform: resized to size x size (bilinear), no crop, mean and std 0.5."""
        return cls(VIT_PROCESSOR, (size, size), None, Image.Resampling.BILINEAR, HALF, HALF)

    def _output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize, computed as transformers does (truncating the long side)."""
        if self.size[0] != "shortest_edge":
            return self.size[1], self.size[0]
        short, long = sorted((width, height))
        new_long = int(self.size[1] * long / short)
        return (self.size[1], new_long) if width <= height else (new_long, self.size[1])

    def one(self, image: Image.Image) -> np.ndarray:
        """One RGB image as float32 HWC."""
        image = image.convert("RGB") if image.mode != "RGB" else image
        if self.resize:
            image = image.resize(self._output_size(*image.size), resample=self.resample)
        array = np.asarray(image)
        if self.crop is not None:
            array = _center_crop(array, self.crop, self.crop_offset)
        out = array.astype(np.float64) * self.rescale_factor if self.rescale_factor is not None else array
        out = out.astype(np.float32)
        if self.normalize:
            out = (out - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return out

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB PIL images as a float32 NHWC batch."""
        return np.stack([self.one(image) for image in images])

    def to_dict(self) -> dict[str, Any]:
        """The transform as preprocessor_config.json's fields, which `from_dict` reads back."""
        size = (
            {"shortest_edge": self.size[1]}
            if self.size[0] == "shortest_edge"
            else {"height": self.size[0], "width": self.size[1]}
        )
        d = {
            "image_processor_type": self.processor,
            "do_resize": self.resize,
            "size": size,
            "resample": int(self.resample),
            "do_rescale": self.rescale_factor is not None,
            "rescale_factor": self.rescale_factor or 1 / 255,
            "do_normalize": self.normalize,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
        }
        if self.processor == CLIP_PROCESSOR:
            crop = self.crop or (self.size[1],) * 2
            d |= {
                "do_center_crop": self.crop is not None,
                "crop_size": {"height": crop[0], "width": crop[1]},
                "do_convert_rgb": True,
            }
        if self.crop_offset != "floor":  # transformers keeps an unknown key as an attribute and ignores it
            d[CROP_OFFSET_KEY] = self.crop_offset
        return d

    def save(self, directory: Path) -> None:
        """Write the transform to `directory`/preprocessor_config.json."""
        (Path(directory) / FILE).write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageTransform:
        """Read a saved `CLIPImageProcessor` or `ViTImageProcessor` (or an older feature extractor of either)."""
        legacy = str(d.get("feature_extractor_type", "")).replace("FeatureExtractor", "ImageProcessor")
        processor = d.get("image_processor_type") or legacy
        if processor not in (CLIP_PROCESSOR, VIT_PROCESSOR):
            raise KoCLIPError(
                f"names an image processor koclip does not use ({processor!r}); "
                f"it reads {CLIP_PROCESSOR} and {VIT_PROCESSOR}"
            )
        default = cls.clip(224) if processor == CLIP_PROCESSOR else cls.vit(224)
        size = d.get("size")
        if isinstance(size, int):  # older files: CLIP's int is the short side, ViT's the square's side
            size = {"shortest_edge": size} if processor == CLIP_PROCESSOR else {"height": size, "width": size}
        size = size or {}
        if "shortest_edge" in size:
            resize = ("shortest_edge", int(size["shortest_edge"]))
        elif "height" in size and "width" in size:
            resize = (int(size["height"]), int(size["width"]))
        else:
            resize = default.size
        crop = None
        if processor == CLIP_PROCESSOR and d.get("do_center_crop", True):
            c = d.get("crop_size", default.crop[0])
            crop = (int(c), int(c)) if isinstance(c, int) else (int(c["height"]), int(c["width"]))
        return cls(
            processor,
            resize,
            crop,
            int(d.get("resample", default.resample)),
            tuple(float(x) for x in d.get("image_mean", default.mean)),
            tuple(float(x) for x in d.get("image_std", default.std)),
            float(d.get("rescale_factor", 1 / 255)) if d.get("do_rescale", True) else None,
            bool(d.get("do_normalize", True)),
            bool(d.get("do_resize", True)),
            str(d.get(CROP_OFFSET_KEY, "floor")),
        )

    @classmethod
    def read(cls, path: Path) -> ImageTransform:
        """The transform in the JSON file `path`; KoCLIPError naming the file when it is unreadable or states a
        transform koclip does not run."""
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (
            OSError,
            UnicodeDecodeError,
            json.JSONDecodeError,
            AttributeError,
            TypeError,
            ValueError,
            KeyError,
        ) as exc:
            raise KoCLIPError(f"{path} is unreadable ({type(exc).__name__}: {exc})") from None
        except KoCLIPError as exc:
            raise KoCLIPError(f"{path} {exc}") from None


def _offset(margin: int, rounding: str) -> int:
    """Where a crop starts in a margin of `margin` pixels: floored (transformers) or rounded half to
    even (torchvision's `int(round(margin / 2.0))`)."""
    return int(round(margin / 2.0)) if rounding == "round" else margin // 2


def _center_crop(array: np.ndarray, crop: tuple[int, int], rounding: str = "floor") -> np.ndarray:
    """The centre (height, width) of an HWC array, zero-padded where the array is smaller, as transformers
    crops; `rounding` places the crop in an odd margin (see CROP_OFFSETS)."""
    height, width = array.shape[:2]
    out_h, out_w = crop
    top, left = _offset(height - out_h, rounding), _offset(width - out_w, rounding)
    if top >= 0 and left >= 0:
        return array[top : top + out_h, left : left + out_w]
    padded = np.zeros((max(height, out_h), max(width, out_w)) + array.shape[2:], array.dtype)
    top_pad, left_pad = -(-(padded.shape[0] - height) // 2), -(-(padded.shape[1] - width) // 2)
    padded[top_pad : top_pad + height, left_pad : left_pad + width] = array
    top, left = top + top_pad, left + left_pad
    return padded[max(0, top) : top + out_h, max(0, left) : left + out_w]


def checkpoint_image_transform(directory: Path, config: KoCLIPConfig, model_format: str) -> ImageTransform:
    """The image preprocessing that goes with a checkpoint.

    The published formats always get the transform they were trained with (`training`: the CLIP
    transform with torchvision's crop offset, at the vision tower's size), whatever processor their
    folder holds. Other checkpoints get the folder's
    preprocessor_config.json when it has one, else a transform that suits their vision tower.
    """
    if model_format in PUBLISHED_FORMATS:
        return ImageTransform.training(config.image_size)
    if (directory / FILE).is_file():
        return ImageTransform.read(directory / FILE)
    return (ImageTransform.clip if config.vision_type == "clip" else ImageTransform.vit)(config.image_size)
