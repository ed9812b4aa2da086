# SPDX-License-Identifier: Apache-2.0
"""Peak memory of a block of code: the CUDA allocator's statistics on a GPU, live tensor storages on a CPU.

    with memory_meter(device) as meter:
        train_a_few_iterations()
    meter.peak_bytes, meter.live_bytes   # both counted from the block's start

CPU has no allocator statistics, and the process's RSS moves in pages the allocator keeps or returns
as it likes, so `StorageMeter` counts tensors instead: a TorchDispatchMode sees every tensor an ATen op
returns (forward, autograd's backward, activation-checkpoint recomputation, optimiser steps); each
storage is counted with its byte size when first seen and uncounted when a weakref finalizer reports
it freed (PyTorch keeps one Python object per live storage, so the finalizer fires when the memory goes).
Views and in-place results share a storage and are counted once. Not counted: what existed before the
block, scratch buffers a kernel allocates and frees inside itself (the CPU attention kernel's), and
tensors made without an op (`torch.frombuffer` over a file). Those are what CUDA's
`max_memory_allocated` also counts, so the two agree only up to kernel scratch.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def _storages(tree) -> list[torch.UntypedStorage]:
    """The storages of the CPU tensors in a pytree of op arguments or results."""
    return [value.untyped_storage() for value in tree_leaves(tree)
            if isinstance(value, torch.Tensor) and value.device.type == "cpu" and value.layout == torch.strided]


class StorageMeter(TorchDispatchMode):
    """Bytes of the CPU tensor storages created inside the block that are still alive, and their maximum."""

    def __init__(self):
        super().__init__()
        self.live_bytes = 0
        self.peak_bytes = 0
        self._sizes: dict[int, int] = {}  # id(storage) -> bytes counted for it
        self._aliasing: dict[object, bool] = {}  # op -> whether a result may alias an argument

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self._returns_views(func):  # a view or in-place result of an older tensor is not new memory, but a
            inputs = {id(s) for s in _storages((args, kwargs))}  # tracked one may have been resized (out=)
            for storage in _storages(out):
                if id(storage) not in inputs or id(storage) in self._sizes:
                    self._count(storage)
        else:
            for storage in _storages(out):
                self._count(storage)
        return out

    def _returns_views(self, func) -> bool:
        """Whether the op's schema lets a result alias an argument (views, in-place and out= ops)."""
        aliases = self._aliasing.get(func)
        if aliases is None:
            aliases = self._aliasing[func] = any(r.alias_info is not None for r in func._schema.returns)
        return aliases

    def _count(self, storage: torch.UntypedStorage) -> None:
        key, size = id(storage), storage.nbytes()
        known = self._sizes.get(key)
        if known is None:
            weakref.finalize(storage, self._free, key)
            self._sizes[key] = known = 0  # empty storages too: an out= argument may grow them
        if size != known:  # new, or resized in place (out= arguments)
            self._sizes[key] = size
            self.live_bytes += size - known
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)

    def _free(self, key: int) -> None:
        self.live_bytes -= self._sizes.pop(key, 0)


class CudaMeter:
    """The CUDA allocator's allocated bytes above the block's start, and their peak."""

    def __init__(self, device: torch.device):
        self.device = device
        self._start = 0

    def __enter__(self) -> "CudaMeter":
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self._start = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc) -> None:
        torch.cuda.synchronize(self.device)

    @property
    def live_bytes(self) -> int:
        return torch.cuda.memory_allocated(self.device) - self._start

    @property
    def peak_bytes(self) -> int:
        return torch.cuda.max_memory_allocated(self.device) - self._start


def memory_meter(device: torch.device) -> StorageMeter | CudaMeter:
    """The meter for `device`: a context manager with `live_bytes` and `peak_bytes`."""
    device = torch.device(device)
    return CudaMeter(device) if device.type == "cuda" else StorageMeter()
