# SPDX-License-Identifier: Apache-2.0
"""The Wan files users load, through ComfyUI's own loader: UNETLoader's fp8 weight dtypes and the "fp8 scaled"
files ComfyUI repackages Wan as. TMD through ComfyUI equals the core on the dequantized weights."""
import copy

import pytest
import torch

from comfyui_tmd.tmd_core import generate_tmd, tmd_sigmas
from comfyui_tmd.tmd_core.safe_files import write_safetensors

from .comfy_world import LATENT, comfy_sample, patched_model

FP8 = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
# fp8 keeps 3 (e4m3) or 2 (e5m2) mantissa bits; both sides use the same rounded weights and compute in float32, so
# only the order of float32 operations differs.
TOLERANCE = 1e-4


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def sample_both(comfy, nodes, model, student, seed=3):
    import comfy.latent_formats
    context = torch.randn(1, 5, 4096, generator=torch.Generator().manual_seed(4))
    ours = comfy_sample(comfy, model, nodes.TMDSampler.execute(0, 0.0).result[0], tmd_sigmas(2, 10.0), context, seed)
    with torch.no_grad():
        core = generate_tmd(student, context, LATENT, seed=seed)
    return ours, comfy.latent_formats.Wan21().process_out(core)


def dequantized(student, model):
    """`student` with the Wan weights ComfyUI holds for `model`, dequantized (× scale_weight where there is one)."""
    held = model.model.diffusion_model.state_dict()
    rounded = copy.deepcopy(student)
    with torch.no_grad():
        for key, param in rounded.wan.state_dict().items():
            scale = held.get(key.replace(".weight", ".scale_weight")) if key.endswith(".weight") else None
            param.copy_(held[key].float() * (1.0 if scale is None else scale.float()))
    return rounded


def linear_weight_keys(wan) -> list[str]:
    return [f"{name}.weight" for name, module in wan.named_modules() if isinstance(module, torch.nn.Linear)]


@pytest.mark.parametrize("weight_dtype", list(FP8))
def test_unet_loader_fp8_weight_dtype(comfy, comfy_nodes, nodes, student_files, weight_dtype):
    """UNETLoader(weight_dtype=fp8_*) stores Wan's layers in 8 bits and computes in a wider dtype."""
    import folder_paths
    folder, student = student_files
    folder_paths.add_model_folder_path("diffusion_models", str(folder))
    (model,) = comfy_nodes.UNETLoader().load_unet("wan_student.safetensors", weight_dtype)
    assert model.model.diffusion_model.blocks[0].ffn[0].weight.dtype == FP8[weight_dtype]
    ours, core = sample_both(comfy, nodes, patched_model(comfy, nodes, folder, model), dequantized(student, model))
    assert relative_error(ours, core) < TOLERANCE


def test_fp8_scaled_file(comfy, nodes, student_files, tmp_path):
    """ComfyUI's "fp8_scaled" Wan files: every Linear weight in e4m3 with a float32 `scale_weight`, a
    `scaled_fp8` marker key, the rest in a wide dtype."""
    folder, student = student_files
    state = {key: value.clone() for key, value in student.wan.state_dict().items()}
    for key in linear_weight_keys(student.wan):
        scale = state[key].abs().max() / 448.0  # e4m3's largest finite value
        state[key] = (state[key] / scale).to(torch.float8_e4m3fn)
        state[key.replace(".weight", ".scale_weight")] = scale.float().reshape(())
    state["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    path = tmp_path / "wan_fp8_scaled.safetensors"
    write_safetensors({f"model.diffusion_model.{k}": v for k, v in state.items()}, path)  # as ComfyUI ships it
    model = comfy.sd.load_diffusion_model(str(path))
    assert model.model.model_config.scaled_fp8 == torch.float8_e4m3fn
    assert model.model.diffusion_model.blocks[0].ffn[0].weight.dtype == torch.float8_e4m3fn
    ours, core = sample_both(comfy, nodes, patched_model(comfy, nodes, folder, model), dequantized(student, model))
    assert relative_error(ours, core) < TOLERANCE
    assert relative_error(ours, sample_both(comfy, nodes, patched_model(comfy, nodes, folder), student)[0]) > TOLERANCE
