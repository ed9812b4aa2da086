# SPDX-License-Identifier: Apache-2.0
"""A run never loses work: a killed run resumes to bit-identical parameters, a crash mid-checkpoint leaves the
previous checkpoint intact, and a checkpoint of another config or stage is refused with the difference named."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from comfyui_tmd.tmd_core.safe_files import read_safetensors
from comfyui_tmd.training import checkpoints as checkpoints_module
from comfyui_tmd.training.config import config_from_dict
from comfyui_tmd.training.errors import TrainingConfigError
from comfyui_tmd.training.train import main as train_main
from comfyui_tmd.training.trainer import Trainer


def final_tensors(out, iteration):
    """Every tensor of a checkpoint (weights, optimiser moments, RNG), keyed by file and name."""
    folder = out / "checkpoints" / f"step-{iteration:08d}"
    return {f"{path.name}/{key}": value for path in sorted(folder.glob("*.safetensors"))
            for key, value in read_safetensors(path)[0].items()}


def log_rows(out):
    with (out / "log.csv").open(newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def assert_same_checkpoint(a, b, iteration):
    ta, tb = final_tensors(a, iteration), final_tensors(b, iteration)
    assert ta.keys() == tb.keys()
    different = [key for key in ta if not torch.equal(ta[key], tb[key])]
    assert not different, different[:5]


def test_stage2_resumed_after_a_stop_equals_the_uninterrupted_run(config, env, tmp_path):
    """Every role, optimiser moment and RNG state bitwise equal (CPU float32 is deterministic)."""
    Trainer(config, "2", tmp_path / "a", env).run()
    first = Trainer(config, "2", tmp_path / "b", env)
    assert first.run(until=4) is None  # checkpoint at 3; iteration 4 is lost with the process
    second = Trainer(config, "2", tmp_path / "b", env)
    assert second.resume() == 3
    second.run()
    assert_same_checkpoint(tmp_path / "a", tmp_path / "b", 6)
    assert log_rows(tmp_path / "a") == log_rows(tmp_path / "b")  # the log repeats no iteration


def test_stage1_killed_by_sigkill_resumes_to_the_same_parameters(config_dict, env, tmp_path):
    config_dict["run"].update(iterations=8, checkpoint_every=2)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config_dict))
    Trainer(config_from_dict(config_dict), "1", tmp_path / "reference", env).run()

    command = [sys.executable, "-m", "comfyui_tmd.training.train", "--config", str(config_path), "--stage", "1",
               "--out", str(tmp_path / "killed")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "killed" / "checkpoints").glob("step-*")):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    done = sorted((tmp_path / "killed" / "checkpoints").glob("step-*"))
    assert int(done[-1].name.split("-")[1]) < 8, "the run finished before the kill, so the kill proved nothing"

    subprocess.run(command + ["--resume"], check=True, capture_output=True)
    assert_same_checkpoint(tmp_path / "reference", tmp_path / "killed", 8)
    for name in ("student.safetensors", "student_head.safetensors"):
        a, _ = read_safetensors(tmp_path / "reference" / "export" / name)
        b, _ = read_safetensors(tmp_path / "killed" / "export" / name)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one(config, env, tmp_path, monkeypatch):
    real_write = checkpoints_module.write_safetensors

    def failing_write(tensors, path, metadata=None):
        if "step-00000006" in str(path) and path.name == "student.optim.safetensors":
            raise OSError("disk full (simulated)")
        return real_write(tensors, path, metadata)

    monkeypatch.setattr(checkpoints_module, "write_safetensors", failing_write)
    with pytest.raises(OSError, match="simulated"):
        Trainer(config, "1", tmp_path, env).run()
    root = tmp_path / "checkpoints"
    assert (root / ".step-00000006.partial").is_dir() and not (root / "step-00000006").exists()
    intact = final_tensors(tmp_path, 3)
    assert any(k.startswith("student.optim") for k in intact)
    monkeypatch.setattr(checkpoints_module, "write_safetensors", real_write)
    trainer = Trainer(config, "1", tmp_path, env)
    assert trainer.resume() == 3
    assert not (root / ".step-00000006.partial").exists()
    trainer.run()
    assert (root / "step-00000006" / "trainer.json").is_file()


def test_a_checkpoint_of_another_config_or_stage_is_refused(config_dict, env, tmp_path):
    config_dict["run"].update(iterations=3)
    Trainer(config_from_dict(config_dict), "1", tmp_path, env).run()
    config_dict["stage1"]["cfg_scale"] = 2.0
    with pytest.raises(TrainingConfigError, match=r"different config \(stage1.cfg_scale: 3.0 vs 2.0\)"):
        Trainer(config_from_dict(config_dict), "1", tmp_path, env).resume()
    with pytest.raises(TrainingConfigError, match="is a stage 1 checkpoint, this run is stage fm"):
        Trainer(config_from_dict(config_dict), "fm", tmp_path, env).resume()


def test_the_command_line_refuses_to_overwrite_a_run(config_dict, tmp_path):
    config_dict["run"].update(iterations=2, checkpoint_every=1)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config_dict))
    args = ["--config", str(config_path), "--stage", "fm", "--out", str(tmp_path / "run")]
    train_main(args)
    with pytest.raises(TrainingConfigError, match="already holds checkpoints; pass --resume"):
        train_main(args)
    train_main(args + ["--resume", "--set", "run.iterations=3"])
    assert [row["iteration"] for row in log_rows(tmp_path / "run")] == ["1", "2", "3"]
