# SPDX-License-Identifier: Apache-2.0
"""ComfyUI's "fp8 scaled" Wan files: each Linear weight stored in float8 as weight ÷ `<layer>.scale_weight` (a
float32 scalar beside it), a `scaled_fp8` marker tensor whose dtype names the float8 format, and in some files
`<layer>.scale_input` (an activation scale only fp8 matrix multiplies use). Loading dequantizes: stored · scale."""
from __future__ import annotations

import torch

from .errors import CheckpointError

MARKER_KEY = "scaled_fp8"
WEIGHT_SCALE_SUFFIX = ".scale_weight"
INPUT_SCALE_SUFFIX = ".scale_input"


def split_scales(names: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Bare name → stored name, split into (the model's own tensors, weight name → its scale's stored name); the
    marker and activation scales are left out (computing with dequantized weights needs neither)."""
    tensors: dict[str, str] = {}
    scales: dict[str, str] = {}
    for name, stored in names.items():
        if name == MARKER_KEY or name.endswith(INPUT_SCALE_SUFFIX):
            continue
        if name.endswith(WEIGHT_SCALE_SUFFIX):
            scales[name[:-len(WEIGHT_SCALE_SUFFIX)] + ".weight"] = stored
        else:
            tensors[name] = stored
    return tensors, scales


def check_scale(weight: torch.Tensor | None, scale: torch.Tensor, name: str, source: str) -> None:
    """A scale must belong to a weight the file holds and be one number, as ComfyUI's scaled layers take it (meta
    tensors are enough)."""
    if weight is None:
        raise CheckpointError(f"{source} has a scale_weight for {name}, which it does not hold.")
    if scale.numel() != 1:
        raise CheckpointError(f"{source} has a scale_weight of shape {tuple(scale.shape)} for {name} of shape "
                              f"{tuple(weight.shape)}; expected one value per tensor.")


def dequantize(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 weight a scaled fp8 tensor stands for."""
    return weight.float() * scale.float()
