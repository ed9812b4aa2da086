# SPDX-License-Identifier: Apache-2.0
"""Training-time sampling of t, s, r and the noising path (App. A.2, A.3; docs/method.md §5.3, §6.1–6.2).

Times are float64 tensors on the generator's device ("BF16 with FP64 time", Table 7); they are cast
to the latent dtype only where they multiply a latent. Every draw comes from the caller's generator,
the algorithm's one documented RNG.
"""
from __future__ import annotations

import torch

from ..tmd_core.broadcast import broadcast
from ..tmd_core.grids import GRID_TOP

T_MIN = 0.001  # lower end of every continuous time draw (App. A.2, A.3)


def _uniform(batch: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(batch, generator=generator, device=generator.device, dtype=torch.float64)


def shifted_uniform(batch: int, gamma: float, generator: torch.Generator) -> torch.Tensor:
    """shift_γ(u), u ~ U[0.001, 0.999]: [B] float64 (s_mf with γ = 3, t_dmd with γ = 5)."""
    u = T_MIN + (GRID_TOP - T_MIN) * _uniform(batch, generator)
    return gamma * u / ((gamma - 1.0) * u + 1.0)


def outer_times(batch: int, grid: list[float], generator: torch.Generator) -> torch.Tensor:
    """t_i ~ Unif{t_1..t_M}: the student's outer grid without its final 0, [B] float64."""
    choices = torch.tensor(grid[:-1], dtype=torch.float64, device=generator.device)
    return choices[torch.randint(len(choices), (batch,), generator=generator, device=generator.device)]


def stage1_inner_times(batch: int, inner_grid: list[float], s_gamma: float, r_equals_s_prob: float,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The discrete (s, r) scheme of TM-MF: s = shift_3(U), r = the inner-grid point at or below s, and r = s
    for a `r_equals_s_prob` share of samples (per sample, as MeanFlow and FastGen do). [B] float64 each."""
    s = shifted_uniform(batch, s_gamma, generator)
    grid = torch.tensor(sorted(inner_grid), dtype=torch.float64, device=s.device)  # ascending, starts at 0
    r = grid[torch.searchsorted(grid, s, right=True) - 1]  # largest s_j ≤ s
    same = _uniform(batch, generator) < r_equals_s_prob
    return s, torch.where(same, s, r)


def noised(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The rectified-flow path x_t = (1 − t)·x + t·noise (t = 0 is data)."""
    tb = broadcast(t, x)
    return (1 - tb) * x + tb * noise


def student_inputs(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The student's x_{t_i}: noised real data, except pure noise t·x1 at the top of the grid, exactly the
    input the sampler starts from (for M = 1 every sample, as FastGen does; docs/method.md §6.1)."""
    top = broadcast((t >= GRID_TOP).to(t.dtype), x)
    return top * broadcast(t, x) * noise + (1 - top) * noised(x, noise, t)
