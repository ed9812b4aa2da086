# SPDX-License-Identifier: Apache-2.0
"""Stage 2's generator step: the GAN term sees the discriminator without dropout, and gradients are clipped."""
import pytest
import torch

from comfyui_tmd.training.config import config_from_dict
from comfyui_tmd.training.shards import ShardReader
from comfyui_tmd.training.stage2 import DMD2V, TMDDistillation


@pytest.fixture
def batch(config):
    return ShardReader(config.data.shards, 4, seed=0).next_batch()


@pytest.mark.parametrize("algorithm", [TMDDistillation, DMD2V], ids=["tmd", "dmd2v"])
def test_generator_gan_loss_is_deterministic(algorithm, config, env, batch):
    """Same sample, different global RNG (dropout's): the generator's GAN loss must not change, while the
    discriminator's own step keeps its dropout."""
    algo = algorithm(config, env)
    values = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        with torch.no_grad(), algo.using_rng(torch.Generator().manual_seed(3)):
            values.append(algo.student_losses(batch)[1]["gan_g"])
    assert values[0] == values[1]
    with torch.no_grad(), algo.using_rng(torch.Generator().manual_seed(3)):
        algo.critic_losses(batch)
    assert algo.module("discriminator").training


def test_stage2_clips_each_roles_gradient_norm_at_10_by_default(config_dict, env, batch):
    config_dict["stage2"]["optim"].pop("grad_clip", None)
    algo = DMD2V(config_from_dict(config_dict), env)
    assert algo.optim.grad_clip == 10.0
    student = algo.module("student")
    loss, _ = algo.student_losses(batch)
    algo.optimize(1e6 * loss, "student")  # gradients stay in .grad until the next optimize
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in student.parameters() if p.grad is not None]))
    assert norm.item() == pytest.approx(10.0, rel=1e-4)
