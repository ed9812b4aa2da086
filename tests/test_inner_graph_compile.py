# SPDX-License-Identifier: Apache-2.0
"""The inner loop on a GPU: CUDA-graph replay equals eager, and the flow head compiles without graph breaks."""
import pytest
import torch

from comfyui_tmd.tmd_core import TMDDenoiser, sample_euler, set_kernel_impl, tmd_sigmas

from factories import perturb_extras


def test_cuda_graph_refuses_cpu_latents_and_inner_callbacks(student, inputs):
    x, t, context = inputs
    with pytest.raises(ValueError, match="needs CUDA tensors, the latent is on cpu"):
        TMDDenoiser(student, context, cuda_graph=True)(x, t)
    with pytest.raises(ValueError, match="inner_callback .* cannot run with cuda_graph=True"):
        TMDDenoiser(student, context, inner_callback=print, cuda_graph=True)


def head_inputs(student, inputs):
    x, t, context = inputs
    denoiser = TMDDenoiser(student, context)
    freqs, times = denoiser.prepare(x)
    features = student.backbone(x, t, context, embedded_context=denoiser.embedded_context(x), freqs=freqs)
    return features, torch.randn(x.shape, generator=torch.Generator().manual_seed(9)).to(x), times[0]


def test_flow_head_compiles_as_one_graph(student, inputs):
    """fullgraph=True fails on any graph break; the eager backend keeps the check quick on a CPU."""
    perturb_extras(student)
    with torch.no_grad():
        features, y, time = head_inputs(student, inputs)
        compiled = torch.compile(student.head, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(features, y, time), student.head(features, y, time), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_graphed_inner_loop_equals_eager_and_is_captured_once(student, inputs, impl):
    perturb_extras(student).cuda()
    set_kernel_impl(student, impl)
    x, t, context = (v.cuda() for v in inputs)
    sigmas = tmd_sigmas(2).cuda()
    eager = sample_euler(TMDDenoiser(student, context, generator=torch.Generator().manual_seed(4)), x, sigmas)
    graphed = TMDDenoiser(student, context, generator=torch.Generator().manual_seed(4), cuda_graph=True)
    first = sample_euler(graphed, x, sigmas[:2])
    captured = graphed._graph
    result = sample_euler(graphed, first, sigmas[1:])
    assert graphed._graph is captured, "the graph was captured again for the second outer step"
    torch.testing.assert_close(result, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_flow_head_with_kernels_compiles_with_inductor(student, inputs):
    perturb_extras(student).cuda()
    set_kernel_impl(student, "triton")
    with torch.no_grad():
        features, y, time = head_inputs(student, tuple(v.cuda() for v in inputs))
        compiled = torch.compile(student.head, fullgraph=True)
        torch.testing.assert_close(compiled(features, y, time), student.head(features, y, time), rtol=1e-4, atol=1e-4)
