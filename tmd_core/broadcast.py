# SPDX-License-Identifier: Apache-2.0
"""Per-sample times as multipliers of latents, shared by the sampler and the training losses."""
from __future__ import annotations

import torch


def broadcast(t: torch.Tensor, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Times [B] -> [B, 1, ..., 1] to scale latents like `like` [B, C, T, H, W], in `dtype` (default: like's).
    The sampler asks for at least float32: in bf16, σ = 0.999 would round to 1."""
    return t.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype if dtype is None else dtype)
