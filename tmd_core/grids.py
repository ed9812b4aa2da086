# SPDX-License-Identifier: Apache-2.0
"""Time grids and cost accounting of TMD (Eq. 16, App. A.2; docs/method.md §3–4).

Convention: t = 0 is data, t = 1 is noise; grids are descending and end at 0.
"""
from __future__ import annotations

import math

import torch

from .errors import SamplingConfigError

GRID_TOP = 0.999  # footnote 2 of the paper: t_M = s_N = 0.999 to match Wan's pretraining


def shift_time(x: float, gamma: float) -> float:
    """Timestep shift shift_γ(x) = γx / ((γ-1)x + 1); γ = 1 is the identity."""
    return gamma * x / ((gamma - 1.0) * x + 1.0)


def check_step_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SamplingConfigError(f"{name} must be a whole number of steps ≥ 1, got {value!r}.")
    return value


def check_gamma(name: str, gamma: float) -> float:
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma >= 1.0):
        raise SamplingConfigError(f"{name} must be a finite shift γ ≥ 1, got {gamma!r}.")
    return float(gamma)


def tmd_grid(steps: int, gamma: float = 10.0) -> list[float]:
    """The TMD outer or inner grid: t_i = shift_γ(0.999·i/steps), descending, top clamped to 0.999.

    M=2, γ=10 gives [0.999, 0.9089, 0.0]. Returned as Python floats so loops over it never
    touch the device.
    """
    check_step_count("steps", steps)
    gamma = check_gamma("gamma", gamma)
    grid = [shift_time(GRID_TOP * i / steps, gamma) for i in range(steps, -1, -1)]
    grid[0] = min(grid[0], GRID_TOP)
    return grid


def tmd_sigmas(steps: int, gamma: float = 10.0) -> torch.Tensor:
    """`tmd_grid` as a float32 SIGMAS tensor of length steps + 1 (what ComfyUI samplers take)."""
    return torch.tensor(tmd_grid(steps, gamma), dtype=torch.float32)


def teacher_sigmas(steps: int, shift: float = 5.0) -> torch.Tensor:
    """Wan's own flow-matching schedule: shift_γ of a uniform grid from 1 to 0 (steps + 1 values)."""
    check_step_count("steps", steps)
    shift = check_gamma("shift", shift)
    return torch.tensor([shift_time(i / steps, shift) for i in range(steps, -1, -1)], dtype=torch.float32)


def check_head_blocks(head_blocks: int, num_layers: int) -> int:
    """H must leave at least one backbone block and take at least one head block."""
    if isinstance(head_blocks, bool) or not isinstance(head_blocks, int) or not 1 <= head_blocks < num_layers:
        raise SamplingConfigError(
            f"the flow head must take between 1 and {num_layers - 1} of the model's {num_layers} blocks, "
            f"got H={head_blocks!r}."
        )
    return head_blocks


def effective_nfe(outer_steps: int, inner_steps: int, head_blocks: int, num_layers: int) -> float:
    """Eq. 16: DiT blocks used per video divided by the teacher depth, M·(1 + (N-1)·H/L)."""
    check_step_count("outer steps M", outer_steps)
    check_step_count("inner steps N", inner_steps)
    check_head_blocks(head_blocks, num_layers)
    return outer_steps * (1.0 + (inner_steps - 1) * head_blocks / num_layers)
