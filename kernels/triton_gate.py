# SPDX-License-Identifier: Apache-2.0
"""The one module that imports Triton: availability, the impl switch, and kernels built at first launch.

Triton is optional. Without it every public kernel function runs its torch reference. With it, a
kernel runs on CUDA tensors, or on CPU tensors when `TRITON_INTERPRET=1` (Triton's numpy interpreter:
fp32 only, for correctness tests). Triton reads `TRITON_INTERPRET` when it decorates a function, so
`TritonKernel` decorates at first launch instead of at import: the setting of that moment counts, and
setting it after importing the pack works.
"""
from __future__ import annotations

import os
from typing import Callable

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # Triton is an optional extra: `pip install comfyui-tmd[triton]`
    triton = None
    tl = None

TRITON_IMPORTED = triton is not None
IMPLS = ("auto", "triton", "torch")
# Kernels read and write these dtypes; arithmetic inside them is float32.
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def interpreting() -> bool:
    """True when Triton would run kernels in its CPU interpreter (TRITON_INTERPRET set to a true value)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def triton_unusable_reason(*tensors: torch.Tensor) -> str | None:
    """Why the Triton kernels cannot take these tensors, or None when they can."""
    if not TRITON_IMPORTED:
        return "Triton is not installed (pip install 'comfyui-tmd[triton]')"
    for t in tensors:
        if t.dtype not in KERNEL_DTYPES:
            return f"the kernels take float32, bfloat16 or float16 tensors, got {t.dtype}"
        if t.device.type == "cpu" and not interpreting():
            return "the tensors are on the CPU and TRITON_INTERPRET=1 is not set"
        if t.device.type not in ("cpu", "cuda"):
            return f"the kernels run on CUDA (or the CPU interpreter), the tensors are on {t.device.type}"
    return None


def use_triton(impl: str, *tensors: torch.Tensor) -> bool:
    """Resolve an impl switch for these tensors: "auto" picks Triton where it can run, else torch.

    "triton" where Triton cannot run is an error that says why; an unknown impl is an error too.
    """
    if impl not in IMPLS:
        raise ValueError(f"kernel impl {impl!r} is unknown; expected one of {', '.join(IMPLS)}.")
    if impl == "torch":
        return False
    reason = triton_unusable_reason(*tensors)
    if reason is not None and impl == "triton":
        raise RuntimeError(f"impl='triton' was asked for, but {reason}.")
    return reason is None


class TritonKernel:
    """A kernel function decorated with `triton.jit` at its first launch (one build per interpreter setting).

    Launch it like a jitted kernel: `kernel[grid](*args, **meta)`.
    """

    def __init__(self, fn: Callable):
        self.fn = fn
        self._built: dict[bool, Callable] = {}

    def __getitem__(self, grid):
        mode = interpreting()
        if mode not in self._built:
            self._built[mode] = triton.jit(self.fn)
        return self._built[mode][grid]


def row_block(n: int) -> int:
    """Block size for a kernel that holds one row of n values: the next power of two (Triton needs one)."""
    return 1 << max(0, n - 1).bit_length()


def warps_for(block: int) -> int:
    """Warps per program for a row of `block` values: 4 up to 2048 values, 8 above (Wan rows are 1536 or 5120)."""
    return 4 if block <= 2048 else 8
