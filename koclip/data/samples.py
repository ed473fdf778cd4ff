"""Real photos that ship inside installed packages: a gallery that needs no download.

scikit-image's sample data, scikit-learn's sample images and, where matplotlib is installed, its
sample photo. Each comes with a short Korean caption, shown beside search results.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from koclip.images import ImageInput

# (package, folder inside it, file, caption)
_CATALOGUE = (
    ("skimage", "data", "astronaut.png", "우주비행사의 초상 사진"),
    ("skimage", "data", "chelsea.png", "고양이 한 마리"),
    ("skimage", "data", "coffee.png", "접시 위의 커피 한 잔"),
    ("skimage", "data", "rocket.jpg", "발사대 위의 로켓"),
    ("skimage", "data", "camera.png", "카메라를 든 사람 (흑백)"),
    ("skimage", "data", "coins.png", "동전들 (흑백)"),
    ("skimage", "data", "moon.png", "달 표면 (흑백)"),
    ("skimage", "data", "horse.png", "말의 실루엣"),
    ("skimage", "data", "brick.png", "벽돌 벽"),
    ("skimage", "data", "grass.png", "풀밭"),
    ("skimage", "data", "gravel.png", "자갈"),
    ("skimage", "data", "hubble_deep_field.jpg", "허블 망원경이 찍은 은하들"),
    ("skimage", "data", "ihc.png", "현미경으로 본 조직"),
    ("skimage", "data", "retina.jpg", "망막 사진"),
    ("skimage", "data", "page.png", "책의 한 페이지"),
    ("skimage", "data", "text.png", "글자가 있는 그림"),
    ("skimage", "data", "cell.png", "현미경으로 본 세포"),
    ("skimage", "data", "clock_motion.png", "벽시계"),
    ("skimage", "data", "motorcycle_left.png", "오토바이"),
    ("skimage", "data", "color.png", "색깔 점들"),
    ("sklearn", "datasets/images", "china.jpg", "중국의 사원"),
    ("sklearn", "datasets/images", "flower.jpg", "꽃 한 송이"),
    ("matplotlib", "mpl-data/sample_data", "grace_hopper.jpg", "제복을 입은 여성의 사진"),
)


@dataclass(frozen=True)
class SamplePhoto:
    """A photo that ships with an installed package (scikit-image, scikit-learn or matplotlib): the package, the
    file's path and a Korean caption for it."""

    package: str
    path: Path
    caption: str

    @property
    def name(self) -> str:
        """`package/file name`: the photo's key as an indexing source."""
        return f"{self.package}/{self.path.name}"


def _package_dir(package: str) -> Path | None:
    # find_spec locates a package without importing it (scikit-learn's import is slow).
    spec = importlib.util.find_spec(package)
    return Path(spec.origin).parent if spec and spec.origin else None


@functools.cache
def sample_photos() -> tuple[SamplePhoto, ...]:
    """The catalogued photos present in this environment, in catalogue order."""
    found = []
    for package, folder, file, caption in _CATALOGUE:
        root = _package_dir(package)
        if root is not None and (root / folder / file).is_file():
            found.append(SamplePhoto(package, root / folder / file, caption))
    return tuple(found)


@dataclass(frozen=True)
class SampleSource:
    """The sample photos as an indexing source (see `koclip.search.sources.Source`)."""

    def describe(self) -> dict[str, Any]:
        """`{"kind": "samples"}`: the photos present are fixed by the installed packages."""
        return {"kind": "samples"}

    def keys(self) -> list[str]:
        """The present photos' names (`SamplePhoto.name`), in catalogue order."""
        return [photo.name for photo in sample_photos()]

    def read(self, key: str) -> tuple[ImageInput, dict[str, Any]]:
        """The photo named `key`: its path, and its caption as metadata."""
        photo = next(p for p in sample_photos() if p.name == key)
        return photo.path, {"caption": photo.caption}
