# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: small random Wan models and inputs. Every test draws fresh random tensors, never zeros."""
import pytest
import torch

from comfyui_tmd.tmd_core import FlowHeadSpec, TMDStudent, WanDiT

from factories import LATENT, random_wan

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
