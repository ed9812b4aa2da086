# SPDX-License-Identifier: Apache-2.0
"""The toy latent format: Wan's layout [B, 16, T/4, H, W] with an exact, fixed decoder to RGB frames.

Like Wan2.1's VAE, the toy latent packs time: each latent frame holds FRAMES_PER_LATENT = 4 video frames.
Decoder, per latent pixel (t, i, j): channel c = 4·k + f holds colour feature f of pixel (i, j) of video
frame 4·t + k. The 4 features of a pixel are LATENT_SCALE · F · (rgb − 0.5), where F is the tetrahedral
frame

    F = ½ · [[ 1,  1,  1],
             [ 1, −1, −1],
             [−1,  1, −1],
             [−1, −1,  1]]        (4 × 3, Fᵀ F = I₃),

so decode is rgb = Fᵀ f / LATENT_SCALE + 0.5 (clamped to [0, 1]) and encode is its right inverse:
decode(encode(x)) = x exactly for x in [0, 1] (all constants are powers of two: rounding only).

Why pack time: a DiT patch (1 × 2 × 2 latent pixels) then holds a 2 × 2-pixel window over 4 frames, so the
way a shape moves is part of what each token looks like, as it is for Wan on real video. With one video
frame per latent frame (this format's first version), a RoPE-only Wan had to learn a text-steered shift
between frames, and the toy teacher never did (the word "left" changed nothing; README, toy world).

Every channel mixes all three colours, so every channel varies with the picture. LATENT_SCALE sets the
picture's spread about its mean to about 1 per channel (0.75–1.34, as Wan's normalised latents), so a
shape emerges from noise around t ≈ 0.5, where shifted schedules (γ 3–10) still put steps.
The background is (−4.2, 1.4, 1.4, 1.4) per pixel. The latent has 16 dimensions per 12 pixel values:
decode ignores the direction F's columns leave out (per pixel, f ∝ (1, 1, 1, 1)), and encode never
produces it.

Example: the zero latent is mid-grey, and one feature vector decodes to one colour in one frame.

>>> import torch
>>> decode(torch.zeros(1, 16, 1, 1, 1))[0, :, 0, 0].tolist()  # 4 frames of one pixel
[[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
>>> z = torch.zeros(1, 16, 1, 1, 1); z[0, 4:8] = LATENT_SCALE * torch.tensor([0.5, 0.5, -0.5, -0.5]).view(4, 1, 1, 1)
>>> decode(z)[0, 1, 0, 0].tolist()  # frame 1: ½·(0.5 + 0.5 + 0.5 + 0.5) = 1 in red, 0 in green/blue
[1.0, 0.5, 0.5]
"""
from __future__ import annotations

import torch
from einops import rearrange

from ..tmd_core.errors import TMDError
from .world import FRAMES, SIDE

LATENT_CHANNELS = 16
FRAMES_PER_LATENT = 4  # video frames per latent frame (Wan2.1's VAE packs 4 too)
LATENT_SCALE = 8.0  # a power of two keeps encode/decode exact
TETRAHEDRAL_FRAME = 0.5 * torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])


class ToyLatentError(TMDError, ValueError):
    """Frames or a latent that the toy latent format cannot hold."""


def latent_shape(batch: int = 1, frames: int = FRAMES, side: int = SIDE) -> tuple[int, int, int, int, int]:
    """[B, 16, T/4, H, W] of clips of `frames` frames of side × side pixels."""
    if frames % FRAMES_PER_LATENT:
        raise ToyLatentError(f"a toy clip has a multiple of {FRAMES_PER_LATENT} frames (one latent frame each), "
                             f"got {frames}.")
    return (batch, LATENT_CHANNELS, frames // FRAMES_PER_LATENT, side, side)


def encode(frames: torch.Tensor) -> torch.Tensor:
    """Frames [B, T, H, W, 3] in [0, 1] -> latent [B, 16, T/4, H, W] (in the frames' dtype)."""
    if frames.ndim != 5 or frames.shape[-1] != 3:
        raise ToyLatentError(f"frames must be [B, T, H, W, 3], got shape {tuple(frames.shape)}.")
    latent_shape(frames=frames.shape[1])  # a whole number of latent frames
    frame = TETRAHEDRAL_FRAME.to(frames.device, frames.dtype)
    features = LATENT_SCALE * (frames - 0.5) @ frame.T  # [B, T, H, W, 4]
    return rearrange(features, "b (t k) h w f -> b (k f) t h w", k=FRAMES_PER_LATENT)


def decode(latent: torch.Tensor) -> torch.Tensor:
    """Latent [B, 16, T, H, W] -> frames [B, 4T, H, W, 3] in [0, 1] (in the latent's dtype)."""
    if latent.ndim != 5 or latent.shape[1] != LATENT_CHANNELS:
        raise ToyLatentError(f"a toy latent is [B, 16, T, H, W], got shape {tuple(latent.shape)}.")
    features = rearrange(latent, "b (k f) t h w -> b (t k) h w f", k=FRAMES_PER_LATENT)
    frame = TETRAHEDRAL_FRAME.to(latent.device, latent.dtype)
    return (features @ frame / LATENT_SCALE + 0.5).clamp(0.0, 1.0)  # [B, 4T, H, W, 3]
