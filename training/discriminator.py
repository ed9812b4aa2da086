# SPDX-License-Identifier: Apache-2.0
"""DMD2-v's discriminator: Conv3D multi-scale heads on unpatchified teacher features (docs/method.md §7).

The paper says only "Conv3D, jointly processing spatio-temporal features", 68M parameters for 1.3B.
This is the head layout that reproduces that count (FastGen's "multiscale_down_mlp_large", 3 × 22.6M
with C = 384), written from its description: per scale k ∈ {1, 2, 4, 8, 16}, 1×1×1 conv → GroupNorm →
LeakyReLU → k-fold average pool → 3×3×3 conv → GroupNorm → LeakyReLU → global average; the 5·C
pooled features go through an MLP to one logit. For 14B the paper's 172M is not reproduced by this
recipe (C = 1280 gives ~708M); the exact 14B layout is not published, so the same recipe is used.

Small models: GroupNorm uses gcd(32, C) groups, and a pool never exceeds the feature's own size, so
tiny latents work; at Wan's 21×60×104 neither rule changes anything.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..tmd_core.wan_model import embed_time, embed_tokens, patch_grid, rope_for

SCALES = (1, 2, 4, 8, 16)


def default_disc_blocks(num_layers: int) -> list[int]:
    """The paper's feature blocks for 1.3B (L = 30) and 14B (L = 40); other depths keep the same spread
    (half way, three quarters, last)."""
    known = {30: [15, 22, 29], 40: [19, 29, 39]}
    if num_layers in known:
        return known[num_layers]
    return sorted({round((num_layers - 1) * f) for f in (0.5, 0.75, 1.0)})


def _conv_block(channels: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv3d(channels, channels, kernel, padding=kernel // 2),
            nn.GroupNorm(math.gcd(32, channels), channels), nn.LeakyReLU(0.2)]


class ScaleBranch(nn.Module):
    def __init__(self, channels: int, scale: int):
        super().__init__()
        self.scale = scale
        self.pre = nn.Sequential(*_conv_block(channels, 1))
        self.post = nn.Sequential(*_conv_block(channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> pooled [B, C]."""
        h = self.pre(x)
        if self.scale > 1:
            kernel = tuple(min(self.scale, size) for size in h.shape[2:])
            h = F.avg_pool3d(h, kernel)
        return self.post(h).mean(dim=(2, 3, 4))


class Conv3DHead(nn.Module):
    """One feature layer's head: five scale branches, then an MLP to one logit."""

    def __init__(self, channels: int, hidden: int = 1024):
        super().__init__()
        self.branches = nn.ModuleList(ScaleBranch(channels, k) for k in SCALES)
        self.mlp = nn.Sequential(nn.Linear(len(SCALES) * channels, hidden), nn.LeakyReLU(0.2), nn.Dropout(0.1),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> logits [B]."""
        return self.mlp(torch.cat([branch(x) for branch in self.branches], dim=1)).squeeze(1)


class Discriminator(nn.Module):
    """One Conv3DHead per teacher feature layer; C = dim / 4 (a 1×2×2 patch token unpatchified to 4 pixels)."""

    def __init__(self, dim: int, num_features: int = 3, patch_pixels: int = 4):
        super().__init__()
        self.heads = nn.ModuleList(Conv3DHead(dim // patch_pixels) for _ in range(num_features))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """One [B, C, T, H, W] feature per head -> logits [B, heads]."""
        return torch.stack([head(f) for head, f in zip(self.heads, features, strict=True)], dim=1)


def teacher_features(wan: nn.Module, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                     blocks: list[int]) -> list[torch.Tensor]:
    """Unpatchified outputs of the teacher's `blocks` at (x_t, t): each [B, dim/4, T, H, W].

    The forward stops after the last block asked for. Gradients flow through the frozen teacher into
    x_t when the caller has autograd on (the generator's GAN loss).
    """
    _, e0 = embed_time(wan, 1000.0 * t, x_t.dtype)  # [B, 1, 6, dim]
    tokens = embed_tokens(wan, x_t)  # [B, L, dim]
    ctx, freqs, grid = wan.text_embedding(context), rope_for(wan, x_t), patch_grid(wan, x_t.shape[2:])
    wanted, features = set(blocks), []
    for index, block in enumerate(wan.blocks[: max(blocks) + 1]):
        tokens = block(tokens, e=e0, freqs=freqs, context=ctx, context_img_len=None, transformer_options={})
        if index in wanted:
            features.append(wan.unpatchify(tokens, grid))  # [B, dim/4, T, H, W]
    return features
