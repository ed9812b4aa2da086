# SPDX-License-Identifier: Apache-2.0
"""The one module that imports Triton: availability, the impl switch, and the `jit` decorator kernels use.

Triton is optional. Without it every public kernel function runs its torch reference. With it, a
kernel runs on CUDA tensors, or on CPU tensors when `TRITON_INTERPRET=1` (Triton's numpy interpreter:
fp32 only, for correctness tests). The variable must be set before Triton is first imported: Triton
builds its own library functions (tl.sum, ...) for one mode at import, so switching later breaks
kernels that call them. `INTERPRETER` is therefore read once, here, at import.
"""
from __future__ import annotations

import os
from typing import Callable

import torch


def _env_true(name: str) -> bool:
    return os.environ.get(name, "0").lower() in ("1", "true", "on", "yes")


try:
    import triton
    import triton.language as tl
except ImportError:  # Triton is an optional extra: `pip install comfyui-tmd[triton]`
    triton = None
    tl = None

TRITON_IMPORTED = triton is not None
# Whether Triton runs kernels in its CPU interpreter; fixed when Triton is imported (see above).
INTERPRETER = TRITON_IMPORTED and _env_true("TRITON_INTERPRET")
IMPLS = ("auto", "triton", "torch")
# Kernels read and write these dtypes; arithmetic inside them is float32.
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def triton_unusable_reason(*tensors: torch.Tensor) -> str | None:
    """Why the Triton kernels cannot take these tensors, or None when they can."""
    if not TRITON_IMPORTED:
        return "Triton is not installed (pip install 'comfyui-tmd[triton]')"
    for t in tensors:
        if t.dtype not in KERNEL_DTYPES:
            return f"the kernels take float32, bfloat16 or float16 tensors, got {t.dtype}"
        if t.device.type == "cpu" and not INTERPRETER:
            return "the tensors are on the CPU and TRITON_INTERPRET=1 was not set before Triton was imported"
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


def jit(fn: Callable) -> Callable:
    """`triton.jit` where Triton is installed; without it the plain function, which is never launched."""
    return triton.jit(fn) if TRITON_IMPORTED else fn


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """The one place launchers allocate outputs, so tests can poison every output buffer with NaN."""
    return torch.empty_like(x)


def row_block(n: int) -> int:
    """Block size for a kernel that holds one row of n values: the next power of two (Triton needs one)."""
    return 1 << max(0, n - 1).bit_length()


def warps_for(block: int) -> int:
    """Warps per program for a row of `block` values: 4 up to 2048 values, 8 above (Wan rows are 1536 or 5120)."""
    return 4 if block <= 2048 else 8
