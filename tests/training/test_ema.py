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


def test_ema_update_is_decay_times_average_plus_the_rest_times_the_weights():
    module = nn.Linear(3, 2)
    start = {k: v.clone() for k, v in module.named_parameters()}
    ema = EMA(module, decay=0.9)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(1.0)
    ema.update(module)
    for name, p in module.named_parameters():
        torch.testing.assert_close(ema.average[name], 0.9 * start[name] + 0.1 * p.detach())
    ema.update(module)  # a second step towards the same weights: 0.81·start + 0.19·θ
    for name, p in module.named_parameters():
        torch.testing.assert_close(ema.average[name], 0.81 * start[name] + 0.19 * p.detach())
    with pytest.raises(TrainingConfigError, match="the checkpoint's EMA lacks bias"):
        EMA(module, 0.9).load_state_dict({"weight": module.weight})


def test_training_updates_the_ema_after_each_step_of_the_exported_role(config_dict, env, tmp_path):
    config_dict["stage1"]["optim"]["ema_decay"] = 0.75
    config_dict["run"].update(iterations=1, checkpoint_every=1)
    trainer = Trainer(config_from_dict(config_dict), "1", tmp_path, env)
    before = {k: v.detach().clone() for k, v in trainer.algo.module("student").named_parameters()}
    trainer.algo.step(trainer.data.next_batch(), 1)
    for name, p in trainer.algo.module("student").named_parameters():
        torch.testing.assert_close(trainer.algo.ema.average[name], 0.75 * before[name] + 0.25 * p.detach())


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
    a, _ = read_safetensors(tmp_path / "a" / step / "student.ema.safetensors")
    b, _ = read_safetensors(tmp_path / "b" / step / "student.ema.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    raw, _ = read_safetensors(tmp_path / "b" / step / "student.safetensors")
    exported, _ = load_student(folder / "student.safetensors", folder / "student_head.safetensors")
    weights = exported.state_dict()
    assert all(torch.equal(weights[k], b[k]) for k in b)  # the EMA, not the last weights
    assert any(not torch.equal(raw[k], b[k]) for k in b)
