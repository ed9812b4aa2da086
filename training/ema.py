# SPDX-License-Identifier: Apache-2.0
"""Exponential moving average of a role's weights: after each optimiser step, avg ← decay·avg + (1 − decay)·θ.

The average starts at the role's initial weights, is kept in float32 beside the parameters (sharded like them
under FSDP2), is saved in every checkpoint and, when enabled, is what export writes. The paper states no EMA;
FastGen keeps one for its students.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from .errors import TrainingConfigError


class EMA:
    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.average = {name: p.detach().float().clone() for name, p in module.named_parameters()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for name, p in module.named_parameters():
            self.average[name].lerp_(p.detach().float(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Full (gathered) float32 tensors on the CPU, keyed like the module's parameters; collective under FSDP2."""
        return {name: (a.full_tensor() if isinstance(a, DTensor) else a).cpu() for name, a in self.average.items()}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.average) - set(tensors))
        if missing:
            raise TrainingConfigError(f"the checkpoint's EMA lacks {missing[0]} ({len(missing)} parameters missing).")
        for name, current in self.average.items():
            full = tensors[name].to(device=current.device, dtype=current.dtype)
            if isinstance(current, DTensor):
                full = distribute_tensor(full, current.device_mesh, current.placements)
            self.average[name] = full
