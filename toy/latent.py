# SPDX-License-Identifier: Apache-2.0
"""The toy latent format: Wan's layout [B, 16, T, H/2, W/2] with an exact, fixed decoder to RGB.

Decoder, per latent pixel (t, i, j): channel c = 4·(2·dy + dx) + k holds colour feature k of the frame
pixel (2i + dy, 2j + dx) (a 2 × 2 pixel-unshuffle, as a patch of 4 pixels × 4 features = 16 channels).
The 4 features of a pixel are LATENT_SCALE · F · (rgb − 0.5), where F is the tetrahedral frame

    F = ½ · [[ 1,  1,  1],
             [ 1, −1, −1],
             [−1,  1, −1],
             [−1, −1,  1]]        (4 × 3, Fᵀ F = I₃),

so decode is rgb = Fᵀ f / LATENT_SCALE + 0.5 (clamped to [0, 1]) and encode is its right inverse:
decode(encode(x)) = x exactly for x in [0, 1] (all constants are powers of two: rounding only).
Every channel mixes all three colours, so every channel varies with the picture. LATENT_SCALE sets the
picture's spread about its mean to about 1 per channel (0.75–1.34, as Wan's normalised latents), so a
shape emerges from noise around t ≈ 0.5; at scale 2 (spread 0.3) it emerged only below t ≈ 0.25, where
shifted schedules (γ 3–10) put few steps, and a teacher trained on it drew speckles instead of shapes.
The background is (−4.2, 1.4, 1.4, 1.4) per pixel. The latent has 16
dimensions per 12 pixel values: decode ignores the direction F's columns leave out (per pixel, f ∝
(1, 1, 1, 1)), and encode never produces it.

Example: the zero latent is mid-grey, and one feature vector per pixel decodes to one colour.

>>> import torch
>>> decode(torch.zeros(1, 16, 1, 1, 1))[0, 0, 0, 0].tolist()
[0.5, 0.5, 0.5]
>>> z = torch.zeros(1, 16, 1, 1, 1); z[0, 0:4] = LATENT_SCALE * torch.tensor([0.5, 0.5, -0.5, -0.5]).view(4, 1, 1, 1)
>>> decode(z)[0, 0, 0, 0].tolist()  # top-left pixel: ½·(0.5 + 0.5 + 0.5 + 0.5) = 1 in red, 0 in green/blue
[1.0, 0.5, 0.5]
"""
from __future__ import annotations

import torch
from einops import rearrange

from .world import FRAMES, SIDE

LATENT_CHANNELS = 16
PIXELS_PER_SIDE = 2  # each latent pixel covers 2 × 2 frame pixels
LATENT_SCALE = 8.0  # a power of two keeps encode/decode exact
TETRAHEDRAL_FRAME = 0.5 * torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])


def latent_shape(batch: int = 1, frames: int = FRAMES, side: int = SIDE) -> tuple[int, int, int, int, int]:
    """[B, 16, T, H/2, W/2] of clips of `frames` frames of side × side pixels."""
    if side % PIXELS_PER_SIDE:
        raise ValueError(f"frame side {side} must be even: each latent pixel is 2 × 2 frame pixels.")
    return (batch, LATENT_CHANNELS, frames, side // PIXELS_PER_SIDE, side // PIXELS_PER_SIDE)


def encode(frames: torch.Tensor) -> torch.Tensor:
    """Frames [B, T, H, W, 3] in [0, 1] -> latent [B, 16, T, H/2, W/2] (in the frames' dtype)."""
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [B, T, H, W, 3], got shape {tuple(frames.shape)}.")
    latent_shape(side=frames.shape[2]), latent_shape(side=frames.shape[3])  # both sides even
    frame = TETRAHEDRAL_FRAME.to(frames.device, frames.dtype)
    features = LATENT_SCALE * (frames - 0.5) @ frame.T  # [B, T, H, W, 4]
    return rearrange(features, "b t (h dy) (w dx) k -> b (dy dx k) t h w", dy=PIXELS_PER_SIDE, dx=PIXELS_PER_SIDE)


def decode(latent: torch.Tensor) -> torch.Tensor:
    """Latent [B, 16, T, h, w] -> frames [B, T, 2h, 2w, 3] in [0, 1] (in the latent's dtype)."""
    if latent.ndim != 5 or latent.shape[1] != LATENT_CHANNELS:
        raise ValueError(f"a toy latent is [B, 16, T, H, W], got shape {tuple(latent.shape)}.")
    features = rearrange(latent, "b (dy dx k) t h w -> b t (h dy) (w dx) k", dy=PIXELS_PER_SIDE, dx=PIXELS_PER_SIDE)
    frame = TETRAHEDRAL_FRAME.to(latent.device, latent.dtype)
    return (features @ frame / LATENT_SCALE + 0.5).clamp(0.0, 1.0)  # [B, T, H, W, 3]
