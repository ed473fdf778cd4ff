"""What the operator of a server (a Hugging Face Space, say) sets, through environment variables.

On a Space these are the Space's variables (Settings → Variables and secrets); they are read each
time they are used, so a test can change them.

  KOCLIP_MODEL               the model the sidebar starts on (default: koclip-base when it can be
                             had, else koclip-mini)
  KOCLIP_GALLERY_DATASET     the Hugging Face image dataset Text → Image offers to index
                             (default: detection-datasets/coco, COCO 2017 photos)
  KOCLIP_GALLERY_SPLIT       its split, slicing allowed (default: val[:3000], 3,000 photos)
  KOCLIP_GALLERY_IMAGE_COLUMN    (default: image)
  KOCLIP_GALLERY_CAPTION_COLUMN  a text column to show beside results (default: none)
  KOCLIP_EMBEDDINGS          where galleries built by the app are written and looked for
                             (default: the app's embeddings/ folder; on a Space with persistent
                             storage, /data/embeddings). The galleries the app ships with (see
                             registry.ModelInfo.gallery) are offered wherever this points.
  KOCLIP_API                 "1" mounts the search service (koclip.serve) under /api beside the
                             pages: clip-retrieval's /api/knn-service and the JSON API, on the
                             default model's galleries, sharing the pages' loaded model
                             (default: off)
  KOCLIP_COMPILATION_CACHE   (read by koclip.models.backends) where compiled Flax programs are
                             kept, so a restarted server skips
                             compiling (default: ~/.cache/koclip/xla; "off" turns it off)
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from koclip import registry

APP_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_EMBEDDINGS = APP_ROOT / "embeddings"


def default_model() -> str | None:
    return os.environ.get("KOCLIP_MODEL") or None


def api_enabled() -> bool:
    """Whether the operator asked for the search service beside the pages (KOCLIP_API)."""
    return (os.environ.get("KOCLIP_API") or "").strip().lower() in ("1", "true", "yes", "on")


def embeddings_dir() -> Path:
    return Path(os.environ.get("KOCLIP_EMBEDDINGS") or SHIPPED_EMBEDDINGS)


def shipped_gallery(model_name: str) -> Path | None:
    """The gallery that ships with the app for `model_name` (see registry.ModelInfo.gallery), if any."""
    info = registry.lookup(model_name)
    path = SHIPPED_EMBEDDINGS / info.gallery if info is not None and info.gallery else None
    return path if path is not None and path.is_dir() else None


@dataclasses.dataclass(frozen=True)
class GalleryDataset:
    name: str
    split: str
    image_column: str
    caption_column: str | None

    def folder_name(self, model_name: str) -> str:
        """The gallery folder for this dataset and model, in plain characters."""
        name = Path(self.name).name if Path(self.name).exists() else self.name
        return re.sub(r"[^A-Za-z0-9]+", "-", f"{model_name} {name} {self.split}").strip("-").lower()


def gallery_dataset() -> GalleryDataset:
    return GalleryDataset(
        name=os.environ.get("KOCLIP_GALLERY_DATASET") or "detection-datasets/coco",
        split=os.environ.get("KOCLIP_GALLERY_SPLIT") or "val[:3000]",
        image_column=os.environ.get("KOCLIP_GALLERY_IMAGE_COLUMN") or "image",
        caption_column=os.environ.get("KOCLIP_GALLERY_CAPTION_COLUMN") or None,
    )
