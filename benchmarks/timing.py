# SPDX-License-Identifier: Apache-2.0
"""Timing for the benchmarks: CUDA events on a GPU (perf_counter on a CPU), medians, and the device's matmul rate."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    """One call of fn: CUDA events on a GPU, perf_counter on a CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    start_s = time.perf_counter()
    fn()
    return time.perf_counter() - start_s


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median time of fn over `repeats` calls, after the caller's warm-up."""
    return statistics.median(seconds(fn, device) for _ in range(repeats))


def interleaved_medians(fns: list[Callable[[], object]], repeats: int, device: torch.device) -> list[float]:
    """Median seconds of each callable, timed in alternation (after one warm-up call each) so that load from
    other processes hits all of them alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times, strict=True):
            bucket.append(seconds(fn, device))
    return [statistics.median(bucket) for bucket in times]


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """Measured dense matmul rate in FLOP/s of an n×n×n product."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    sync(device)
    return 2 * n**3 / median_seconds(lambda: torch.mm(a, b), repeats, device)
