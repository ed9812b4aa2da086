# SPDX-License-Identifier: Apache-2.0
"""stage2.rollout_grad: the student's rollout carries gradients through all N inner steps, or through the last
only (the first N − 1 under no_grad), with the same sample either way."""
import pytest
import torch

from comfyui_tmd.tmd_core import FlowHeadSpec, TMDStudent
from comfyui_tmd.tmd_core.grids import tmd_grid
from comfyui_tmd.tmd_core.inner_form import flow_map_step
from comfyui_tmd.tmd_core.sampler import inner_rollout
from comfyui_tmd.training.config import config_from_dict
from comfyui_tmd.training.errors import TrainingConfigError
from comfyui_tmd.training.shards import ShardReader
from comfyui_tmd.training.stage2 import TMDDistillation, _tmd_rollout

from factories import LATENT, perturb_extras, random_wan


@pytest.fixture
def student():
    """A float64 student with H = 2 of 6 blocks, its extras moved off their identity start."""
    return perturb_extras(TMDStudent.from_teacher(random_wan(dtype=torch.float64), FlowHeadSpec(head_blocks=2)))


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(11)
    x_t, y1 = (torch.randn(LATENT, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([0.9089, 0.999], dtype=torch.float64)
    return x_t, t, torch.randn(LATENT[0], 5, 4096, generator=g, dtype=torch.float64), y1


def rollout_gradients(student, inputs, inner_steps: int, rollout_grad: str) -> tuple[torch.Tensor, dict]:
    """(ŷ, gradient of a fixed random projection of ŷ per parameter name)."""
    student.zero_grad(set_to_none=True)
    y_hat = _tmd_rollout(student, *inputs, tmd_grid(inner_steps, 10.0), "y1", rollout_grad)
    weights = torch.randn(y_hat.shape, generator=torch.Generator().manual_seed(5), dtype=y_hat.dtype)
    (y_hat * weights).sum().backward()
    return y_hat.detach(), {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("inner_steps", [1, 2, 4])
@pytest.mark.parametrize("rollout_grad", ["all", "last"])
def test_only_the_last_head_step_records_a_graph_under_last(student, inputs, inner_steps, rollout_grad):
    recorded = []
    student.extras.fusion.register_forward_hook(lambda *_: recorded.append(torch.is_grad_enabled()))
    _tmd_rollout(student, *inputs, tmd_grid(inner_steps, 10.0), "y1", rollout_grad)
    assert recorded == ([True] * inner_steps if rollout_grad == "all" else [False] * (inner_steps - 1) + [True])


@pytest.mark.parametrize("inner_steps", [2, 4])
def test_last_gives_the_same_sample_and_the_gradient_of_the_last_step_alone(student, inputs, inner_steps):
    y_all, grads_all = rollout_gradients(student, inputs, inner_steps, "all")
    y_last, grads_last = rollout_gradients(student, inputs, inner_steps, "last")
    assert torch.allclose(y_last, y_all, rtol=0, atol=1e-12)

    # reference: the full rollout up to the last step, detached there, then that one step with autograd
    x_t, t, context, y1 = inputs
    grid = tmd_grid(inner_steps, 10.0)
    student.zero_grad(set_to_none=True)
    features = student.backbone(x_t, t, context)
    times = [student.head_time(torch.full_like(t, s), torch.full_like(t, r), x_t.dtype)
             for s, r in zip(grid[:-1], grid[1:], strict=True)]
    y_before_last = inner_rollout(student, features, y1, times[:-1], grid[:-1]).detach()
    y_ref = flow_map_step(y_before_last, student.head(features, y_before_last, times[-1]), y1, grid[-2], 0.0, "y1")
    weights = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(5), dtype=y_ref.dtype)
    (y_ref * weights).sum().backward()
    reference = {n: p.grad for n, p in student.named_parameters() if p.grad is not None}

    assert set(grads_last) == set(reference) == set(grads_all)  # backbone, head and extras all still learn
    assert any(name.startswith("wan.blocks.0.") for name in grads_last)  # the backbone, through the last step
    for name, grad in grads_last.items():
        assert torch.allclose(grad, reference[name], rtol=1e-9, atol=1e-12), name
    # the cut is real: the head blocks' gradient loses the paths through the earlier steps
    head = [n for n in grads_all if n.startswith("wan.blocks.5.")]
    changed = max(((grads_all[n] - grads_last[n]).norm() / grads_all[n].norm()).item() for n in head)
    assert changed > 1e-2


def test_one_inner_step_is_the_same_either_way(student, inputs):
    y_all, grads_all = rollout_gradients(student, inputs, 1, "all")
    y_last, grads_last = rollout_gradients(student, inputs, 1, "last")
    assert torch.equal(y_all, y_last) and grads_all.keys() == grads_last.keys()
    for name, grad in grads_all.items():
        assert torch.allclose(grad, grads_last[name], rtol=1e-12, atol=0), name


def test_stage2_takes_a_student_step_with_last(config_dict, env):
    config_dict["stage2"]["rollout_grad"] = "last"
    config_dict["model"]["inner_steps"] = 3
    algo = TMDDistillation(config_from_dict(config_dict), env)
    before = {n: p.detach().clone() for n, p in algo.module("student").named_parameters()}
    algo.step(ShardReader(config_dict["data"]["shards"], 4, seed=0).next_batch(), iteration=5)  # a student iteration
    moved = [n for n, p in algo.module("student").named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("wan.blocks.0.") for n in moved) and any(n.startswith("extras.") for n in moved)


def test_unknown_rollout_grad_is_refused(config_dict):
    config_dict["stage2"]["rollout_grad"] = "first"
    with pytest.raises(TrainingConfigError, match="stage2.rollout_grad is 'first'; expected one of all, last."):
        config_from_dict(config_dict)
