# SPDX-License-Identifier: Apache-2.0
"""What the toy world is made of: its palette, shapes, directions, frame geometry and caption grammar.

A caption is "a <colour> <shape> moving <direction>", e.g. "a red square moving left". Frames are
FRAMES × SIDE × SIDE RGB in [0, 1]; image rows grow downwards, so "up" decreases y.
"""
from __future__ import annotations

from ..tmd_core.errors import TMDError

FRAMES = 4  # frames per clip (one latent frame: the toy latent packs 4 frames, as Wan's VAE does)
SIDE = 16  # frame width and height in pixels (latent 16 × 16, so 8·8 = 64 DiT tokens)

BACKGROUND = (0.15, 0.15, 0.15)  # dark grey; not mid-grey, so the background is not the all-zero latent
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.15, 0.80, 0.25),
    "blue": (0.20, 0.35, 0.95),
    "yellow": (0.95, 0.85, 0.15),
}
SHAPES = ("square", "circle", "triangle")
# Unit step of each direction in (x, y) pixel coordinates.
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}

SIZE_RANGE = (5.0, 8.0)  # shape width (square side, circle diameter, triangle base and height), pixels
SPEED_RANGE = (1.0, 2.0)  # pixels per frame


class CaptionError(TMDError, ValueError):
    """A caption that is not "a <colour> <shape> moving <direction>" of this world."""


def caption_of(colour: str, shape: str, direction: str) -> str:
    return f"a {colour} {shape} moving {direction}"


def parse_caption(caption: str) -> tuple[str, str, str]:
    """"a red square moving left" -> ("red", "square", "left"); one-sentence error for anything else."""
    words = caption.lower().split()
    if len(words) != 5 or words[0] not in ("a", "an") or words[3] != "moving":
        raise CaptionError(f"caption {caption!r} is not of the form 'a <colour> <shape> moving <direction>'.")
    _, colour, shape, _, direction = words
    checks = ((colour, COLOURS, "colour"), (shape, SHAPES, "shape"), (direction, DIRECTIONS, "direction"))
    for value, known, what in checks:
        if value not in known:
            raise CaptionError(f"caption {caption!r} has {what} {value!r}; the toy world knows {', '.join(known)}.")
    return colour, shape, direction


def all_captions() -> list[str]:
    """Every caption of the world (4 colours × 3 shapes × 4 directions = 48)."""
    return [caption_of(c, s, d) for c in COLOURS for s in SHAPES for d in DIRECTIONS]
