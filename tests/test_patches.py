"""Text → Patch's heat map: a colour scale over the cells, its colour bar, and the best cell outlined."""

import numpy as np
import pytest
from PIL import Image

from demo import heatmap as drawing
from demo.heatmap import VIRIDIS, colour_map, heatmap
from koclip.errors import InvalidInputError
from koclip.patches import PatchRanking, grid_boxes


def ranking(cosine, rows=2, cols=2, side=200) -> PatchRanking:
    cosine = np.asarray(cosine, np.float32)
    return PatchRanking(rows, cols, grid_boxes(side, side, rows, cols), cosine, np.full(len(cosine), 1 / len(cosine)))


def test_colour_map_runs_from_dark_blue_to_yellow_growing_brighter():
    colours = colour_map(np.linspace(0, 1, 50)).astype(int)
    assert (colours[0] == VIRIDIS[0]).all() and (colours[-1] == VIRIDIS[-1]).all()
    brightness = colours @ np.array([299, 587, 114])
    assert (np.diff(brightness) >= 0).all()
    assert (colour_map(np.array([-3.0, 7.0])) == colour_map(np.array([0.0, 1.0]))).all()


def test_each_cell_takes_the_colour_of_its_score_and_the_best_is_outlined():
    grey = Image.new("RGB", (200, 200), (128, 128, 128))
    heat = heatmap(grey, ranking([0.1, 0.4, 0.25, -0.2]), np.array([0.1, 0.4, 0.25, -0.2]), "cosine", size=200)
    assert (heat.low, heat.high) == pytest.approx((-0.2, 0.4))
    pixels = np.asarray(heat.image).astype(int)
    expected = {1: VIRIDIS[-1], 3: VIRIDIS[0]}  # best cell (top right) yellow, worst (bottom right) dark blue
    for index, colour in expected.items():
        x0, y0, x1, y1 = ranking([0] * 4).boxes[index]
        centre = pixels[(y0 + y1) // 2, (x0 + x1) // 2]
        assert np.abs(centre - ((1 - drawing.OVERLAY_ALPHA) * 128 + drawing.OVERLAY_ALPHA * colour)).max() <= 2
    x0, y0, x1, y1 = ranking([0] * 4).boxes[1]
    assert (pixels[y0 + 1, (x0 + x1) // 2] == 255).all()  # white outline around the best cell only
    assert not (pixels[y0 + 1, 50] == 255).all()


def test_the_colour_bar_shows_the_scale_top_to_bottom():
    heat = heatmap(
        Image.new("RGB", (300, 150), "white"), ranking([0.3, 0.1], 1, 2, 300), np.array([0.3, 0.1]), "c", size=300
    )
    bar = np.asarray(heat.colour_bar).astype(int)
    column = bar[:, 12]  # through the middle of the coloured strip
    coloured = np.flatnonzero(np.abs(column - 255).sum(axis=1) > 30)
    top, bottom = column[coloured[1]], column[coloured[-2]]
    assert np.abs(top - VIRIDIS[-1]).max() <= 12 and np.abs(bottom - VIRIDIS[0]).max() <= 12
    assert bar.shape[0] >= heat.image.height  # as tall as the image it explains
    # The ticks are drawn as dark text to the right of the strip.
    assert (bar[:, 30:] < 100).any()
    figure = heat.figure()
    assert figure.width == heat.image.width + 12 + heat.colour_bar.width


def test_a_higher_temperature_spreads_the_softmax():
    r = ranking([0.30, 0.25, 0.10, 0.05])
    sharp, soft = r.softmax(0.01), r.softmax(0.1)
    assert sharp.sum() == pytest.approx(1) and soft.sum() == pytest.approx(1)
    assert sharp.max() > 0.9 and soft.max() < 0.6 and soft.min() > 0.04
    assert np.argmax(sharp) == np.argmax(soft) == 0
    with pytest.raises(InvalidInputError, match="temperature"):
        r.softmax(0)
