# SPDX-License-Identifier: Apache-2.0
"""Two processes under torchrun on the CPU (gloo): DDP keeps every rank's trainable weights identical, FSDP2
shards them, and both write a checkpoint and an export the core loads."""
import json

import pytest

from comfyui_tmd.tmd_core import load_student

from training_factories import torchrun_training


@pytest.mark.parametrize("strategy, stage, iterations", [("ddp", "2", 5), ("fsdp", "1", 3), ("fsdp", "2", 5)])
def test_two_gloo_processes_train_and_export(config_dict, tmp_path, strategy, stage, iterations):
    config_dict["run"].update(distributed=strategy, iterations=iterations, checkpoint_every=iterations,
                              activation_checkpointing=True)
    out = tmp_path / "run"
    result = torchrun_training(config_dict, stage, out)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["world"] == 2 and report["strategy"] == strategy
    roles = {"student": True, "fake_score": True, "discriminator": True} if stage == "2" else {"student": True}
    assert report["ranks_agree"] == roles
    assert (out / "checkpoints" / f"step-{iterations:08d}" / "rng.1.safetensors").is_file()
    with (out / "log.csv").open() as f:
        assert len(f.read().splitlines()) == iterations + 1
    student, _ = load_student(out / "export" / "student.safetensors", out / "export" / "student_head.safetensors")
    assert student.head_blocks == 2
