# SPDX-License-Identifier: Apache-2.0
"""The analytic FLOP counts equal torch's own FLOP counter on a small Wan and student (attention on the math path,
so its matrix products are visible to the counter)."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from comfyui_tmd.benchmarks import flops
from comfyui_tmd.tmd_core import TMDDenoiser, TMDStudent, FlowHeadSpec, generate_teacher, generate_tmd

from factories import LATENT, SMALL, random_wan

TOKENS, TEXT = flops.tokens_of(SMALL, LATENT), 7


def counted(fn) -> int:
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def test_wan_forward(wan, inputs):
    x, t, context = inputs
    assert counted(lambda: wan(x, 1000 * t, context)) == LATENT[0] * flops.wan_forward(SMALL, TOKENS, TEXT)


def test_backbone_and_head_step(student, inputs):
    x, t, context = inputs
    denoiser = TMDDenoiser(student, context)
    freqs, times = denoiser.prepare(x)
    embedded = denoiser.embedded_context(x)
    features = student.backbone(x, t, context, embedded_context=embedded, freqs=freqs)
    h = student.head_blocks
    assert counted(lambda: student.backbone(x, t, context, embedded_context=embedded, freqs=freqs)) \
        == LATENT[0] * flops.backbone(SMALL, TOKENS, TEXT, h)
    assert counted(lambda: student.head(features, x, times[0])) == LATENT[0] * flops.head_step(SMALL, TOKENS, TEXT, h)


@pytest.mark.parametrize("outer, inner", [(1, 2), (2, 4)])
def test_tmd_sampler(inputs, outer, inner):
    _, _, context = inputs
    student = TMDStudent.from_teacher(random_wan(), FlowHeadSpec(head_blocks=5)).eval()
    total = counted(lambda: generate_tmd(student, context, LATENT, seed=0, outer_steps=outer, inner_steps=inner))
    assert total == LATENT[0] * flops.tmd_sampler(SMALL, TOKENS, TEXT, outer, inner, 5)


def test_teacher_with_cfg(wan, inputs):
    _, _, context = inputs
    total = counted(lambda: generate_teacher(wan, context, context.flip(0), LATENT, seed=0, steps=2, batch_cfg=False))
    assert total == LATENT[0] * flops.euler_sampler(SMALL, TOKENS, TEXT, steps=2, cfg=True)
