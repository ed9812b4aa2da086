# SPDX-License-Identifier: Apache-2.0
"""Exported students load in the core and sample; the export command converts a run's newest checkpoint."""
import pytest
import torch

from comfyui_tmd.tmd_core import CheckpointError, generate_tmd, load_student, load_wan, sample_euler, tmd_sigmas
from comfyui_tmd.tmd_core.sampler import CFGDenoiser
from comfyui_tmd.training.config import config_from_dict
from comfyui_tmd.training.errors import TrainingConfigError
from comfyui_tmd.training.export import main as export_main
from comfyui_tmd.training.trainer import Trainer

from training_factories import SHARD_LATENT, TEXT_LEN


@pytest.fixture
def short(config_dict):
    config_dict["run"].update(iterations=2, checkpoint_every=2)
    return config_dict


def test_tmd_export_loads_in_the_core_and_samples(short, env, tmp_path):
    folder = Trainer(config_from_dict(short), "1", tmp_path, env).run()
    student, meta = load_student(folder / "student.safetensors", folder / "student_head.safetensors")
    assert (meta.outer_steps, meta.inner_steps, meta.head_blocks, meta.num_layers) == (2, 2, 2, 6)
    assert "TM-MeanFlow stage 1, 2 iterations" in meta.trained_from
    context = torch.randn(1, TEXT_LEN, 4096)
    with torch.no_grad():
        latent = generate_tmd(student, context, (1, *SHARD_LATENT), seed=0, outer_steps=meta.outer_steps,
                              inner_steps=meta.inner_steps, inner_form=meta.inner_form)
    assert latent.shape == (1, *SHARD_LATENT) and torch.isfinite(latent).all()
    # The export is the trained student, not the teacher: the extras left their zero initialisation.
    assert student.extras.fusion.out.weight.abs().sum() > 0


def test_stage2_export_initialises_from_stage1_and_exports_again(short, env, tmp_path):
    stage1 = Trainer(config_from_dict(short), "1", tmp_path / "s1", env).run()
    short["model"]["init_student"] = str(stage1)
    short["run"].update(iterations=5, checkpoint_every=5)
    stage2 = Trainer(config_from_dict(short), "2", tmp_path / "s2", env)
    start = {k: v.clone() for k, v in stage2.algo.module("student").state_dict().items()}
    loaded, _ = load_student(stage1 / "student.safetensors", stage1 / "student_head.safetensors")
    assert all(torch.equal(start[k], v) for k, v in loaded.state_dict().items())
    folder = stage2.run()
    student, meta = load_student(folder / "student.safetensors", folder / "student_head.safetensors")
    assert "DMD2-v with flow-head rollout" in meta.trained_from
    assert any(not torch.equal(start[k], v) for k, v in student.state_dict().items())


def test_baseline_export_is_a_wan_file_sampled_by_euler_on_the_tmd_grid(short, env, tmp_path):
    short["run"].update(iterations=5, checkpoint_every=5)
    folder = Trainer(config_from_dict(short), "dmd2v", tmp_path, env).run()
    assert not (folder / "student_head.safetensors").exists()
    wan = load_wan(folder / "student.safetensors")
    context = torch.randn(1, TEXT_LEN, 4096)
    x = 0.999 * torch.randn(1, *SHARD_LATENT)
    latent = sample_euler(CFGDenoiser(wan, context, None, cfg=1.0), x, tmd_sigmas(2), disable=True)
    assert torch.isfinite(latent).all()


def test_export_command_writes_the_requested_dtype(short, env, tmp_path):
    Trainer(config_from_dict(short), "1", tmp_path / "run", env).run()
    export_main(["--run", str(tmp_path / "run"), "--out", str(tmp_path / "fp16"), "--dtype", "fp16"])
    student, _ = load_student(tmp_path / "fp16" / "student.safetensors", tmp_path / "fp16" / "student_head.safetensors")
    assert student.wan.patch_embedding.weight.dtype == torch.float16
    with pytest.raises(TrainingConfigError, match="has no complete checkpoint"):
        export_main(["--run", str(tmp_path / "empty"), "--out", str(tmp_path / "x")])


def test_the_inner_form_flows_from_the_config_through_export_into_stage_2(short, env, tmp_path):
    short["model"]["inner_form"] = "ys"
    stage1 = Trainer(config_from_dict(short), "1", tmp_path / "s1", env).run()
    _, meta = load_student(stage1 / "student.safetensors", stage1 / "student_head.safetensors")
    assert meta.inner_form == "ys"
    short["model"]["init_student"] = str(stage1)
    short["run"].update(iterations=5, checkpoint_every=5)
    stage2 = Trainer(config_from_dict(short), "2", tmp_path / "s2", env).run()
    assert load_student(stage2 / "student.safetensors", stage2 / "student_head.safetensors")[1].inner_form == "ys"
    short["model"]["inner_form"] = "y1"
    with pytest.raises(TrainingConfigError, match="trained with inner form 'ys', the config asks for 'y1'"):
        Trainer(config_from_dict(short), "2", tmp_path / "s2b", env)


def test_stage2_refuses_a_stage1_export_of_another_head(short, env, tmp_path):
    stage1 = Trainer(config_from_dict(short), "1", tmp_path / "s1", env).run()
    short["model"].update(init_student=str(stage1), head_blocks=3)
    with pytest.raises(TrainingConfigError, match="holds a head"):
        Trainer(config_from_dict(short), "2", tmp_path / "s2", env)
    short["model"].update(init_student=str(tmp_path / "nowhere"), head_blocks=2)
    with pytest.raises(CheckpointError, match="no file"):
        Trainer(config_from_dict(short), "2", tmp_path / "s2b", env)
