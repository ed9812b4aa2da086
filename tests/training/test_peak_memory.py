# SPDX-License-Identifier: Apache-2.0
"""The CPU peak-memory meter against allocation patterns whose live bytes are known exactly."""
import random

import pytest
import torch
import torch.utils.checkpoint

from comfyui_tmd.training.peak_memory import StorageMeter, memory_meter

DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def test_random_allocations_and_frees_give_the_exact_live_bytes_and_peak():
    rng = random.Random(7)
    held, live, peak = [], 0, 0
    with StorageMeter() as meter:
        for _ in range(200):
            if held and rng.random() < 0.4:
                tensor = held.pop(rng.randrange(len(held)))
                live -= tensor.numel() * tensor.element_size()
                del tensor
            else:
                tensor = torch.randn(rng.randint(1, 5000), dtype=rng.choice(DTYPES))  # one allocation each
                held.append(tensor)
                live += tensor.numel() * tensor.element_size()
            peak = max(peak, live)
            assert meter.live_bytes == live
    assert meter.peak_bytes == peak > 0


def test_views_in_place_ops_and_older_tensors_add_nothing_and_a_resize_counts_once():
    before = torch.randn(3000)  # exists before the block: never counted, even when viewed or changed inside it
    with StorageMeter() as meter:
        a = torch.randn(1000, dtype=torch.float64)  # 8000 bytes
        view = a[::3]
        a.mul_(2.0)
        before.add_(1.0)
        older_view = before.t()[10:]
        assert meter.live_bytes == 8000
        out = torch.empty(0)
        torch.randn(2500, out=out)  # resized in place: 10000 bytes
        assert meter.live_bytes == 18000
        del a
        assert meter.live_bytes == 18000  # the view keeps a's memory alive
        del view
        assert meter.live_bytes == 10000
    assert meter.peak_bytes == 18000
    del older_view, out


def test_backward_of_a_checkpointed_layer_keeps_only_its_input_and_output_then_adds_the_gradients():
    torch.manual_seed(3)
    layer = torch.nn.Sequential(torch.nn.Linear(96, 160), torch.nn.GELU(), torch.nn.Linear(160, 96))
    x = torch.randn(40, 96, requires_grad=True)
    with StorageMeter() as meter:
        y = torch.utils.checkpoint.checkpoint(layer, x, use_reentrant=False)  # [40, 96], nothing saved inside
        assert meter.live_bytes == y.numel() * 4
        y.square().sum().backward()
    grads = sum(p.numel() for p in layer.parameters()) + x.numel()
    assert meter.live_bytes == (y.numel() + grads) * 4
    # the recomputed hidden activation [40, 160] (twice: Linear output and GELU output) lives during backward
    assert meter.peak_bytes >= (y.numel() + 2 * 40 * 160) * 4


def test_the_meter_for_a_cpu_device_is_the_storage_meter():
    assert isinstance(memory_meter(torch.device("cpu")), StorageMeter)


@pytest.mark.gpu
def test_the_cuda_meter_counts_an_allocation_from_the_block_start():
    device = torch.device("cuda")
    held = torch.randn(1 << 20, device=device)
    with memory_meter(device) as meter:
        a = torch.randn(1 << 18, device=device)
        b = torch.randn(1 << 19, device=device)
        del a
    assert meter.peak_bytes >= (3 << 18) * 4 and meter.live_bytes == b.numel() * 4
    del held, b
