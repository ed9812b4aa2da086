# SPDX-License-Identifier: Apache-2.0
"""The backbone/flow-head split, the initial identity with the teacher, and gradient flow (docs/method.md §2)."""
import pytest
import torch

from comfyui_tmd.tmd_core import FlowHeadSpec, TMDStudent
from comfyui_tmd.tmd_core.wan_model import embed_time, embed_tokens, rope_for

from factories import random_wan


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(params=[1, 2, 5], ids=lambda h: f"H{h}")
def split(request, inputs):
    """(teacher, fresh student with H head blocks, its backbone features on the inputs)."""
    wan = random_wan()
    x, t, context = inputs
    student = TMDStudent.from_teacher(wan, FlowHeadSpec(head_blocks=request.param))
    return wan, student, student.backbone(x, t, context)


def test_backbone_then_head_blocks_equal_the_full_forward(split, inputs):
    """The raw split (no fusion): blocks[:L-H] then blocks[L-H:] + output head is the unsplit forward."""
    wan, student, features = split
    x, t, context = inputs
    e, e0 = embed_time(wan, 1000 * t, x.dtype)
    tokens = features.tokens
    for block in wan.blocks[student.split:]:
        tokens = block(tokens, e=e0, freqs=features.freqs, context=features.context)
    split = wan.unpatchify(wan.head(tokens, e), features.grid)
    assert relative_error(split, wan(x, 1000 * t, context)) <= 1e-6


def test_fresh_head_at_the_outer_time_returns_the_teachers_velocity(split, inputs):
    wan, student, features = split
    x, t, context = inputs
    y_s, r = torch.randn_like(x), t * torch.rand_like(t)  # any inner state, any r < s
    head = student.head(features, y_s, student.head_time(t, r, x.dtype))
    teacher = wan(x, 1000 * t, context)
    assert relative_error(head, teacher) <= 1e-6
    assert torch.equal(head, teacher)  # the gated fusion adds exact zeros: bit-identical in practice


def test_concat_fusion_starts_close_to_the_teacher(inputs):
    wan = random_wan()
    x, t, context = inputs
    student = TMDStudent.from_teacher(wan, FlowHeadSpec(head_blocks=2, fusion="concat"))
    head = student.head(student.backbone(x, t, context), torch.randn_like(x), student.head_time(t, t, x.dtype))
    err = relative_error(head, wan(x, 1000 * t, context))
    assert 0 < err < 0.2  # N(0, 0.01²) on the y-coordinates: near, not equal


def test_gradients_reach_the_fusion_and_delta_embedding_at_step_zero(student, inputs):
    x, t, context = inputs
    student.train()
    features = student.backbone(x, t, context)
    head = student.head(features, torch.randn_like(x), student.head_time(t, 0.5 * t, x.dtype))
    (head * torch.randn_like(head)).sum().backward()
    grads = {name: p.grad for name, p in student.extras.named_parameters()}
    for name in ("fusion.out.weight", "fusion.out.bias", "delta_embedding.2.weight", "delta_embedding.2.bias"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    # The backbone is not detached: its blocks receive gradients through m.
    assert student.wan.blocks[0].ffn[0].weight.grad.abs().sum() > 0


def test_head_output_depends_on_y_and_r_once_trained(student, inputs):
    x, t, context = inputs
    with torch.no_grad():
        for p in student.extras.parameters():
            p.add_(0.05 * torch.randn_like(p))
    features = student.backbone(x, t, context)
    y = torch.randn_like(x)
    base = student.head(features, y, student.head_time(t, 0.5 * t, x.dtype))
    assert not torch.allclose(base, student.head(features, torch.randn_like(x), student.head_time(t, 0.5 * t, x.dtype)))
    assert not torch.allclose(base, student.head(features, y, student.head_time(t, 0.1 * t, x.dtype)))


def test_per_frame_time_modulation_is_broadcast_per_frame(wan, inputs):
    """ComfyUI's Wan2.2-style e0 [B, T, 6, dim] (one time per latent frame) is accepted by the blocks."""
    x, t, context = inputs
    tokens = embed_tokens(wan, x)
    _, e0 = embed_time(wan, 1000 * t, x.dtype)
    per_frame = e0.expand(-1, x.shape[2], -1, -1)
    ctx = wan.text_embedding(context)
    one = wan.blocks[0](tokens, e=e0, freqs=rope_for(wan, x), context=ctx)
    torch.testing.assert_close(wan.blocks[0](tokens, e=per_frame, freqs=rope_for(wan, x), context=ctx), one)
    torch.testing.assert_close(wan.blocks[0](tokens, e=e0[:, 0], freqs=rope_for(wan, x), context=ctx), one)
