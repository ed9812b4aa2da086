# SPDX-License-Identifier: Apache-2.0
"""The pack's Wan equals ComfyUI's WanModel on the same weights, its files load through ComfyUI's
UNETLoader path, and the TMD core runs unchanged on ComfyUI's WanModel."""
import torch

from comfyui_tmd.tmd_core import FlowHeadSpec, TMDStudent, generate_tmd, save_wan

from factories import LATENT, SMALL, perturb_extras, random_wan


def comfy_wan_like(comfy, ours):
    c = ours.config
    model = comfy.ldm.wan.model.WanModel(model_type="t2v", dim=c.dim, ffn_dim=c.ffn_dim, num_heads=c.num_heads,
                                         num_layers=c.num_layers, in_dim=c.in_dim, out_dim=c.out_dim,
                                         text_len=c.text_len,  # what the core pads contexts to (None: as given)
                                         operations=comfy.ops.disable_weight_init)
    model.load_state_dict(ours.state_dict(), strict=True)  # the key layouts are the same
    return model.eval()


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_pack_wan_equals_comfy_wan_on_the_same_weights(comfy, wan, inputs):
    x, t, context = inputs
    theirs = comfy_wan_like(comfy, wan)
    with torch.no_grad():
        a = wan(x, 1000 * t, context)
        b = theirs(x, 1000 * t, context)
    # ComfyUI builds the sinusoidal time embedding in float32, official Wan and this pack in float64.
    assert relative_error(a, b) < 1e-5


def test_saved_student_wan_file_loads_through_comfyui(comfy, tmp_path, inputs):
    ours = random_wan(type(SMALL)(dim=256, ffn_dim=128, num_heads=2, num_layers=3), seed=4)
    path = save_wan(ours, tmp_path / "wan_tmd.safetensors")
    patcher = comfy.sd.load_diffusion_model(str(path))
    assert type(patcher.model.model_config).__name__ == "WAN21_T2V"
    theirs = patcher.model.diffusion_model
    x, t, context = inputs
    with torch.no_grad():
        assert relative_error(ours(x, 1000 * t, context), theirs(x, 1000 * t, context)) < 1e-5


def test_tmd_core_runs_on_comfy_wan(comfy, wan, inputs):
    _, _, context = inputs
    theirs = comfy_wan_like(comfy, wan)
    spec = FlowHeadSpec(head_blocks=2)
    ours_student = TMDStudent.from_teacher(wan, spec)
    their_student = TMDStudent.from_teacher(theirs, spec)
    perturb_extras(ours_student, seed=0)
    with torch.no_grad():
        their_student.extras.load_state_dict(ours_student.extras.state_dict())
        a = generate_tmd(ours_student, context, LATENT, seed=8)
        b = generate_tmd(their_student, context, LATENT, seed=8)
    assert relative_error(a, b) < 1e-4
