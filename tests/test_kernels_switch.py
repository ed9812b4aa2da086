# SPDX-License-Identifier: Apache-2.0
"""The impl switch: a model switched to the Triton kernels computes what its torch path computes; errors say why."""
import pytest
import torch

from comfyui_tmd.tmd_kernels import triton_gate
from comfyui_tmd.tmd_kernels.adaln import norm_modulate, norm_modulate_ref
from comfyui_tmd.tmd_core import FlowHeadSpec, TMDStudent, generate_tmd, set_kernel_impl

from factories import LATENT, perturb_extras, random_wan
from kernel_checks import assert_within_torch_error

needs_kernels = pytest.mark.skipif(
    not triton_gate.INTERPRETER and not torch.cuda.is_available(),
    reason="needs Triton with a GPU, or TRITON_INTERPRET=1 set before Triton is imported")


def test_models_start_on_the_torch_path_and_switch_every_kernel_layer(student):
    layers = [m for m in student.modules() if hasattr(m, "kernel_impl")]
    assert {m.kernel_impl for m in layers} == {"torch"}
    # per Wan block: the block and its two attentions; plus the output head and the gated fusion
    assert set_kernel_impl(student, "auto") == 3 * len(student.wan.blocks) + 2 == len(layers)
    assert {m.kernel_impl for m in layers} == {"auto"}
    with pytest.raises(ValueError, match="'cuda' is unknown; expected one of auto, triton, torch"):
        set_kernel_impl(student, "cuda")


@needs_kernels
def test_student_with_kernels_matches_its_torch_path(inputs):
    """Whole forward and a whole TMD sample (M=1, N=2), fp32, against the float64 model."""
    x, t, context = inputs
    runs = {}
    for impl, dtype in (("triton", torch.float32), ("torch", torch.float32), ("torch", torch.float64)):
        student = perturb_extras(TMDStudent.from_teacher(random_wan(dtype=dtype), FlowHeadSpec(head_blocks=2)))
        set_kernel_impl(student, impl)
        with torch.no_grad():
            runs[impl, dtype] = (student.wan(x.to(dtype), 1000 * t, context.to(dtype)),
                                 generate_tmd(student, context.to(dtype), LATENT, seed=3, outer_steps=1))
    for kernel, torch_out, reference in zip(runs["triton", torch.float32], runs["torch", torch.float32],
                                            runs["torch", torch.float64], strict=True):
        assert_within_torch_error(kernel, torch_out, reference)


def test_triton_where_it_cannot_run_is_an_error_and_auto_falls_back(monkeypatch):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 6, 24, generator=g)
    shift, scale = torch.randn(2, 1, 24, generator=g), torch.randn(2, 1, 24, generator=g)
    monkeypatch.setattr(triton_gate, "INTERPRETER", False)
    with pytest.raises(RuntimeError, match="impl='triton' was asked for, but .*(TRITON_INTERPRET|not installed)"):
        norm_modulate(x, 1e-6, shift=shift, scale=scale, impl="triton")
    assert torch.equal(norm_modulate(x, 1e-6, shift=shift, scale=scale, impl="auto"),
                       norm_modulate_ref(x, 1e-6, shift=shift, scale=scale))
    x64 = x.double()
    with pytest.raises(RuntimeError, match="(got torch.float64|not installed)"):
        norm_modulate(x64, 1e-6, impl="triton")
    assert torch.equal(norm_modulate(x64, 1e-6), norm_modulate_ref(x64, 1e-6))

