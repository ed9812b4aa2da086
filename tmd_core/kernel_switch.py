# SPDX-License-Identifier: Apache-2.0
"""The per-model switch between the Triton kernels and their torch references (tmd_kernels/).

Layers that can use a kernel (WanBlock, Attention, WanHead, GatedFusion) carry a `kernel_impl`
attribute, "torch" by default, so a model computes exactly the reference ops until it is switched.
ComfyUI's own WanModel layers carry none and are left alone; the flow-head extras still switch.
"""
from __future__ import annotations

from torch import nn

from ..tmd_kernels.triton_gate import IMPLS


def set_kernel_impl(module: nn.Module, impl: str) -> int:
    """Set `kernel_impl` on every kernel-using layer inside module; returns how many layers were set.

    "auto" uses Triton where it can run for the tensors of each call (CUDA, or the CPU interpreter) and
    torch elsewhere; "triton" makes a call that Triton cannot run an error; "torch" is the reference.
    """
    if impl not in IMPLS:
        raise ValueError(f"kernel impl {impl!r} is unknown; expected one of {', '.join(IMPLS)}.")
    layers = [m for m in module.modules() if hasattr(m, "kernel_impl")]
    for layer in layers:
        layer.kernel_impl = impl
    return len(layers)
