# SPDX-License-Identifier: Apache-2.0
"""Exponential moving average of a role's weights: after each optimiser step, avg ← d·avg + (1 − d)·θ.

The decay warms up: at update n (from 1) d = min(decay, n / (n + 9)), so early averages are close to the plain
mean of the weights seen so far instead of being held at the initial ones. Without it, an average started at a
random initialisation keeps decayⁿ of it (0.999³⁰⁰⁰ ≈ 5 % after 3,000 updates), which spoils a teacher trained
from scratch; for students started from a trained teacher the warm-up costs nothing.

The average starts at the role's initial weights, is kept in float32 beside the parameters (sharded like them
under FSDP2), is saved with its update count in every checkpoint and, when enabled, is what export writes. The
paper states no EMA; FastGen keeps one for its students.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from .errors import TrainingConfigError


class EMA:
    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.average = {name: p.detach().float().clone() for name, p in module.named_parameters()}

    def current_decay(self) -> float:
        """The decay of the next update: the warm-up n / (n + 9) until it reaches `decay`."""
        n = self.updates + 1
        return min(self.decay, n / (n + 9))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        weight = 1.0 - self.current_decay()
        for name, p in module.named_parameters():
            self.average[name].lerp_(p.detach().float(), weight)
        self.updates += 1

    def metadata(self) -> dict[str, str]:
        """What a checkpoint stores beside the tensors: the update count the warm-up continues from."""
        return {"ema_updates": str(self.updates)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Full (gathered) float32 tensors on the CPU, keyed like the module's parameters; collective under FSDP2."""
        return {name: (a.full_tensor() if isinstance(a, DTensor) else a).cpu() for name, a in self.average.items()}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
        """Restore the average and its update count (files written before the warm-up count as warmed up)."""
        missing = sorted(set(self.average) - set(tensors))
        if missing:
            raise TrainingConfigError(f"the checkpoint's EMA lacks {missing[0]} ({len(missing)} parameters missing).")
        for name, current in self.average.items():
            full = tensors[name].to(device=current.device, dtype=current.dtype)
            if isinstance(current, DTensor):
                full = distribute_tensor(full, current.device_mesh, current.placements)
            self.average[name] = full
        self.updates = int((metadata or {}).get("ema_updates", 10**9))
