# SPDX-License-Identifier: Apache-2.0
"""Times stay float32 in a bf16 run: bf16 has 8 significant bits, so σ = 0.999 would become 1 and the DiT would
see 1000 and 912 instead of 999 and 908.9 on the M = 2 grid, and a 50-step teacher schedule would repeat times."""
import pytest
import torch

import comfyui_tmd.tmd_core.student as student_module
import comfyui_tmd.tmd_core.wan_model as wan_model
from comfyui_tmd.tmd_core import generate_teacher, generate_tmd, teacher_sigmas, tmd_grid
from comfyui_tmd.training.make_data import generate_shards

from factories import LATENT, perturb_extras


@pytest.fixture
def recorded_times(monkeypatch):
    """Every DiT time (1000·t) that reaches a sinusoidal time embedding: {"backbone": [...], "head": [...]}."""
    seen = {"backbone": [], "head": []}

    def recorder(module, key):
        original = module.sinusoidal_embedding

        def record(dim, position):
            seen[key].append(position.detach().double().cpu())
            return original(dim, position)

        monkeypatch.setattr(module, "sinusoidal_embedding", record)

    recorder(wan_model, "backbone")
    recorder(student_module, "head")
    return seen


def test_bf16_tmd_sampling_embeds_the_exact_grid_times(student, inputs, recorded_times):
    _, _, context = inputs
    student = perturb_extras(student).to(torch.bfloat16)
    with torch.no_grad():
        generate_tmd(student, context.to(torch.bfloat16), LATENT, seed=0, outer_steps=2, inner_steps=2)
    backbone = torch.stack(recorded_times["backbone"])  # [M, B]
    expected = 1000.0 * torch.tensor(tmd_grid(2)[:-1], dtype=torch.float32).double()  # 999.0, 908.9
    torch.testing.assert_close(backbone, expected[:, None].expand_as(backbone), rtol=0, atol=1e-3)
    assert backbone[:, 0].tolist() == pytest.approx([999.0, 908.93], abs=0.01)
    head_s = torch.stack(recorded_times["head"][0::2])  # e(s), then e'(s − r), per inner step
    torch.testing.assert_close(head_s[:, 0], expected, rtol=0, atol=1e-3)  # the inner grid is the outer one here


def test_bf16_teacher_data_generation_feeds_exact_distinct_timesteps(wan, inputs, recorded_times, tmp_path):
    _, _, context = inputs
    steps = 50
    with torch.no_grad():
        generate_shards(wan.to(torch.bfloat16), context[:1], torch.randn_like(context[:1]), tmp_path, LATENT[1:],
                        steps=steps, shift=3.0, cfg=5.0)
    times = torch.stack([t[0] for t in recorded_times["backbone"]])  # one CFG batch per step
    expected = 1000.0 * teacher_sigmas(steps, 3.0)[:-1].double()
    torch.testing.assert_close(times, expected, rtol=0, atol=1e-3)  # bf16 was off by up to 3.5
    assert len(set(times.tolist())) == steps


def test_denoised_keeps_sigma_in_float32(wan, inputs):
    """The teacher's x − σ·v in bf16: σ = 0.999 is not rounded to 1 before it scales the velocity."""
    from comfyui_tmd.tmd_core import CFGDenoiser
    x, _, context = inputs
    wan16, x16, ctx16 = wan.to(torch.bfloat16), x.to(torch.bfloat16), context.to(torch.bfloat16)
    sigma = torch.full((x.shape[0],), 0.999)
    with torch.no_grad():
        denoised = CFGDenoiser(wan16, ctx16, None, cfg=1.0)(x16, sigma)
        v = wan16(x16, 1000.0 * sigma, ctx16)
    assert denoised.dtype == torch.bfloat16
    torch.testing.assert_close(denoised, (x16.float() - 0.999 * v.float()).to(torch.bfloat16), rtol=0, atol=0)


def test_teacher_sampler_in_bf16_runs(wan, inputs):
    _, _, context = inputs
    with torch.no_grad():
        out = generate_teacher(wan.to(torch.bfloat16), context.to(torch.bfloat16), None, LATENT, seed=0, steps=3)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
