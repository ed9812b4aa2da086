# SPDX-License-Identifier: Apache-2.0
"""Telling Wan models TMD cannot distill (image-to-video, VACE, audio, Wan2.2 5B...) from Wan2.1 text-to-video ones,
by their key names and channel counts, so a user hears which model they gave instead of a list of odd keys."""
from __future__ import annotations

from typing import Mapping

import torch

from .errors import CheckpointError

# A key prefix (bare official names, or diffusers' names for what has no official twin) and what it marks.
VARIANT_MARKERS = (
    ("vace_patch_embedding.", "a Wan VACE (video creation and editing) model"),
    ("control_adapter.", "a Wan Fun camera-control model"),
    ("casual_audio_encoder.", "a Wan2.2 speech-to-video model"),
    ("audio_proj.", "a Wan HuMo (audio-driven) model"),
    ("face_adapter.", "a Wan2.2 Animate model"),
    ("img_emb.", "a Wan2.1 image-to-video model"),  # I2V and first-last-frame (FLF2V) models
    ("condition_embedder.image_embedder.", "a Wan2.1 image-to-video model"),
    ("blocks.0.attn2.add_k_proj.", "a Wan2.1 image-to-video model"),
)
WAN22_LATENT_CHANNELS = 48  # Wan2.2 TI2V-5B's high-compression VAE


def text_to_video_only(what: str, source: str) -> CheckpointError:
    return CheckpointError(f"{source} is {what}; TMD supports Wan2.1 text-to-video only.")


def check_text_to_video(state_dict: Mapping[str, torch.Tensor], in_dim: int, out_dim: int, source: str) -> None:
    """Refuse, in one sentence naming the variant, a Wan that is not a text-to-video Wan2.1 model."""
    for key in state_dict:
        for marker, what in VARIANT_MARKERS:
            if key.startswith(marker):
                raise text_to_video_only(what, source)
    if in_dim == WAN22_LATENT_CHANNELS:
        raise text_to_video_only(f"a Wan2.2 TI2V-5B model ({in_dim}-channel latent)", source)
    if in_dim != out_dim:  # image conditioning concatenated to the noisy latent (Wan2.2 I2V: 36 in, 16 out)
        raise text_to_video_only(f"an image-conditioned Wan model ({in_dim} input channels, {out_dim} output)",
                                 source)
