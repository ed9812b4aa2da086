# SPDX-License-Identifier: Apache-2.0
"""How the flow head's output becomes the inner flow's average velocity u, in two forms.

The inner path is y_s = (1 − s)·y + s·y1 (Eq. 5), y = x1 − x, and a flow-map step is y_r = y_s − (s − r)·u.
Trained at r = s, the head regresses y itself, so head_θ ≈ E[y | y_s]; the two forms read it differently:

- "y1": u = y1 − head_θ (Eq. 14 as printed), with y1 the inner noise held fixed over all inner steps.
  It is the inner ODE's velocity only at the first step, where y_s = y1; later steps add y1 − E[y1 | y_s].
- "ys": u = (y_s − head_θ)/s, the inner ODE's velocity E[y1 − y | y_s] when head_θ = E[y | y_s]
  (the form the paper's x-target variant uses, Table 10). A step is then y_r = (r/s)·y_s + (1 − r/s)·head_θ.

At the grid top s = 0.999 the two agree up to a factor 1/s. "y1" is the default: distilled by the same
pipeline from the same toy teacher, it scored level with or ahead of "ys" on every rate, within the 95 %
intervals (docs/toy-ablation.md), though "ys" is the one that follows the inner ODE exactly.
Times s are Python floats in the sampler and float64 tensors [B] in training.
"""
from __future__ import annotations

import torch

from .broadcast import broadcast
from .errors import SamplingConfigError

INNER_FORMS = ("y1", "ys")
DEFAULT_INNER_FORM = "y1"


def check_inner_form(form: str) -> str:
    if form not in INNER_FORMS:
        raise SamplingConfigError(f"inner form {form!r} is unknown; expected one of {', '.join(INNER_FORMS)}.")
    return form


def _scale(s: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """A time as a multiplier of latents like `like` [B, ...]: floats stay floats, tensors [B] broadcast in ≥ fp32."""
    if isinstance(s, torch.Tensor):
        return broadcast(s, like, torch.promote_types(like.dtype, torch.float32))
    return s


def average_velocity(head_out: torch.Tensor, y_s: torch.Tensor, y1: torch.Tensor, s: float | torch.Tensor,
                     form: str) -> torch.Tensor:
    """u(y_s, s, r) from the head's output [B, C, T, H, W] in the given form (r enters through the head only)."""
    if check_inner_form(form) == "y1":
        return y1 - head_out
    return (y_s - head_out) / _scale(s, y_s)


def flow_map_step(y: torch.Tensor, head_out: torch.Tensor, y1: torch.Tensor, s: float, r: float,
                  form: str) -> torch.Tensor:
    """y_r = y_s − (s − r)·u (Eq. 13 with the sign corrected), u in the given form.

    Without autograd it updates y in place and consumes head_out as scratch, so the inner loop allocates
    nothing beyond the head's own output; with autograd (training rollouts) it is out of place.
    """
    if torch.is_grad_enabled():
        return y - (s - r) * average_velocity(head_out, y, y1, s, form)
    if check_inner_form(form) == "y1":
        return y.add_(head_out.sub_(y1), alpha=s - r)  # y + (s − r)·(head − y1)
    return y.add_(head_out.sub_(y), alpha=(s - r) / s)  # y + (1 − r/s)·(head − y)
