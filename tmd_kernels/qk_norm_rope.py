# SPDX-License-Identifier: Apache-2.0
"""Fused RMSNorm (over the whole width, as Wan's norm_q/norm_k) → RoPE, for the queries and keys of attention.

    out = rope(x·rsqrt(mean(x²) + eps)·weight)      x [B, L, D = heads·head_dim]

RoPE uses ComfyUI's layout: one 2×2 rotation per (token, frequency), freqs [1, L, 1, head_dim/2, 2, 2],
acting on adjacent pairs (x[2i], x[2i+1]) of each head; without freqs (cross-attention) only the
norm runs.

Cost per element of a bf16 q or k: ~8 FLOPs, so memory bound. Torch (upcast, square, mean, scale,
downcast, weight, then RoPE's upcast, two broadcast products, sum and downcast) moves roughly 80 bytes;
the fused kernel reads x once and writes once (4 bytes) plus the fp32 table, which every head and batch
entry shares (16 bytes per pair per token, 8/heads bytes per element). At Wan-1.3B 480p (32,760 tokens
× 1536) that is ~7.5 GB against ~0.5 GB for q and k of one self-attention.
"""
from __future__ import annotations

import torch

from . import triton_gate
from .triton_gate import jit, row_block, tl, use_triton, warps_for


# ---- torch reference (also the model's torch path: same ops, same rounding) -------------------

def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Wan's RMSNorm: statistics in at least float32, rounded to x's dtype, then times weight."""
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs of x [B, L, heads, head_dim] by freqs [1, L, 1, head_dim/2, 2, 2]."""
    pairs = x.to(freqs.dtype).reshape(*x.shape[:-1], -1, 1, 2)  # [B, L, n, d/2, 1, 2]
    out = freqs[..., 0] * pairs[..., 0] + freqs[..., 1] * pairs[..., 1]  # [B, L, n, d/2, 2]
    return out.reshape(x.shape).to(x.dtype)


def rms_norm_rope_ref(x: torch.Tensor, weight: torch.Tensor, eps: float,
                      freqs: torch.Tensor | None = None) -> torch.Tensor:
    """x [B, L, D] -> [B, L, D]: RMSNorm, then RoPE per head when freqs is given."""
    normed = rms_norm_ref(x, weight, eps)
    if freqs is None:
        return normed
    return apply_rope(normed.unflatten(-1, (-1, 2 * freqs.shape[3])), freqs).flatten(2)


# ---- Triton kernel and launcher ---------------------------------------------------------------

@jit
def _rms_norm_rope_kernel(
    x_ptr, out_ptr,  # [rows, D], rows = B·L, contiguous
    weight_ptr,  # [D]
    freqs_ptr,  # [L, head_dim/2, 2, 2] float32, contiguous
    tokens, half_head, half_dim, eps,
    HAS_ROPE: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    pair = tl.arange(0, BLOCK)  # pair p holds x[2p], x[2p+1]
    mask = pair < half_dim
    base = row * 2 * half_dim + 2 * pair
    a = tl.load(x_ptr + base, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(x_ptr + base + 1, mask=mask, other=0.0).to(tl.float32)
    inv_rms = tl.rsqrt(tl.sum(a * a + b * b, axis=0) / (2 * half_dim) + eps)
    a = a * inv_rms * tl.load(weight_ptr + 2 * pair, mask=mask, other=0.0).to(tl.float32)
    b = b * inv_rms * tl.load(weight_ptr + 2 * pair + 1, mask=mask, other=0.0).to(tl.float32)
    if HAS_ROPE:
        rot = ((row % tokens) * half_head + pair % half_head) * 4  # the 2×2 matrix of (token, frequency)
        f00 = tl.load(freqs_ptr + rot, mask=mask, other=0.0)
        f01 = tl.load(freqs_ptr + rot + 1, mask=mask, other=0.0)
        f10 = tl.load(freqs_ptr + rot + 2, mask=mask, other=0.0)
        f11 = tl.load(freqs_ptr + rot + 3, mask=mask, other=0.0)
        a, b = f00 * a + f01 * b, f10 * a + f11 * b
    tl.store(out_ptr + base, a.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(out_ptr + base + 1, b.to(out_ptr.dtype.element_ty), mask=mask)


def _check(x: torch.Tensor, weight: torch.Tensor, freqs: torch.Tensor | None) -> None:
    if x.ndim != 3 or x.shape[-1] % 2 or weight.shape != x.shape[-1:]:
        raise ValueError(f"x has shape {tuple(x.shape)} and weight {tuple(weight.shape)}, "
                         "expected x [batch, tokens, even dim] and weight [dim].")
    if freqs is not None:
        expected = (1, x.shape[1], 1, freqs.shape[3], 2, 2)
        if freqs.ndim != 6 or tuple(freqs.shape) != expected or x.shape[-1] % (2 * freqs.shape[3]):
            raise ValueError(f"freqs has shape {tuple(freqs.shape)}, expected [1, {x.shape[1]}, 1, head_dim/2, 2, 2] "
                             f"with head_dim dividing {x.shape[-1]}.")


def _launch(x: torch.Tensor, weight: torch.Tensor, eps: float, freqs: torch.Tensor | None) -> torch.Tensor:
    b, tokens, dim = x.shape
    x = x.contiguous()
    out = triton_gate.empty_like(x)
    table = x if freqs is None else freqs.to(torch.float32).contiguous()
    block = row_block(dim // 2)
    _rms_norm_rope_kernel[(b * tokens,)](
        x, out, weight, table, tokens, 1 if freqs is None else freqs.shape[3], dim // 2, eps,
        HAS_ROPE=freqs is not None, BLOCK=block, num_warps=warps_for(block),
    )
    return out


# ---- public function --------------------------------------------------------------------------

def rms_norm_rope(x: torch.Tensor, weight: torch.Tensor, eps: float, freqs: torch.Tensor | None = None,
                  impl: str = "auto") -> torch.Tensor:
    """RMSNorm of x [B, L, D] over D, times weight [D], then RoPE per head if freqs is given -> [B, L, D]."""
    _check(x, weight, freqs)
    if not use_triton(impl, x):
        return rms_norm_rope_ref(x, weight, eps, freqs)
    return _launch(x, weight, eps, freqs)
