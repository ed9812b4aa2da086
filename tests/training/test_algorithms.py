# SPDX-License-Identifier: Apache-2.0
"""The training algorithms on a small Wan: each reduces its loss on a fixed batch, gradients reach every
trained parameter through all N inner steps, and stage 2 follows its 1-in-5 update schedule."""
import contextlib

import pytest
import torch

from comfyui_tmd.tmd_core import FlowHeadSpec, TMDStudent, inner_rollout, tmd_grid
from comfyui_tmd.training.config import config_from_dict
from comfyui_tmd.training.flow_matching import FlowMatching
from comfyui_tmd.training.shards import ShardReader
from comfyui_tmd.training.stage1 import TMMeanFlow
from comfyui_tmd.training.stage2 import DMD2V, TMDDistillation

from factories import LATENT, perturb_extras


@pytest.fixture
def batch(config):
    return ShardReader(config.data.shards, 4, seed=0).next_batch()


@contextlib.contextmanager
def fixed_draws(algo, seed=7):
    """The same noise, times and dropout masks every time (the algorithm's RNG and torch's global one)."""
    with torch.random.fork_rng(devices=[]), algo.using_rng(torch.Generator().manual_seed(seed)):
        torch.manual_seed(seed)
        yield


def evaluate(algo, losses, batch):
    """Loss values with fixed draws, no update."""
    with torch.no_grad(), fixed_draws(algo):
        return losses(batch)[1]


def descend(algo, losses, batch, roles, steps):
    """`steps` updates of `roles` on the batch with fixed draws: plain descent on one fixed objective."""
    for _ in range(steps):
        with fixed_draws(algo):
            loss, _ = losses(batch)
        algo.optimize(loss, *roles)


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(module, before):
    return any(not torch.equal(p, q) for p, q in zip(module.parameters(), before, strict=True))


@pytest.mark.parametrize("r_equals_s, inner_form", [(0.75, "y1"), (0.0, "y1"), (0.75, "ys")],
                         ids=["paper-mix", "all-meanflow", "paper-mix-ys"])
def test_stage1_reduces_its_loss_on_a_fixed_batch(config_dict, env, batch, r_equals_s, inner_form):
    config_dict["stage1"]["r_equals_s_prob"] = r_equals_s
    config_dict["model"]["inner_form"] = inner_form
    algo = TMMeanFlow(config_from_dict(config_dict), env)
    before = evaluate(algo, algo.loss, batch)
    assert r_equals_s or before["mf_share"] == 1.0  # every sample goes through the finite-difference target
    for i in range(1, 7):
        algo.step(batch, i)
    after = evaluate(algo, algo.loss, batch)
    assert after["loss"] < before["loss"] and after["mse"] < 0.95 * before["mse"], (before, after)


def test_stage1_trains_every_parameter(config, env, batch):
    algo = TMMeanFlow(config, env)
    student = perturb_extras(algo.module("student"))  # off the zero W0 of the fusion, as after a first update
    loss, _ = algo.loss(batch)
    loss.backward()
    missing = [name for name, p in student.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing  # backbone, fusion, (s − r) embedding, head blocks, output head


def test_training_rollout_is_the_sampler_rollout_with_gradients_through_every_inner_step(wan, inputs):
    student = perturb_extras(TMDStudent.from_teacher(wan, FlowHeadSpec(head_blocks=2)))
    x, t, context = inputs
    grid = tmd_grid(3)
    times = [student.head_time(torch.full_like(t, s), torch.full_like(t, r), x.dtype)
             for s, r in zip(grid[:-1], grid[1:], strict=True)]
    y1 = torch.randn(LATENT)
    with torch.no_grad():
        reference = inner_rollout(student, student.backbone(x, t, context), y1, times, grid)
    states = []
    out = inner_rollout(student, student.backbone(x, t, context), y1, times, grid,
                        callback=lambda info: states.append(info["y"]))
    for y in states:
        y.retain_grad()
    (out * torch.randn_like(out)).sum().backward()
    torch.testing.assert_close(out.detach(), reference, rtol=1e-6, atol=1e-6)  # one implementation, two modes
    assert len(states) == 3 and all(y.grad is not None and y.grad.abs().sum() > 0 for y in states[:-1])
    assert student.extras.fusion.out.weight.grad.abs().sum() > 0


def test_stage2_roles_reduce_their_losses_on_a_fixed_batch(config, env, batch):
    algo = TMDDistillation(config, env)
    critics = evaluate(algo, algo.critic_losses, batch)
    descend(algo, algo.critic_losses, batch, ("fake_score", "discriminator"), 4)
    trained = evaluate(algo, algo.critic_losses, batch)
    assert trained["fake_score"] < critics["fake_score"] and trained["disc"] < critics["disc"], (critics, trained)
    student = evaluate(algo, algo.student_losses, batch)
    descend(algo, algo.student_losses, batch, ("student",), 4)
    after = evaluate(algo, algo.student_losses, batch)
    assert after["student_loss"] < student["student_loss"], (student, after)


def test_stage2_student_gradients_reach_backbone_head_and_extras(config, env, batch):
    algo = TMDDistillation(config, env)
    student = perturb_extras(algo.module("student"))
    loss, _ = algo.student_losses(batch)
    loss.backward()
    missing = [name for name, p in student.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    assert all(p.grad is None for p in algo.module("teacher").parameters())  # frozen teacher


@pytest.mark.parametrize("algorithm", [TMDDistillation, DMD2V], ids=["tmd", "dmd2v"])
def test_stage2_updates_the_student_every_fifth_iteration_and_the_critics_otherwise(algorithm, config, env, batch):
    algo = algorithm(config, env)
    for iteration in range(1, 6):
        student, fake = snapshot(algo.module("student")), snapshot(algo.module("fake_score"))
        disc = snapshot(algo.module("discriminator"))
        logs = algo.step(batch, iteration)
        student_turn = iteration % 5 == 0
        assert changed(algo.module("student"), student) == student_turn
        assert changed(algo.module("fake_score"), fake) != student_turn
        assert changed(algo.module("discriminator"), disc) != student_turn
        assert ("vsd" in logs) == student_turn and all(v == v for v in logs.values())


def test_flow_matching_reduces_its_loss_on_a_fixed_batch(config, env, batch):
    algo = FlowMatching(config, env)
    before = evaluate(algo, algo.loss, batch)
    for i in range(1, 6):
        algo.step(batch, i)
    assert evaluate(algo, algo.loss, batch)["loss"] < before["loss"]
