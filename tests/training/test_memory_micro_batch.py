# SPDX-License-Identifier: Apache-2.0
"""The memory model with gradient accumulation: activations follow the micro-batch, choose_micro_batch takes the
largest divisor that fits, and the shipped Wan2.1 configs fit the GPUs their comments name."""
from pathlib import Path

import pytest

from comfyui_tmd.training import memory
from comfyui_tmd.training.config import load_config
from comfyui_tmd.training.memory import choose_micro_batch, estimate_memory

CONFIGS = Path(memory.__file__).parent / "configs"
GPU_GIB, RESERVE_GIB = 80.0, 4.0


@pytest.fixture(scope="module")
def small():
    return load_config(CONFIGS / "wan21_1_3b.yaml")


@pytest.fixture(scope="module")
def large():
    return load_config(CONFIGS / "wan21_14b.yaml")


def fits(config, stage, world, strategy, micro_batch):
    return estimate_memory(config, stage, world, strategy, micro_batch)["total"] + RESERVE_GIB <= GPU_GIB


@pytest.mark.parametrize("stage", ["1", "2", "dmd2v", "fm", "kd"])
def test_activations_follow_the_micro_batch_and_nothing_else_does(small, stage):
    whole = estimate_memory(small, stage, 8, "fsdp")  # 64 over 8 GPUs: 8 samples per process
    assert estimate_memory(small, stage, 8, "fsdp", 8) == whole
    for micro_batch in (1, 2, 4):
        part = estimate_memory(small, stage, 8, "fsdp", micro_batch)
        assert part["weights"] == whole["weights"] and part["optimizer"] == whole["optimizer"]
        assert abs(part["activations"] * 8 / micro_batch - whole["activations"]) < 1e-9 * whole["activations"]


def test_the_kd_warm_up_trains_one_wan_like_flow_matching(small):
    assert estimate_memory(small, "kd", 8, "ddp") == estimate_memory(small, "fm", 8, "ddp")
    assert estimate_memory(small, "kd", 8, "ddp")["total"] < estimate_memory(small, "dmd2v", 8, "ddp")["total"]


@pytest.mark.parametrize("stage, world, strategy", [("1", 8, "ddp"), ("2", 8, "ddp"), ("2", 8, "fsdp"),
                                                    ("2", 16, "fsdp"), ("1", 32, "ddp")])
def test_the_chosen_micro_batch_is_the_largest_divisor_that_fits(small, stage, world, strategy):
    local = small.data.batch_size // world
    chosen = choose_micro_batch(small, stage, world, strategy, GPU_GIB, RESERVE_GIB)
    assert chosen is not None and local % chosen == 0 and fits(small, stage, world, strategy, chosen)
    larger = [d for d in range(chosen + 1, local + 1) if local % d == 0]
    assert not any(fits(small, stage, world, strategy, d) for d in larger)


def test_no_micro_batch_when_one_sample_does_not_fit_and_the_whole_share_when_all_do(large, small):
    assert not fits(large, "2", 8, "ddp", 1)
    assert choose_micro_batch(large, "2", 8, "ddp", GPU_GIB, RESERVE_GIB) is None
    assert choose_micro_batch(small, "2", 8, "fsdp", 10_000.0) == 8
    assert choose_micro_batch(small, "2", 8, "fsdp", 10_000.0, reserve_gib=9_999.0) is None


@pytest.mark.parametrize("name, stage, world", [("wan21_1_3b", "1", 8), ("wan21_1_3b", "2", 8),
                                                ("wan21_14b", "1", 8), ("wan21_14b", "2", 64)])
def test_the_shipped_configs_fit_80_gib_gpus_at_their_micro_batch(name, stage, world):
    config = load_config(CONFIGS / f"{name}.yaml")
    local = config.data.batch_size // world
    assert local % config.data.micro_batch == 0
    assert fits(config, stage, world, config.run.distributed, config.data.micro_batch)


def test_the_table_for_a_gpu_size_names_the_micro_batch_and_its_estimate(small, large, capsys):
    table = memory.memory_table({"small": small, "large": large}, worlds=(8,), gpu_gib=GPU_GIB)
    chosen = choose_micro_batch(small, "2", 8, "fsdp", GPU_GIB)
    assert f"| small | 2 | fsdp | mb {chosen}: {estimate_memory(small, '2', 8, 'fsdp', chosen)['total']:.1f} |" in table
    assert f"| large | 2 | ddp | no fit (mb 1: {estimate_memory(large, '2', 8, 'ddp', 1)['total']:.1f}) |" in table
    memory.main(["--gpu-gib", "80"])
    out = capsys.readouterr().out
    assert "fits 80 GiB with 4 GiB kept free" in out and "| wan21_1_3b | 2 | ddp | mb 1: " in out


def test_a_gpu_smaller_than_the_reserve_is_refused_in_one_sentence(capsys):
    assert memory.run_command(memory.main, ["--gpu-gib", "3"]) == 2
    assert capsys.readouterr().err.strip() == "error: --gpu-gib 3.0 must exceed --reserve-gib 4.0 (≥ 0)."
