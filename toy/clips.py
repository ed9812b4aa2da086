# SPDX-License-Identifier: Apache-2.0
"""Seeded captioned clips: one coloured shape moving at constant speed in a stated direction.

Start position, size and speed are drawn uniformly (so diversity across seeds is measurable); the
shape stays wholly inside the frame for the whole clip. Frames are rendered with 4 × 4 supersampling,
so edges are anti-aliased and sub-pixel positions show.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .world import (BACKGROUND, COLOURS, DIRECTIONS, FRAMES, SHAPES, SIDE, SIZE_RANGE, SPEED_RANGE, caption_of,
                    parse_caption)

SUPERSAMPLE = 4


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """Everything that determines a clip. (start_x, start_y) is the shape's centre in frame 0, in pixels."""

    colour: str
    shape: str
    direction: str
    start_x: float
    start_y: float
    size: float
    speed: float

    @property
    def caption(self) -> str:
        return caption_of(self.colour, self.shape, self.direction)

    def centres(self, frames: int = FRAMES) -> np.ndarray:
        """Centre per frame: [frames, 2] (x, y)."""
        step = np.array(DIRECTIONS[self.direction], dtype=np.float64) * self.speed
        return np.array([self.start_x, self.start_y]) + np.arange(frames)[:, None] * step


@dataclasses.dataclass(frozen=True)
class Clip:
    spec: ClipSpec
    frames: torch.Tensor  # [T, H, W, 3] float32 in [0, 1]

    @property
    def caption(self) -> str:
        return self.spec.caption


def random_spec(rng: np.random.Generator, caption: str | None = None, frames: int = FRAMES,
                side: int = SIDE) -> ClipSpec:
    """A clip of `caption` (or of random attributes) with random start, size and speed that stays in frame."""
    if caption is None:
        colour, shape, direction = (list(COLOURS)[rng.integers(len(COLOURS))], SHAPES[rng.integers(len(SHAPES))],
                                    list(DIRECTIONS)[rng.integers(len(DIRECTIONS))])
    else:
        colour, shape, direction = parse_caption(caption)
    size = rng.uniform(*SIZE_RANGE)
    speed = rng.uniform(*SPEED_RANGE)
    travel = speed * (frames - 1)
    low, high = size / 2, side - size / 2  # centre range that keeps a static shape inside
    start = []
    for unit in DIRECTIONS[direction]:  # x then y
        lo, hi = (low + travel, high) if unit < 0 else (low, high - travel) if unit > 0 else (low, high)
        if hi < lo:
            raise ValueError(f"a {side}-pixel frame cannot hold a size-{size:.1f} shape moving {travel:.1f} pixels.")
        start.append(rng.uniform(lo, hi))
    return ClipSpec(colour, shape, direction, float(start[0]), float(start[1]), float(size), float(speed))


def coverage(shape: str, dx: np.ndarray, dy: np.ndarray, size: float) -> np.ndarray:
    """Inside test of `shape` of width `size` centred at 0, at offsets (dx, dy): boolean of dx's shape."""
    half = size / 2
    if shape == "square":
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "circle":
        return dx**2 + dy**2 <= half**2
    if shape == "triangle":  # apex up, base at the bottom: half-width grows from 0 to size/2 over the height
        return (np.abs(dy) <= half) & (np.abs(dx) <= (dy + half) / 2)
    raise ValueError(f"unknown shape {shape!r}; the toy world has {', '.join(SHAPES)}.")


def alpha_masks(spec: ClipSpec, frames: int = FRAMES, side: int = SIDE) -> np.ndarray:
    """Fraction of each pixel the shape covers: [T, H, W] in [0, 1]."""
    sub = (np.arange(side * SUPERSAMPLE) + 0.5) / SUPERSAMPLE  # subpixel centres, pixel units
    masks = []
    for cx, cy in spec.centres(frames):
        inside = coverage(spec.shape, sub[None, :] - cx, sub[:, None] - cy, spec.size)  # [H·S, W·S]
        masks.append(inside.reshape(side, SUPERSAMPLE, side, SUPERSAMPLE).mean(axis=(1, 3)))
    return np.stack(masks)


def render(spec: ClipSpec, frames: int = FRAMES, side: int = SIDE) -> torch.Tensor:
    """The clip's frames: [T, H, W, 3] float32 in [0, 1]."""
    alpha = alpha_masks(spec, frames, side)[..., None]  # [T, H, W, 1]
    rgb = alpha * np.array(COLOURS[spec.colour]) + (1 - alpha) * np.array(BACKGROUND)
    return torch.from_numpy(rgb.astype(np.float32))


def make_clips(count: int, seed: int, caption: str | None = None, frames: int = FRAMES, side: int = SIDE) -> list[Clip]:
    """`count` clips from one seed: all of `caption`, or of random captions when it is None."""
    rng = np.random.default_rng(seed)
    specs = [random_spec(rng, caption, frames, side) for _ in range(count)]
    return [Clip(spec, render(spec, frames, side)) for spec in specs]
