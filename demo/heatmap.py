"""The Text → Patch page's picture: an image with each grid cell tinted by its score, and a colour
bar that gives the scale."""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from koclip.images import ImageInput, open_image
from koclip.patches import PatchRanking

# Viridis at nine even steps: dark blue for the lowest score, yellow for the highest. It reads in
# greyscale and to colour-blind eyes, and its brightness rises steadily with the value.
VIRIDIS = np.array(
    [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ],
    dtype=np.float32,
)
OVERLAY_ALPHA = 0.55  # enough colour to read the scale, enough image to see what each cell holds


def colour_map(values: np.ndarray) -> np.ndarray:
    """RGB uint8 colours for values in [0, 1] (clipped), along VIRIDIS."""
    position = np.clip(np.asarray(values, np.float32), 0.0, 1.0) * (len(VIRIDIS) - 1)
    low = np.floor(position).astype(int).clip(0, len(VIRIDIS) - 2)
    fraction = (position - low)[..., None]
    return ((1 - fraction) * VIRIDIS[low] + fraction * VIRIDIS[low + 1]).round().astype(np.uint8)


@dataclasses.dataclass
class HeatMap:
    image: Image.Image  # the image with every cell tinted by its score and the best cell outlined
    colour_bar: Image.Image  # the scale: VIRIDIS from `low` (bottom) to `high` (top), with ticks
    low: float
    high: float
    label: str

    def figure(self, gap: int = 12) -> Image.Image:
        """The image and its colour bar side by side, as one picture."""
        out = Image.new(
            "RGB",
            (self.image.width + gap + self.colour_bar.width, max(self.image.height, self.colour_bar.height)),
            (255, 255, 255),
        )
        out.paste(self.image, (0, (out.height - self.image.height) // 2))
        out.paste(self.colour_bar, (self.image.width + gap, (out.height - self.colour_bar.height) // 2))
        return out


def heatmap(
    image: ImageInput, ranking: PatchRanking, scores: np.ndarray, label: str, percent: bool = False, size: int = 640
) -> HeatMap:
    """Cells coloured by `scores` on a scale from their lowest to their highest value, with its colour bar;
    drawn with the image's longer side at `size` pixels."""
    image = open_image(image).convert("RGB")
    scale = size / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BICUBIC)
    boxes = [tuple(round(v * scale) for v in box) for box in ranking.boxes]
    scores = np.asarray(scores, np.float32)
    low, high = float(scores.min()), float(scores.max())
    colours = colour_map((scores - low) / ((high - low) or 1.0))
    tint = Image.new("RGB", image.size)
    draw = ImageDraw.Draw(tint)
    for box, colour in zip(boxes, colours):
        draw.rectangle(box, fill=tuple(int(c) for c in colour))
    out = Image.blend(image, tint, OVERLAY_ALPHA)
    best = boxes[int(ranking.order[0])]
    line = max(2, size // 160)
    outline = ImageDraw.Draw(out)
    outline.rectangle(best, outline=(255, 255, 255), width=line)
    outline.rectangle(tuple(v + d for v, d in zip(best, (line, line, -line, -line))), outline=(0, 0, 0), width=1)
    return HeatMap(out, colour_bar(low, high, out.height, percent), low, high, label)


def colour_bar(low: float, high: float, height: int, percent: bool = False, width: int = 24) -> Image.Image:
    """A vertical VIRIDIS bar, `high` at the top, with five labelled ticks to its right."""
    height = max(height, 120)
    font = ImageFont.load_default(size=max(11, height // 28))
    ticks = np.linspace(high, low, 5)
    texts = [f"{t:.0%}" if percent else f"{t:.3f}" for t in ticks]
    text_width = max(int(font.getlength(text)) for text in texts)
    margin = font.size
    bar = Image.new("RGB", (width + 8 + text_width + 8, height + 2 * margin), (255, 255, 255))
    ramp = colour_map(np.linspace(1.0, 0.0, height))  # top row: the highest value
    bar.paste(Image.fromarray(np.repeat(ramp[:, None, :], width, axis=1)), (0, margin))
    draw = ImageDraw.Draw(bar)
    draw.rectangle((0, margin, width - 1, margin + height - 1), outline=(90, 90, 90))
    for i, text in enumerate(texts):
        y = margin + round(i * (height - 1) / 4)
        draw.line((width, y, width + 5, y), fill=(60, 60, 60))
        draw.text((width + 8, y), text, fill=(30, 30, 30), font=font, anchor="lm")
    return bar
