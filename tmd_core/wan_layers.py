# SPDX-License-Identifier: Apache-2.0
"""Wan2.1 DiT layers, key-compatible with official Wan2.1 and ComfyUI checkpoints.

Blocks take ComfyUI's block signature, `block(x, e=e0, freqs=..., context=..., context_img_len=...,
transformer_options=...)`, so the TMD core drives this model and ComfyUI's WanModel the same way.
RoPE tables use ComfyUI's layout: one 2×2 rotation matrix per (token, frequency), shape
[1, L, 1, head_dim/2, 2, 2], acting on adjacent pairs of the head dimension.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..tmd_kernels.adaln import add_norm_modulate, norm_modulate, norm_modulate_ref, per_frame
from ..tmd_kernels.qk_norm_rope import apply_rope, rms_norm_rope, rms_norm_ref

__all__ = ["Attention", "LayerNorm", "RMSNorm", "WanBlock", "WanHead", "apply_rope", "rope_axes", "rope_table",
           "sinusoidal_embedding"]


def sinusoidal_embedding(dim: int, position: torch.Tensor) -> torch.Tensor:
    """Wan's time embedding input: [cos | sin] of position·10000^(-k/half), computed in float64. [B] -> [B, dim]."""
    half = dim // 2
    position = position.to(torch.float64)
    exponents = torch.arange(half, dtype=torch.float64, device=position.device) / half
    angles = torch.outer(position, torch.pow(10000.0, -exponents))
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """How Wan splits a head's dimensions between the frame, height and width axes (44/42/42 for 128)."""
    return head_dim - 4 * (head_dim // 6), 2 * (head_dim // 6), 2 * (head_dim // 6)


def rope_table(grid: tuple[int, int, int], head_dim: int, theta: float = 10000.0,
               device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rotation matrices for frame-major tokens of a (T, H, W) patch grid: [1, T·H·W, 1, head_dim/2, 2, 2]."""
    angles = []
    for axis, (size, axis_dim) in enumerate(zip(grid, rope_axes(head_dim), strict=True)):
        freqs = 1.0 / theta ** (torch.arange(0, axis_dim, 2, dtype=torch.float64, device=device) / axis_dim)
        a = torch.outer(torch.arange(size, dtype=torch.float64, device=device), freqs)  # [size, axis_dim/2]
        view = [1, 1, 1, a.shape[1]]
        view[axis] = size
        angles.append(a.view(view).expand(*grid, a.shape[1]))
    a = torch.cat(angles, dim=-1).reshape(-1, head_dim // 2)  # [L, head_dim/2]
    cos, sin = torch.cos(a), torch.sin(a)
    rot = torch.stack([cos, -sin, sin, cos], dim=-1).view(1, -1, 1, head_dim // 2, 2, 2)
    return rot.to(dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm_ref(x, self.weight, self.eps)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in at least float32 whatever the activation dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return norm_modulate_ref(x, self.eps, self.weight, self.bias)


class Attention(nn.Module):
    """Multi-head attention with RMS-normed q/k; self-attention when `context` is None (then with RoPE).

    `kernel_impl` ("torch", "triton" or "auto"; set with `tmd_core.set_kernel_impl`) picks the fused
    RMSNorm + RoPE kernel for q and k; "torch" runs the reference ops.
    """

    kernel_impl = "torch"

    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, freqs: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        b, n = x.shape[0], self.num_heads
        source, rope = (x, freqs) if context is None else (context, None)
        q = rms_norm_rope(self.q(x), self.norm_q.weight, self.norm_q.eps, rope, self.kernel_impl)  # [B, L, dim]
        k = rms_norm_rope(self.k(source), self.norm_k.weight, self.norm_k.eps, rope, self.kernel_impl)  # [B, S, dim]
        q, k, v = (t.unflatten(-1, (n, -1)).transpose(1, 2) for t in (q, k, self.v(source)))  # [B, n, L|S, d]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, n, L, d]
        return self.o(out.transpose(1, 2).reshape(b, x.shape[1], -1))  # [B, L, dim]


class WanBlock(nn.Module):
    """One Wan2.1 T2V DiT block: AdaLN self-attention, cross-attention to text, AdaLN FFN, gated residuals.

    `kernel_impl` picks the fused (residual add →) LayerNorm → modulation kernel for its three norms.
    The last gated residual stays torch's addcmul: it is already one pass over memory.
    """

    kernel_impl = "torch"

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps, elementwise_affine=False)
        self.self_attn = Attention(dim, num_heads, eps)
        self.norm3 = LayerNorm(dim, eps, elementwise_affine=True)
        self.cross_attn = Attention(dim, num_heads, eps)
        self.norm2 = LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / math.sqrt(dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor, freqs: torch.Tensor, context: torch.Tensor,
                context_img_len: int | None = None, transformer_options: dict | None = None) -> torch.Tensor:
        """x [B, L, dim], e = e0 [B, F, 6, dim] (or [B, 6, dim]), context [B, S, dim] -> [B, L, dim].

        `context_img_len` and `transformer_options` exist for ComfyUI's block signature; T2V uses neither.
        """
        if e.ndim == 4:
            mods = (self.modulation.unsqueeze(0) + e).unbind(2)  # 6 × [B, F, dim]
        else:
            mods = (self.modulation + e).unsqueeze(1).unbind(2)  # 6 × [B, 1, dim]
        shift_a, scale_a, gate_a, shift_f, scale_f, gate_f = mods
        impl = self.kernel_impl
        h = norm_modulate(x, self.norm1.eps, shift=shift_a, scale=scale_a, impl=impl)
        x, h = add_norm_modulate(x, self.self_attn(h, freqs), self.norm3.eps, gate=gate_a,
                                 weight=self.norm3.weight, bias=self.norm3.bias, impl=impl)  # x + gate·attn, norm3
        x, h = add_norm_modulate(x, self.cross_attn(h, context=context), self.norm2.eps,
                                 shift=shift_f, scale=scale_f, impl=impl)  # x + cross, norm2 + modulation
        return torch.addcmul(x, self.ffn(h), per_frame(gate_f, x))  # [B, L, dim]


class WanHead(nn.Module):
    """Wan's output layer: AdaLN (shift/scale from e, not e0) and a projection to patch pixels."""

    kernel_impl = "torch"

    def __init__(self, dim: int, out_dim: int, patch_size: tuple[int, int, int], eps: float = 1e-6):
        super().__init__()
        self.norm = LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, math.prod(patch_size) * out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / math.sqrt(dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x [B, L, dim], e [B, F, dim] -> [B, L, prod(patch)·out_dim]."""
        shift, scale = (self.modulation.unsqueeze(0) + e.unsqueeze(2)).unbind(2)  # 2 × [B, F, dim]
        return self.head(norm_modulate(x, self.norm.eps, shift=shift, scale=scale, impl=self.kernel_impl))
