# SPDX-License-Identifier: Apache-2.0
"""An analytic detector of the toy world's content in decoded frames: colour, shape, direction, track.

Per frame: the background is the per-channel median (the shape covers well under half the frame); the
shape's colour is the mean of the pixels at least half as far from the background as the farthest
one; each pixel's alpha is its projection onto (shape colour − background), clipped to [0, 1].
- colour: the palette colour nearest to the clip's mean shape colour, if within COLOUR_TOLERANCE;
- shape: the world's triangle (apex up) has its mass low: the skewness of its rows' mass is −0.57
  (0 for the symmetric square and circle), so a median skewness below TRIANGLE_SKEW is a triangle;
  otherwise the fill ratio mass / (tallest column · widest row), 1 for a square and π/4 for a circle
  whatever the size, is compared with FILL_THRESHOLDS (midpoints, and a floor for blobs);
- direction: the alpha-weighted centroid track must move along one axis, every step the same way and
  at least MIN_STEP pixels, with little drift across; shuffled or static frames detect as no direction.
A frame holds a shape when its alpha has MIN_MASS pixels and is compact: mass / (4π·√det Σ) (Σ the
alpha's covariance) is 1 for a disc, 0.95 for a square, 0.83 for the triangle, about 0.5 for decoded noise
spread over the frame. Anything not found is NONE.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .world import COLOURS, DIRECTIONS

NONE = "none"
MIN_CONTRAST = 0.15  # RGB distance from the background below which a frame counts as empty
MIN_MASS = 3.0  # pixels of alpha a frame needs to hold a shape
MIN_COMPACTNESS = 0.6
COLOUR_TOLERANCE = 0.3  # RGB distance to the nearest palette colour
TRIANGLE_SKEW = -0.3  # about half the triangle's −0.57, far from 0
FILL_THRESHOLDS = ((0.89, "square"), (0.65, "circle"))  # midpoint of 1 and π/4; π/4 less as much again
MIN_STEP = 0.4  # pixels per frame along the direction of motion
MAX_DRIFT = 0.5  # largest mean cross-axis step, as a fraction of the mean step along the axis


@dataclasses.dataclass
class FrameStats:
    """What the detector measures per frame of one clip."""

    background: np.ndarray  # [T, 3]
    colour: np.ndarray  # [T, 3] shape colour (background where the frame is empty)
    mass: np.ndarray  # [T] pixels of alpha
    centroid: np.ndarray  # [T, 2] (x, y); frame centre where empty
    fill: np.ndarray  # [T] fill ratio (0 where empty)
    skew: np.ndarray  # [T] skewness of the rows' mass (0 where empty)
    compactness: np.ndarray  # [T] mass / (4π √det Σ) (0 where empty)
    alpha: np.ndarray  # [T, H, W] coverage of the shape colour over the background (0 where empty)

    @property
    def present(self) -> np.ndarray:
        """[T] bool: the frame holds a compact shape."""
        return (self.mass >= MIN_MASS) & (self.compactness >= MIN_COMPACTNESS)


@dataclasses.dataclass
class Detection:
    colour: str
    shape: str
    direction: str
    stats: FrameStats

    @property
    def track(self) -> np.ndarray:
        return self.stats.centroid


def frame_stats(frames: torch.Tensor) -> FrameStats:
    """Frames [T, H, W, 3] in [0, 1] -> per-frame background, shape colour, mass, centroid and fill ratio."""
    x = frames.detach().to(torch.float64).cpu().numpy()
    count, height, width, _ = x.shape
    background = np.median(x.reshape(count, -1, 3), axis=1)  # [T, 3]
    diff = x - background[:, None, None, :]  # [T, H, W, 3]
    distance = np.linalg.norm(diff, axis=-1)  # [T, H, W]
    stats = FrameStats(background, background.copy(), np.zeros(count), np.tile([width / 2, height / 2], (count, 1)),
                       np.zeros(count), np.zeros(count), np.zeros(count), np.zeros((count, height, width)))
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    for t in range(count):
        peak = distance[t].max()
        if peak < MIN_CONTRAST:
            continue
        stats.colour[t] = x[t][distance[t] >= peak / 2].mean(axis=0)
        axis = stats.colour[t] - background[t]
        alpha = np.clip(diff[t] @ axis / (axis @ axis), 0.0, 1.0)  # [H, W]
        stats.alpha[t] = alpha
        stats.mass[t] = alpha.sum()
        if stats.mass[t] < MIN_MASS:
            continue
        stats.centroid[t] = [(alpha * xs).sum() / stats.mass[t], (alpha * ys).sum() / stats.mass[t]]
        stats.fill[t] = stats.mass[t] / (alpha.sum(axis=0).max() * alpha.sum(axis=1).max())
        offsets = np.stack([xs - stats.centroid[t, 0], ys - stats.centroid[t, 1]])  # [2, H, W]
        covariance = np.einsum("ihw,jhw,hw->ij", offsets, offsets, alpha) / stats.mass[t]  # [2, 2]
        stats.compactness[t] = stats.mass[t] / (4 * np.pi * np.sqrt(max(np.linalg.det(covariance), 1e-12)))
        stats.skew[t] = (alpha * offsets[1] ** 3).sum() / stats.mass[t] / covariance[1, 1] ** 1.5
    return stats


def classify_colour(stats: FrameStats) -> str:
    if not stats.present.any():
        return NONE
    colour = stats.colour[stats.present].mean(axis=0)
    name, distance = min(((n, np.linalg.norm(colour - np.array(c))) for n, c in COLOURS.items()), key=lambda p: p[1])
    return name if distance <= COLOUR_TOLERANCE else NONE


def classify_shape(stats: FrameStats) -> str:
    if not stats.present.all():
        return NONE
    if np.median(stats.skew) <= TRIANGLE_SKEW:
        return "triangle"
    fill = float(np.median(stats.fill))
    return next((name for threshold, name in FILL_THRESHOLDS if fill >= threshold), NONE)


def classify_direction(stats: FrameStats) -> str:
    if not stats.present.all() or len(stats.centroid) < 2:
        return NONE
    steps = np.diff(stats.centroid, axis=0)  # [T-1, 2]
    for name, unit in DIRECTIONS.items():
        along = steps @ np.array(unit, dtype=np.float64)  # [T-1]
        across = np.abs(steps @ np.array(unit[::-1], dtype=np.float64)).mean()
        if (along >= MIN_STEP).all() and across <= MAX_DRIFT * along.mean():
            return name
    return NONE


def detect(frames: torch.Tensor) -> Detection:
    """Frames [T, H, W, 3] in [0, 1] -> detected colour, shape and direction (NONE where not found)."""
    stats = frame_stats(frames)
    return Detection(classify_colour(stats), classify_shape(stats), classify_direction(stats), stats)
