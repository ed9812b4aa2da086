# SPDX-License-Identifier: Apache-2.0
"""TMD sampled inside ComfyUI (UNETLoader's loader, the pack's nodes, ComfyUI's sampling stack) equals TMD
sampled by the core with the same weights and seed; plus the errors and Cancel inside ComfyUI."""
import pytest
import torch

from comfyui_tmd.tmd_core import CheckpointError, TMDError, WanConfig, generate_tmd, save_wan, tmd_sigmas

from factories import random_wan

from .comfy_world import LATENT, comfy_sample, patched_model

@pytest.mark.parametrize("batch", [1, 2])
def test_comfy_tmd_equals_core_tmd(comfy, nodes, student_files, batch):
    folder, student = student_files
    model = patched_model(comfy, nodes, folder)
    sampler = nodes.TMDSampler.execute(0, 0.0).result[0]
    sigmas = nodes.TMDScheduler.execute(model, 2, 10.0).result[0]
    context = torch.randn(1, 5, 4096, generator=torch.Generator().manual_seed(3))
    ours = comfy_sample(comfy, model, sampler, sigmas, context, seed=42, batch=batch)
    with torch.no_grad():
        core = generate_tmd(student, context.expand(batch, -1, -1), (batch,) + LATENT[1:], seed=42)
    core = model.model.latent_format.process_out(core)  # ComfyUI returns latents in VAE space
    assert ((ours - core).norm() / core.norm()).item() < 1e-4
    again = comfy_sample(comfy, model, sampler, sigmas, context, seed=42, batch=batch)
    assert torch.equal(ours, again)


def test_stock_euler_on_the_tmd_grid_gives_the_same_video(comfy, nodes, student_files):
    import comfy.samplers
    folder, _ = student_files
    model = patched_model(comfy, nodes, folder)
    sigmas = nodes.TMDScheduler.execute(model, 2, 10.0).result[0]
    context = torch.randn(1, 5, 4096, generator=torch.Generator().manual_seed(4))
    tmd = comfy_sample(comfy, model, nodes.TMDSampler.execute(0, 0.0).result[0], sigmas, context, seed=7)
    euler = comfy_sample(comfy, model, comfy.samplers.sampler_object("euler"), sigmas, context, seed=7)
    assert ((tmd - euler).norm() / tmd.norm()).item() < 1e-5


def test_cfg_above_one_is_refused(comfy, nodes, student_files):
    folder, _ = student_files
    model = patched_model(comfy, nodes, folder)
    with pytest.raises(TMDError, match="set cfg to 1"):
        comfy_sample(comfy, model, nodes.TMDSampler.execute(0, 0.0).result[0],
                     nodes.TMDScheduler.execute(model, 2, 10.0).result[0],
                     torch.randn(1, 5, 4096), seed=1, cfg=5.0)


def test_tmd_sampler_on_an_unpatched_model_is_refused(comfy, nodes, student_files):
    folder, _ = student_files
    plain = comfy.sd.load_diffusion_model(str(folder / "wan_student.safetensors"))
    with pytest.raises(TMDError, match="connect the model through 'TMD Apply Flow Head'"):
        comfy_sample(comfy, plain, nodes.TMDSampler.execute(0, 0.0).result[0], tmd_sigmas(2, 10.0),
                     torch.randn(1, 5, 4096), seed=1)


def test_head_for_another_model_is_refused(comfy, nodes, student_files, tmp_path):
    from comfyui_tmd.nodes.comfy_bridge import read_head_file
    folder, _ = student_files
    other = random_wan(WanConfig(dim=256, ffn_dim=128, num_heads=2, num_layers=6), seed=5)
    save_wan(other, tmp_path / "other.safetensors")
    patcher = comfy.sd.load_diffusion_model(str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="flow head is for a 4-layer dim-256 Wan, the model is 6-layer dim-256"):
        nodes.TMDApplyFlowHead.execute(patcher, read_head_file(folder / "student_head.safetensors"))


def test_cancel_stops_within_one_inner_step(comfy, nodes, student_files):
    import comfy.model_management as mm
    import comfy.utils
    folder, _ = student_files
    model = patched_model(comfy, nodes, folder)
    seen = []

    def hook(value, total, preview, node_id=None):
        seen.append(value)
        if value == 1:
            mm.interrupt_current_processing(True)  # what the Cancel button does

    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            comfy_sample(comfy, model, nodes.TMDSampler.execute(0, 0.0).result[0],
                         nodes.TMDScheduler.execute(model, 2, 10.0).result[0], torch.randn(1, 5, 4096), seed=1)
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        mm.interrupt_current_processing(False)
    assert seen == [1]  # the second inner step never finished


def test_a_non_wan_model_is_refused(comfy, nodes, student_files):
    import comfy.model_management
    import comfy.model_patcher
    from comfyui_tmd.nodes.comfy_bridge import read_head_file
    folder, _ = student_files

    class NotWan(torch.nn.Module):  # what a UNet or another DiT looks like to the patch node: no Wan parts
        def __init__(self):
            super().__init__()
            self.diffusion_model = torch.nn.Linear(4, 4)

    patcher = comfy.model_patcher.ModelPatcher(NotWan(), load_device=torch.device("cpu"), offload_device=torch.device("cpu"))
    with pytest.raises(TMDError, match="TMD needs a Wan2.1 text-to-video model, got Linear"):
        nodes.TMDApplyFlowHead.execute(patcher, read_head_file(folder / "student_head.safetensors"))


def test_a_truncated_head_file_is_refused_by_the_loader_node(comfy, nodes, student_files, tmp_path):
    import folder_paths
    folder, _ = student_files
    whole = (folder / "student_head.safetensors").read_bytes()
    (tmp_path / "cut_head.safetensors").write_bytes(whole[: len(whole) // 2])
    folder_paths.add_model_folder_path("tmd", str(tmp_path))
    with pytest.raises(CheckpointError, match="cut_head.safetensors is truncated"):
        nodes.TMDFlowHeadLoader.execute("cut_head.safetensors")
