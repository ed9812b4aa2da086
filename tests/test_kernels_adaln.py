# SPDX-License-Identifier: Apache-2.0
"""Fused (residual add →) LayerNorm → modulation: the Triton kernel against float64 and torch references."""
import pytest
import torch

from comfyui_tmd.tmd_kernels.adaln import add_norm_modulate, norm_modulate

from kernel_checks import assert_within_torch_error, random

# (batch, tokens, dim, frames): widths off powers of two so the row mask matters, per-frame modulation.
SHAPES = [(2, 12, 40, 3), (1, 7, 33, 1), (3, 10, 64, 5), (1, 4, 1536, 2)]
EPS = 1e-6


def make_inputs(shape, device, dtype, seed=0):
    b, tokens, dim, frames = shape
    mods = random((b, frames, 6, dim), device, dtype, seed)  # chunks of one tensor, as the model makes them
    return {
        "x": random((b, tokens, dim), device, dtype, seed + 1), "y": random((b, tokens, dim), device, dtype, seed + 2),
        "shift": mods[:, :, 0], "scale": mods[:, :, 1], "gate": mods[:, :, 2],
        "weight": 1 + 0.3 * random((dim,), device, dtype, seed + 3), "bias": random((dim,), device, dtype, seed + 4),
    }


# The four ways the model calls the kernel: norm1 + modulation, head/fusion (same), self-attn residual + norm3,
# cross-attn residual + norm2 + modulation, plus an affine norm without residual (LayerNorm module).
VARIANTS = {
    "norm+mod": lambda a, impl: (norm_modulate(a["x"], EPS, shift=a["shift"], scale=a["scale"], impl=impl),),
    "affine": lambda a, impl: (norm_modulate(a["x"], EPS, a["weight"], a["bias"], impl=impl),),
    "gated-add+affine": lambda a, impl: add_norm_modulate(a["x"], a["y"], EPS, gate=a["gate"], weight=a["weight"],
                                                          bias=a["bias"], impl=impl),
    "add+mod": lambda a, impl: add_norm_modulate(a["x"], a["y"], EPS, shift=a["shift"], scale=a["scale"], impl=impl),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_kernel_is_as_accurate_as_torch_and_deterministic(kernel_target, shape, variant):
    device, dtype = kernel_target
    inputs = make_inputs(shape, device, dtype)
    call = VARIANTS[variant]
    kernel = call(inputs, "triton")
    reference = call({k: v.double() for k, v in inputs.items()}, "torch")
    for k, t, r in zip(kernel, call(inputs, "torch"), reference, strict=True):
        assert_within_torch_error(k, t, r)
    assert all(torch.equal(a, b) for a, b in zip(kernel, call(inputs, "triton"), strict=True)), "two runs differ"


def test_rejects_modulations_that_do_not_fit_the_tokens(kernel_target):
    device, dtype = kernel_target
    a = make_inputs((2, 12, 40, 3), device, dtype)
    with pytest.raises(ValueError, match="frames dividing 10 tokens"):  # 3 frames of modulation, 10 tokens
        norm_modulate(a["x"][:, :10], EPS, shift=a["shift"], scale=a["scale"], impl="triton")
    with pytest.raises(ValueError, match="shift and scale, must be given together"):
        norm_modulate(a["x"], EPS, shift=a["shift"], impl="triton")
    with pytest.raises(ValueError, match="residual branch has shape"):
        add_norm_modulate(a["x"], a["y"][:, :5], EPS, impl="triton")
