# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: small random Wan models and inputs. Every test draws fresh random tensors, never zeros."""
import os

import pytest
import torch

# The kernel tests run Triton's CPU interpreter where there is no GPU. Triton reads TRITON_INTERPRET when it is
# first imported (the pack imports it), so it is set here, before anything else. Nothing else changes: models
# default to the torch path, and only a test that switches a model or calls a kernel with impl="triton" runs Triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from comfyui_tmd.tmd_core import FlowHeadSpec, TMDStudent, WanDiT  # noqa: E402

from factories import LATENT, random_wan  # noqa: E402

@pytest.fixture
def wan() -> WanDiT:
    return random_wan()


@pytest.fixture
def student(wan) -> TMDStudent:
    return TMDStudent.from_teacher(wan, FlowHeadSpec(head_blocks=2)).eval()


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(LATENT, generator=g)
    context = torch.randn(LATENT[0], 7, 4096, generator=g)
    t = torch.rand(LATENT[0], generator=g) * 0.9 + 0.05
    return x, t, context


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=[pytest.param(("cpu", torch.float32), id="cpu-fp32-interpreter"),
                        pytest.param(("cuda", torch.float32), id="cuda-fp32", marks=pytest.mark.gpu),
                        pytest.param(("cuda", torch.bfloat16), id="cuda-bf16", marks=pytest.mark.gpu)])
def kernel_target(request, monkeypatch) -> tuple[str, torch.dtype]:
    """(device, dtype) a kernel test runs at: CPU fp32 in Triton's interpreter, CUDA fp32 and bf16 on a GPU.

    Every output buffer a launcher allocates is filled with NaN first, so an element the kernel fails to
    write shows up as a NaN in the result."""
    from comfyui_tmd.tmd_kernels import triton_gate
    if not triton_gate.TRITON_IMPORTED:
        pytest.skip("Triton is not installed: pip install -e '.[triton]' to test the kernels")
    device, dtype = request.param
    if device == "cpu" and not triton_gate.INTERPRETER:
        pytest.skip("CPU kernel cases need TRITON_INTERPRET=1 before Triton is imported (on a GPU the CUDA cases run)")
    monkeypatch.setattr(triton_gate, "empty_like", lambda x: torch.full_like(x, float("nan")))
    return device, dtype
