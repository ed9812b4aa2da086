# SPDX-License-Identifier: Apache-2.0
"""Fused RMSNorm → RoPE for q/k: the Triton kernel against float64 and torch references."""
import math

import pytest
import torch

from comfyui_tmd.tmd_kernels.qk_norm_rope import rms_norm_rope
from comfyui_tmd.tmd_core.wan_layers import rope_table

from kernel_checks import assert_within_torch_error, random

# (batch, patch grid (T, H, W), heads, head_dim): odd head counts and half-widths off powers of two (15, 6),
# and Wan-1.3B's 12 heads of 128.
SHAPES = [(2, (3, 2, 2), 3, 10), (1, (2, 3, 5), 2, 12), (1, (1, 2, 3), 12, 128)]
EPS = 1e-6


@pytest.mark.parametrize("rope", [True, False], ids=["self-attn", "cross-attn"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: str(s).replace(" ", ""))
def test_kernel_is_as_accurate_as_torch_and_deterministic(kernel_target, shape, rope):
    device, dtype = kernel_target
    batch, grid, heads, head_dim = shape
    x = random((batch, math.prod(grid), heads * head_dim), device, dtype, seed=5)
    weight = 1 + 0.3 * random((heads * head_dim,), device, dtype, seed=6)
    freqs = rope_table(grid, head_dim, device=device, dtype=torch.float64) if rope else None

    def call(impl, dt=dtype):
        table = None if freqs is None else freqs.to(torch.promote_types(dt, torch.float32))  # fp32 table, as the model
        return rms_norm_rope(x.to(dt), weight.to(dt), EPS, table, impl=impl)

    kernel = call("triton")
    assert_within_torch_error(kernel, call("torch"), call("torch", torch.float64))
    assert torch.equal(kernel, call("triton")), "two runs differ"


def test_rejects_a_table_for_another_token_count(kernel_target):
    device, dtype = kernel_target
    x = random((1, 12, 30), device, dtype, seed=1)
    with pytest.raises(ValueError, match=r"expected \[1, 12, 1, head_dim/2, 2, 2\]"):
        rms_norm_rope(x, torch.ones(30, device=device, dtype=dtype), EPS, rope_table((2, 2, 2), 10, device=device))
