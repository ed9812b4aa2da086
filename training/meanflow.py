# SPDX-License-Identifier: Apache-2.0
"""The math of TM-MeanFlow (Eqs. 8–10, App. A.2; docs/method.md §5), free of any network: tested analytically.

Sign convention (the paper's Eq. 13 typo fixed): y_r = y_s − (s − r)·u, and the MeanFlow identity
u + (s − r)·du/ds = v, with d/ds the total derivative along the flow (∂_s u + ∂_y u · v, r fixed).
So the regression target is  û = v − (s − r)·du/ds.

`u_fn(y, s, rows)` is the average velocity of the rows `rows` of the batch at inner state y and time s
(r is fixed by the caller). The derivative is a finite difference, as in the paper (forward-mode AD does
not mix with FlashAttention or FSDP): central with step δ where both s ± δ lie in [0.001, 0.999] and
s − δ stays above r, one-sided otherwise. Times and the shifted states y_{s±δ} = y_s ± δ·v are formed in
float64; only the network sees its own dtype.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..tmd_core.broadcast import broadcast
from ..tmd_core.grids import GRID_TOP
from .times import T_MIN

AverageVelocity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def fd_points(s: torch.Tensor, r: torch.Tensor, delta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper and lower evaluation times [B] float64: s ± δ where allowed, s itself on the side that is not.

    Where neither side is allowed (only for inner grids finer than ~12 steps) the forward step is used:
    the linear path y_{s+δ} is still defined there.
    """
    forward_ok = s + delta <= GRID_TOP
    backward_ok = (s - delta >= T_MIN) & (s - delta > r)
    forward_ok = forward_ok | ~backward_ok
    return torch.where(forward_ok, s + delta, s), torch.where(backward_ok, s - delta, s)


@torch.no_grad()
def total_derivative(u_fn: AverageVelocity, y_s: torch.Tensor, v: torch.Tensor, s: torch.Tensor, r: torch.Tensor,
                     delta: float, rows: torch.Tensor) -> torch.Tensor:
    """du/ds along the flow for `rows` of the batch: y_s, v [B, ...], s, r [B] float64 -> [len(rows), ...] float64."""
    y64, v64, s_r, r_r = y_s[rows].double(), v[rows].double(), s[rows].double(), r[rows].double()
    upper, lower = fd_points(s_r, r_r, delta)
    y_up = y64 + broadcast(upper - s_r, y64) * v64
    y_low = y64 + broadcast(lower - s_r, y64) * v64
    u_up = u_fn(y_up.to(y_s.dtype), upper, rows).double()
    u_low = u_fn(y_low.to(y_s.dtype), lower, rows).double()
    return (u_up - u_low) / broadcast(upper - lower, y64)


@torch.no_grad()
def meanflow_target(u_fn: AverageVelocity, y_s: torch.Tensor, v: torch.Tensor, s: torch.Tensor, r: torch.Tensor,
                    delta: float, always_evaluate: bool = False) -> torch.Tensor:
    """û = v − (s − r)·du/ds, [B, ...] float64. Rows with r = s are plain flow matching (û = v, no evaluation).

    With `always_evaluate`, a batch without such rows still calls u_fn, on its first row and to no effect, so
    processes that must run the same forwards (FSDP2) stay in step."""
    target = v.double().clone()
    rows = torch.nonzero(r < s).flatten()
    if len(rows):
        du_ds = total_derivative(u_fn, y_s, v, s, r, delta, rows)
        target[rows] -= broadcast(s[rows] - r[rows], du_ds) * du_ds
    elif always_evaluate:
        total_derivative(u_fn, y_s, v, s, r, delta, rows.new_zeros(1))
    return target


def adaptive_loss(error: torch.Tensor, c: float) -> torch.Tensor:
    """mean over the batch of ||Δ||² / sg(||Δ||² + c), ||·||² summed over each sample (App. A.2, power 1)."""
    squared = error.float().pow(2).flatten(1).sum(1)  # [B]
    return (squared / (squared.detach() + c)).mean()
