# SPDX-License-Identifier: Apache-2.0
"""Each Triton kernel timed alone against its torch path, at the shapes one Wan block gives it."""
from __future__ import annotations

from typing import Callable

import torch

from ..tmd_kernels.adaln import add_norm_modulate, norm_modulate
from ..tmd_kernels.qk_norm_rope import rms_norm_rope
from ..tmd_kernels.triton_gate import triton_unusable_reason
from ..tmd_core.wan_config import WanConfig
from ..tmd_core.wan_layers import rope_table
from .timing import median_seconds, sync


def kernel_calls(config: WanConfig, grid: tuple[int, int, int], text_tokens: int, device: torch.device,
                 dtype: torch.dtype) -> dict[str, Callable[[str], object]]:
    """name -> call(impl) for each kernel use in a block, on fresh random inputs of one sample."""
    tokens, d, eps = grid[0] * grid[1] * grid[2], config.dim, config.eps
    x, y, q = (torch.randn(1, tokens, d, device=device, dtype=dtype) for _ in range(3))
    text_q = torch.randn(1, text_tokens, d, device=device, dtype=dtype)
    shift, scale, gate = torch.randn(1, 1, 3, d, device=device, dtype=dtype).unbind(2)  # [1, 1, d] each
    weight, bias = torch.randn(2, d, device=device, dtype=dtype)
    freqs = rope_table(grid, config.head_dim, device=device)  # float32, as the model uses it
    return {
        "norm1 + modulation": lambda impl: norm_modulate(x, eps, shift=shift, scale=scale, impl=impl),
        "gated residual + norm3":
            lambda impl: add_norm_modulate(x, y, eps, gate=gate, weight=weight, bias=bias, impl=impl),
        "residual + norm2 + modulation": lambda impl: add_norm_modulate(x, y, eps, shift=shift, scale=scale, impl=impl),
        "q or k RMSNorm + RoPE (self-attn)": lambda impl: rms_norm_rope(q, weight, eps, freqs, impl=impl),
        "k RMSNorm (cross-attn, text tokens)": lambda impl: rms_norm_rope(text_q, weight, eps, impl=impl),
    }


def kernel_cases(config: WanConfig, grid: tuple[int, int, int], text_tokens: int, device: torch.device,
                 dtype: torch.dtype, repeats: int) -> list[dict]:
    """Median time of each kernel and of its torch path, and the speed-up; skipped where Triton cannot run."""
    results = []
    probe = torch.empty(0, device=device, dtype=dtype)
    reason = triton_unusable_reason(probe)
    with torch.no_grad():
        for name, call in kernel_calls(config, grid, text_tokens, device, dtype).items():
            if reason is not None:
                results.append({"kernel": name, "skipped": reason})
                continue
            seconds = {}
            for impl in ("torch", "triton"):
                call(impl)  # warm-up: Triton builds
                sync(device)
                seconds[impl] = median_seconds(lambda call=call, impl=impl: call(impl), repeats, device)
            results.append({"kernel": name, "torch_s": seconds["torch"], "triton_s": seconds["triton"],
                            "speedup": seconds["torch"] / seconds["triton"]})
    return results
