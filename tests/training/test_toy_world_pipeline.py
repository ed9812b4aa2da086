# SPDX-License-Identifier: Apache-2.0
"""The toy world's training pipeline runs every stage (a few iterations each), installs float16 files under
the toy checkpoint names, and the CLI generates a clip from them."""
import torch

from comfyui_tmd.tmd_core import load_student
from comfyui_tmd.tmd_core.wan_loading import load_wan
from comfyui_tmd.toy import checkpoints
from comfyui_tmd.toy.cli import main as cli_main
from comfyui_tmd.training import toy_world


def test_pipeline_trains_every_stage_and_installs_loadable_files(tmp_path):
    installed = tmp_path / "checkpoints"
    toy_world.main(["--out", str(tmp_path / "run"), "--scale", "0.002", "--clips", "64", "--install", str(installed)])
    for stage in toy_world.load_plan(toy_world.CONFIG):
        assert (tmp_path / "run" / stage / "export").is_dir(), stage
    teacher = load_wan(installed / checkpoints.TEACHER.name)
    assert teacher.patch_embedding.weight.dtype == torch.float16 and teacher.config.dim >= 256  # ComfyUI: Wan
    student, meta = load_student(installed / checkpoints.TMD_STUDENT.name, installed / checkpoints.TMD_HEAD.name)
    assert (meta.outer_steps, meta.inner_steps, student.extras.spec.head_blocks) == (2, 2, 1)
    load_wan(installed / checkpoints.DMD2V_STUDENT.name)
    out = tmp_path / "clip.gif"
    assert cli_main(["generate", "a red square moving left", "--out", str(out),
                     "--wan", str(installed / checkpoints.TMD_STUDENT.name),
                     "--head", str(installed / checkpoints.TMD_HEAD.name)]) == 0
    assert out.read_bytes()[:6] == b"GIF89a"
