"""Text → patch: cut an image into a grid and rank the cells by how well they match a text."""

from __future__ import annotations

import dataclasses

import numpy as np

from koclip.api import softmax
from koclip.errors import InvalidInputError
from koclip.images import MIN_SIDE, ImageInput, open_image

MAX_GRID = 8


@dataclasses.dataclass
class PatchRanking:
    """How well each cell of a rows x cols grid over an image matches a text: the cells' pixel boxes, their cosine
    similarities and the softmax of those at the model's logit scale, all row-major. `rank_patches` makes one."""

    rows: int
    cols: int
    boxes: list[tuple[int, int, int, int]]  # (x0, y0, x1, y1), row-major
    cosine: np.ndarray  # one cosine similarity per cell, row-major
    probs: np.ndarray  # softmax over the cells at the model's logit scale

    @property
    def order(self) -> np.ndarray:
        """Cell indices, best first."""
        return np.argsort(-self.cosine, kind="stable")

    def cell(self, index: int) -> tuple[int, int]:
        """The (row, column) of cell `index` in row-major order."""
        return divmod(int(index), self.cols)

    def softmax(self, temperature: float) -> np.ndarray:
        """Softmax over the cells of cosine / `temperature`: at the model's own temperature (about 0.01)
        one cell takes almost everything; a higher one shows how the others compare."""
        if not temperature > 0:
            raise InvalidInputError("the temperature must be above 0")
        return softmax(self.cosine / temperature)


def grid_boxes(width: int, height: int, rows: int, cols: int) -> list[tuple[int, int, int, int]]:
    """The (x0, y0, x1, y1) pixel boxes of a rows x cols grid over a width x height image, row-major.
    InvalidInputError if rows or cols is not a whole number from 1 to MAX_GRID, or a cell would be under MIN_SIDE
    pixels a side."""
    if not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_GRID for n in (rows, cols)):
        raise InvalidInputError(f"rows and columns must be whole numbers between 1 and {MAX_GRID}")
    if width // cols < MIN_SIDE or height // rows < MIN_SIDE:
        raise InvalidInputError(
            f"the image is {width}x{height} pixels: a {rows}x{cols} grid would cut cells under {MIN_SIDE} pixels "
            "a side; use fewer rows or columns, or a larger image"
        )
    xs = np.linspace(0, width, cols + 1).round().astype(int)
    ys = np.linspace(0, height, rows + 1).round().astype(int)
    return [(int(xs[c]), int(ys[r]), int(xs[c + 1]), int(ys[r + 1])) for r in range(rows) for c in range(cols)]


def rank_patches(model, image: ImageInput, query: str, rows: int = 3, cols: int = 3) -> PatchRanking:
    """Encode every cell in one batched call and score it against `query`."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("the query is empty or not text: type what to look for")
    image = open_image(image)
    boxes = grid_boxes(image.width, image.height, rows, cols)
    cells = model.encode_image([image.crop(box) for box in boxes])
    cosine = (cells @ model.encode_text([query.strip()])[0]).astype(np.float32)
    return PatchRanking(rows, cols, boxes, cosine, model.probabilities(cosine))
