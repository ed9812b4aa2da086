# SPDX-License-Identifier: Apache-2.0
"""The EMA of the exported role: its update rule, its place in the resumable checkpoint, and the export."""
import pytest
import torch
from torch import nn

from comfyui_tmd.tmd_core import load_student
from comfyui_tmd.tmd_core.safe_files import read_safetensors
from comfyui_tmd.training.config import config_from_dict
from comfyui_tmd.training.ema import EMA
from comfyui_tmd.training.errors import TrainingConfigError
from comfyui_tmd.training.trainer import Trainer


def test_ema_update_is_the_warmed_up_decay_times_average_plus_the_rest_times_the_weights():
    module = nn.Linear(3, 2)
    start = {k: v.clone() for k, v in module.named_parameters()}
    ema = EMA(module, decay=0.9)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)
    ema.update(module)  # update 1: d = min(0.9, 1/10) = 0.1
    for name, p in module.named_parameters():
        torch.testing.assert_close(ema.average[name], 0.1 * start[name] + 0.9 * p.detach())
    ema.update(module)  # update 2 towards the same weights: d = 2/11, so start keeps 0.1·(2/11)
    for name, p in module.named_parameters():
        torch.testing.assert_close(ema.average[name], (0.2 / 11) * start[name] + (1 - 0.2 / 11) * p.detach())
    assert ema.current_decay() == pytest.approx(3 / 12)
    ema.updates = 1000  # warmed up: the configured decay from n = 81 (81/90 = 0.9) on
    assert ema.current_decay() == 0.9
    with pytest.raises(TrainingConfigError, match="the checkpoint's EMA lacks bias"):
        EMA(module, 0.9).load_state_dict({"weight": module.weight})


def test_ema_warm_up_forgets_a_random_start_that_a_plain_decay_keeps():
    """After 3,000 updates at decay 0.999 a plain EMA still holds 0.999³⁰⁰⁰ ≈ 5 % of its start; warmed up,
    the start's share is the product of the warm-up decays, below 1e-3 (old behaviour: fails)."""
    module = nn.Linear(4, 4)
    start = module.weight.detach().clone()
    ema = EMA(module, decay=0.999)
    with torch.no_grad():
        module.weight.copy_(start + 1.0)  # the trained weights, far from the start
    for _ in range(3000):
        ema.update(module)
    start_share = (module.weight.detach() - ema.average["weight"]).mean().item()  # (1 − share)·1 away from θ
    assert 0 < start_share < 1e-3
    assert 0.999**3000 > 0.04  # what the plain decay would have kept


def test_a_checkpointed_ema_resumes_its_warm_up_count():
    module = nn.Linear(2, 2)
    ema = EMA(module, decay=0.99)
    for _ in range(5):
        ema.update(module)
    restored = EMA(module, decay=0.99)
    restored.load_state_dict(ema.state_dict(), ema.metadata())
    assert restored.updates == 5 and restored.current_decay() == ema.current_decay() == pytest.approx(6 / 15)
    legacy = EMA(module, decay=0.99)
    legacy.load_state_dict(ema.state_dict())  # a checkpoint from before the warm-up: taken as warmed up
    assert legacy.current_decay() == 0.99


def test_training_updates_the_ema_after_each_step_of_the_exported_role(config_dict, env, tmp_path):
    config_dict["stage1"]["optim"]["ema_decay"] = 0.75
    config_dict["run"].update(iterations=1, checkpoint_every=1)
    trainer = Trainer(config_from_dict(config_dict), "1", tmp_path, env)
    before = {k: v.detach().clone() for k, v in trainer.algo.module("student").named_parameters()}
    trainer.algo.step(trainer.data.next_batch(), 1)
    for name, p in trainer.algo.module("student").named_parameters():
        # the first update's warm-up decay: min(0.75, 1/10)
        torch.testing.assert_close(trainer.algo.ema.average[name], 0.1 * before[name] + 0.9 * p.detach())


def test_a_resumed_run_keeps_the_ema_and_the_export_is_the_ema(config_dict, env, tmp_path):
    config_dict["stage1"]["optim"]["ema_decay"] = 0.5
    config_dict["run"].update(iterations=4, checkpoint_every=2)
    config = config_from_dict(config_dict)
    Trainer(config, "1", tmp_path / "a", env).run()
    first = Trainer(config, "1", tmp_path / "b", env)
    assert first.run(until=3) is None  # iteration 3 is lost with the process
    second = Trainer(config, "1", tmp_path / "b", env)
    assert second.resume() == 2
    folder = second.run()
    step = "checkpoints/step-00000004"
    a, a_meta = read_safetensors(tmp_path / "a" / step / "student.ema.safetensors")
    b, b_meta = read_safetensors(tmp_path / "b" / step / "student.ema.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert a_meta["ema_updates"] == b_meta["ema_updates"] == "4"  # the warm-up count survived the resume
    raw, _ = read_safetensors(tmp_path / "b" / step / "student.safetensors")
    exported, _ = load_student(folder / "student.safetensors", folder / "student_head.safetensors")
    weights = exported.state_dict()
    assert all(torch.equal(weights[k], b[k]) for k in b)  # the EMA, not the last weights
    assert any(not torch.equal(raw[k], b[k]) for k in b)
