# SPDX-License-Identifier: Apache-2.0
"""Fixtures of the training tests: a small random teacher file, teacher-generated shards (and noise–data pairs),
a config for them."""
import copy

import pytest
import torch

from comfyui_tmd.tmd_core import save_wan
from comfyui_tmd.training.config import config_from_dict
from comfyui_tmd.training.distributed import Env
from comfyui_tmd.training.make_data import generate_shards

from factories import random_wan
from training_factories import SHARD_LATENT, TEXT_LEN


@pytest.fixture(scope="session")
def teacher_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_wan(random_wan(), path)
    return path


@pytest.fixture(scope="session")
def prompt_embeddings():
    g = torch.Generator().manual_seed(99)
    return torch.randn(8, TEXT_LEN, 4096, generator=g), torch.randn(1, TEXT_LEN, 4096, generator=g)


@pytest.fixture(scope="session")
def shard_dir(tmp_path_factory, prompt_embeddings):
    """Two shards of four teacher samples each (Euler, 4 steps, CFG 5)."""
    folder = tmp_path_factory.mktemp("shards")
    context, negative = prompt_embeddings
    with torch.no_grad():
        generate_shards(random_wan(), context, negative, folder, SHARD_LATENT, steps=4, per_shard=4)
    return folder


@pytest.fixture(scope="session")
def pair_dir(tmp_path_factory, prompt_embeddings):
    """Two shards of four noise–data pairs (Euler 4 steps, CFG 5, skip-layer guidance at block 3 of 6)."""
    folder = tmp_path_factory.mktemp("pairs")
    context, negative = prompt_embeddings
    with torch.no_grad():
        generate_shards(random_wan(), context, negative, folder, SHARD_LATENT, steps=4, per_shard=4, pairs=True,
                        skip_blocks=(3,))
    return folder


@pytest.fixture
def config_dict(teacher_file, shard_dir):
    """A run on the small teacher: H = 2 of 6 blocks, M = N = 2, batch 4, fp32, no checkpointing."""
    return copy.deepcopy({
        "model": {"teacher": str(teacher_file), "wan": None, "head_blocks": 2},
        "data": {"shards": [str(shard_dir / "*.safetensors")], "batch_size": 4,
                 "latent_shape": list(SHARD_LATENT), "text_len": TEXT_LEN},
        "stage1": {"optim": {"lr": 1e-3}},
        "stage2": {"optim": {"lr": 1e-3}, "fake_lr": 1e-3, "disc_lr": 1e-3},
        "flow_matching": {"optim": {"lr": 1e-3}},
        "kd": {"optim": {"lr": 1e-3}},
        "run": {"iterations": 6, "checkpoint_every": 3, "precision": "fp32", "activation_checkpointing": False},
    })


@pytest.fixture
def config(config_dict):
    return config_from_dict(config_dict)


@pytest.fixture
def env():
    return Env()
