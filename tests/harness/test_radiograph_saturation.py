"""The decoder's saturation share equals its per-pixel definition (all channels 0 or all 255)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from harness.radiograph import saturated_fraction


def _by_definition(px: np.ndarray) -> float:
    black = sum(1 for p in px.reshape(-1, 3) if tuple(p) == (0, 0, 0))
    white = sum(1 for p in px.reshape(-1, 3) if tuple(p) == (255, 255, 255))
    return (black + white) / (px.shape[0] * px.shape[1])


def test_colour_pixels_near_black_and_white_are_not_counted():
    edge = [
        (0, 0, 0),
        (255, 255, 255),
        (0, 0, 1),
        (1, 0, 0),
        (255, 255, 254),
        (254, 255, 255),
        (255, 0, 0),
        (0, 255, 255),
        (128, 128, 128),
    ]
    rng = np.random.default_rng(0)
    px = rng.choice(np.array(edge, dtype=np.uint8), size=(37, 23))
    assert 0 < saturated_fraction(Image.fromarray(px, "RGB")) < 1
    assert saturated_fraction(Image.fromarray(px, "RGB")) == _by_definition(px)


def test_grey_film_converted_to_rgb():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (40, 31), dtype=np.uint8)
    grey[:5] = 0
    grey[-3:] = 255
    rgb = Image.fromarray(grey, "L").convert("RGB")
    expected = (np.count_nonzero(grey == 0) + np.count_nonzero(grey == 255)) / grey.size
    assert saturated_fraction(rgb) == expected == _by_definition(np.asarray(rgb))
