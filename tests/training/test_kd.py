# SPDX-License-Identifier: Apache-2.0
"""The one-step DMD2-v baseline's selective KD warm-up: noise–data pairs from the teacher with skip-layer guidance,
a regression stage that only a one-step student may run, and DMD2-v starting from its export."""
import copy

import pytest
import torch

from comfyui_tmd.tmd_core import CFGDenoiser, SamplingConfigError, generate_teacher, load_wan
from comfyui_tmd.tmd_core.sampler import seeded_noise
from comfyui_tmd.training.config import config_from_dict
from comfyui_tmd.training.errors import TrainingConfigError
from comfyui_tmd.training.kd import KDWarmup
from comfyui_tmd.training.shards import ShardReader
from comfyui_tmd.training.trainer import Trainer

from factories import random_wan
from training_factories import SHARD_LATENT


@pytest.fixture
def kd_config(config_dict, pair_dir):
    config_dict["model"]["outer_steps"] = 1
    config_dict["data"]["shards"] = [str(pair_dir / "*.safetensors")]
    return config_dict


class PassThrough(torch.nn.Module):
    def forward(self, tokens, **_):
        return tokens


def test_skip_layer_guidance_leaves_the_block_out_of_the_unconditional_pass(wan, inputs):
    x, t, context = inputs
    negative = torch.randn_like(context)
    skipped = copy.deepcopy(wan)
    skipped.blocks[2] = PassThrough()
    with torch.no_grad():
        ours = CFGDenoiser(wan, context, negative, cfg=5.0, skip_blocks=(2,))(x, t)
        cond, uncond = wan(x, 1000 * t, context), skipped(x, 1000 * t, negative)
        expected = x - t.view(-1, 1, 1, 1, 1) * (uncond + 5.0 * (cond - uncond))
        plain = CFGDenoiser(wan, context, negative, cfg=5.0)(x, t)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, plain)
    with pytest.raises(SamplingConfigError, match="skip block 9 does not exist in a 6-block Wan"):
        wan(x, 1000 * t, context, skip_blocks=(9,))


def test_pairs_hold_the_noise_each_latent_was_sampled_from(pair_dir, prompt_embeddings):
    context, negative = prompt_embeddings
    batch = ShardReader([str(pair_dir / "shard-00000.safetensors")], 4, seed=0).next_batch()
    assert batch["noise"].shape == batch["latents"].shape
    row = next(i for i in range(4) if torch.equal(batch["context"][i], context[1].float()))  # prompt 1: seed 0 + 1
    noise, _ = seeded_noise((1, *SHARD_LATENT), 1)
    torch.testing.assert_close(batch["noise"][row], noise[0])
    with torch.no_grad():
        latent = generate_teacher(random_wan(), context[1:2], negative, (1, *SHARD_LATENT), 1, steps=4, shift=3.0,
                                  skip_blocks=(3,), disable=True)
    torch.testing.assert_close(batch["latents"][row], latent[0], rtol=1e-5, atol=1e-5)


def test_kd_regresses_the_one_step_student_onto_the_pairs(kd_config, env):
    algo = KDWarmup(config_from_dict(kd_config), env)
    batch = ShardReader(kd_config["data"]["shards"], 4, seed=0).next_batch()
    with torch.no_grad():
        before = algo.loss(batch)[1]["loss"]
    for i in range(1, 6):
        algo.step(batch, i)
    with torch.no_grad():
        assert algo.loss(batch)[1]["loss"] < 0.9 * before


def test_kd_is_refused_for_multi_step_students_and_data_without_noise(config_dict, kd_config, env):
    config_dict = copy.deepcopy(kd_config)
    config_dict["model"]["outer_steps"] = 2
    with pytest.raises(TrainingConfigError, match="KD warm-up is for a one-step student .* got 2"):
        KDWarmup(config_from_dict(config_dict), env)
    algo = KDWarmup(config_from_dict(kd_config), env)
    batch = ShardReader(kd_config["data"]["shards"], 4, seed=0).next_batch()
    del batch["noise"]
    with pytest.raises(TrainingConfigError, match="needs noise–data pairs"):
        algo.loss(batch)


def test_dmd2v_starts_from_the_kd_export(kd_config, env, tmp_path):
    kd_config["run"].update(iterations=2, checkpoint_every=2)
    folder = Trainer(config_from_dict(kd_config), "kd", tmp_path / "kd", env).run()
    kd_config["model"]["init_student"] = str(folder)
    dmd2v = Trainer(config_from_dict(kd_config), "dmd2v", tmp_path / "dmd2v", env)
    warmed = load_wan(folder / "student.safetensors")
    start = dmd2v.algo.module("student").state_dict()
    assert all(torch.equal(start[k], v) for k, v in warmed.state_dict().items())
