# SPDX-License-Identifier: Apache-2.0
"""Classifier-free guidance, the one mix used by the teacher's sampler and both training stages."""
from __future__ import annotations

import torch


def guided(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """uncond + ω·(cond − uncond); ω = 1 gives cond. Works on velocities and on x0 estimates alike,
    since x0 = x_t − t·v is affine in v."""
    return uncond + scale * (cond - uncond)
