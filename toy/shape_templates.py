# SPDX-License-Identifier: Apache-2.0
"""A second, independent reader of a clip's shape, to check the detector's fill and skewness rule.

Per frame, each world shape is drawn (clips.coverage, 16 × 16 supersampled so that its width follows the mass to
a sixteenth of a pixel) with the area of the frame's alpha mass, centred on the alpha's centroid (a triangle's
centroid lies a sixth of its height below its centre); the frame votes with the soft overlap
Σ min(alpha, template) / Σ max(alpha, template) of each template, and the clip reads as the shape with the
highest mean overlap. It takes in the whole outline, so one stray pixel moves it little, where the detector's
fill ratio (mass over tallest column × widest row) turns on single rows and columns. Clips the detector
finds no shape in on some frame read as NONE here too.
"""
from __future__ import annotations

import numpy as np

from .clips import coverage
from .detector import NONE, FrameStats
from .world import SHAPES

SUPERSAMPLE = 16  # subpixels per pixel side; the clips' 4 would quantise a template's width to a quarter pixel


def template_size(shape: str, mass: float) -> float:
    """Width of `shape` whose area is `mass` pixels: square side², circle π/4·d², triangle base·height/2."""
    area_per_width_squared = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}[shape]
    return float(np.sqrt(mass / area_per_width_squared))


def template(shape: str, centroid: np.ndarray, mass: float, height: int, width: int) -> np.ndarray:
    """Coverage [H, W] of `shape` with area `mass` whose alpha centroid is `centroid` (x, y)."""
    size = template_size(shape, mass)
    centre_x, centre_y = centroid
    if shape == "triangle":
        centre_y -= size / 6
    xs = (np.arange(width * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    ys = (np.arange(height * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    inside = coverage(shape, xs[None, :] - centre_x, ys[:, None] - centre_y, size)  # [H·S, W·S]
    return inside.reshape(height, SUPERSAMPLE, width, SUPERSAMPLE).mean(axis=(1, 3))


def overlaps(stats: FrameStats) -> np.ndarray:
    """[T, len(SHAPES)] soft overlap of each frame's alpha with each shape's template."""
    count, height, width = stats.alpha.shape
    scores = np.zeros((count, len(SHAPES)))
    for t in range(count):
        alpha = stats.alpha[t]
        for i, shape in enumerate(SHAPES):
            drawn = template(shape, stats.centroid[t], stats.mass[t], height, width)
            scores[t, i] = np.minimum(alpha, drawn).sum() / np.maximum(alpha, drawn).sum()
    return scores


def read_shape(stats: FrameStats) -> tuple[str, np.ndarray | None]:
    """The detector's statistics of a clip (detect(frames).stats) -> (the best-overlapping shape, mean overlap
    per shape [len(SHAPES)]), or (NONE, None) where some frame holds no shape."""
    if not stats.present.all():
        return NONE, None
    mean = overlaps(stats).mean(axis=0)
    return SHAPES[int(mean.argmax())], mean
