# SPDX-License-Identifier: Apache-2.0
"""Fusion of the inner state y_s into the backbone feature m (App. A.1, Fig. 8; docs/method.md §2.2).

Both fusions take m and the patch tokens of y_s (made by the backbone's own patch embedding, so the
weights are shared) and return the tokens the head blocks start from. The gated fusion returns m
exactly at initialisation, so a fresh student reproduces its teacher.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..tmd_kernels.adaln import norm_modulate
from .wan_layers import LayerNorm

FUSION_TYPES = ("gated", "concat")


class OffloadableLinear(nn.Linear):
    """nn.Linear whose weights follow the input to its device when a host left them offloaded.

    ComfyUI moves a flow head it cannot keep resident (--lowvram, --novram) only partly, and it streams only
    layers of its own operations; these layers fetch themselves instead. Where the weights already sit with
    the input, `.to` returns them as they are: no copy, no cost.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.device)
        return F.linear(x, self.weight.to(x.device), bias)


class GatedFusion(nn.Module):
    """m + σ(a)·W0·(h + gate·FFN(AdaLN(h))), with h = PatchEmbed(y_s) and W0 zero at init.

    The AdaLN shift/scale/gate reuse the global FFN modulation of e0(s) (chunks 3..5), plus a learned
    table that starts at zero. W0 (not the gate) is zero so gradients reach the fusion at step 0:
    dL/dW0 = σ(a)·(dL/dfused)ᵀ·h2 is non-zero while the output is still exactly m.
    """

    kernel_impl = "torch"  # the fused LayerNorm → modulation kernel, as in WanBlock

    def __init__(self, dim: int, ffn_dim: int, eps: float = 1e-6):
        super().__init__()
        self.norm = LayerNorm(dim, eps, elementwise_affine=False)
        self.modulation = nn.Parameter(torch.zeros(1, 3, dim))
        self.ffn = nn.Sequential(OffloadableLinear(dim, ffn_dim), nn.GELU(approximate="tanh"),
                                 OffloadableLinear(ffn_dim, dim))
        self.out = OffloadableLinear(dim, dim)
        self.gate_logit = nn.Parameter(torch.zeros(()))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, m: torch.Tensor, h: torch.Tensor, e0: torch.Tensor) -> torch.Tensor:
        """m, h [B, L, dim]; e0 [B, 1, 6, dim] of the inner time s -> fused [B, L, dim]."""
        # The loose parameters follow e0 to its device, as the layers do (see OffloadableLinear).
        modulation, gate_logit = self.modulation.to(e0.device), self.gate_logit.to(e0.device)
        shift, scale, gate = (modulation.unsqueeze(0) + e0[:, :, 3:]).unbind(2)  # 3 × [B, 1, dim]
        normed = norm_modulate(h, self.norm.eps, shift=shift, scale=scale, impl=self.kernel_impl)  # [B, L, dim]
        h = torch.addcmul(h, self.ffn(normed), gate)
        return m + torch.sigmoid(gate_logit) * self.out(h)


class ConcatFusion(nn.Module):
    """Linear([m ; h]) with the identity on m and N(0, 0.01²) on h at init (App. B.3; less stable in training)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = OffloadableLinear(2 * dim, dim)
        with torch.no_grad():
            self.proj.weight[:, :dim].copy_(torch.eye(dim))
            self.proj.weight[:, dim:].normal_(0.0, 0.01)
            self.proj.bias.zero_()

    def forward(self, m: torch.Tensor, h: torch.Tensor, e0: torch.Tensor) -> torch.Tensor:
        """m, h [B, L, dim] -> [B, L, dim]; e0 is unused (same call as GatedFusion)."""
        return self.proj(torch.cat([m, h], dim=-1))
